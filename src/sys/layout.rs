// SPDX-License-Identifier: GPL-2.0

//! Kernel structure members that toa reads directly, without a call into the C shim.
//!
//! Linux 6.12's Rust bindings leave `struct sock`, `struct socket`, `struct sk_buff` and `struct net`
//! opaque. Reading a field through a one-line C function costs a call and a return (with the return
//! thunk) every time; on the paths that run per packet or per `getpeername()` that is most of what
//! toa adds. So the offsets and sizes of those few members come from the kernel's own headers at build
//! time (`src/toa_offsets.c`, compiled to assembly and turned into `src/toa_offsets.rs` by
//! `src/Kbuild`, as the kernel's asm-offsets), and each member is a typed [`Field`] here, whose size is
//! checked against its Rust type when the module is compiled. The typed wrappers (`sock.rs`, `skb.rs`,
//! `net.rs`, `percpu.rs`) read them; nothing above this layer sees an offset.

use crate::ffi;
use core::ffi::c_void;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The offsets and sizes generated for the kernel being built against.
#[allow(dead_code)]
mod generated {
    include!("../toa_offsets.rs");
}
use generated as off;

/// A member of the kernel structure `S`, of Rust type `T`: its offset in bytes.
///
/// # Invariants
///
/// Every `S` object has, at `offset` bytes from its start, a naturally aligned member that holds a
/// valid `T` (same size, checked by [`Field::new`]; same meaning, by the declaration below).
pub(crate) struct Field<S, T> {
    offset: usize,
    _types: PhantomData<(*const S, T)>,
}

impl<S, T: Copy> Field<S, T> {
    /// The member at `offset`, of `size` bytes in C (a compile-time error if that is not `T`'s size).
    const fn new(offset: usize, size: usize) -> Self {
        assert!(size == core::mem::size_of::<T>());
        Field {
            offset,
            _types: PhantomData,
        }
    }

    /// The member's address in the object at `obj`.
    ///
    /// # Safety
    ///
    /// `obj` points at an `S`.
    #[inline(always)]
    pub(crate) unsafe fn ptr(&self, obj: *const S) -> *mut T {
        // SAFETY: the member lies inside the object (type invariant), which the caller vouches for.
        unsafe { obj.cast::<u8>().add(self.offset) }
            .cast::<T>()
            .cast_mut()
    }

    /// Reads the member once (`READ_ONCE`): safe against a concurrent writer of the whole member.
    ///
    /// # Safety
    ///
    /// `obj` points at an `S` that is allocated during the call.
    #[inline(always)]
    pub(crate) unsafe fn read_once(&self, obj: *const S) -> T {
        // SAFETY: an aligned, valid `T` inside a live object (type invariant and the caller's
        // contract); a volatile read is the kernel's `READ_ONCE` for a scalar or pointer.
        unsafe { core::ptr::read_volatile(self.ptr(obj)) }
    }
}

impl<S, U> Field<S, *const U> {
    /// Points the member at `new` if it points at `old`, in one atomic compare-and-exchange, fully
    /// ordered (the kernel's `try_cmpxchg`); returns whether it did.
    ///
    /// # Safety
    ///
    /// `obj` points at an `S` that is allocated during the call, and the member is a pointer that
    /// writers store whole (so an atomic access to it is sound).
    #[inline(always)]
    pub(crate) unsafe fn compare_exchange(
        &self,
        obj: *const S,
        old: *const U,
        new: *const U,
    ) -> bool {
        // SAFETY: an aligned pointer inside a live object (type invariant and the caller's contract),
        // accessed atomically here.
        let member = unsafe { AtomicPtr::from_ptr(self.ptr(obj).cast::<*mut U>()) };
        member
            .compare_exchange(
                old.cast_mut(),
                new.cast_mut(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }
}

// The members. Offsets and sizes are the kernel's, generated from its headers; the Rust types are those
// of the C members (`Field`'s invariant).

/// `struct socket::sk`.
pub(crate) const SOCKET_SK: Field<ffi::Socket, *mut ffi::Sock> =
    Field::new(off::SOCKET_SK, off::SOCKET_SK_SIZE);
/// `struct socket::ops`.
pub(crate) const SOCKET_OPS: Field<ffi::Socket, *const ffi::ProtoOps> =
    Field::new(off::SOCKET_OPS, off::SOCKET_OPS_SIZE);

/// `struct sock::sk_family` (`unsigned short`).
pub(crate) const SK_FAMILY: Field<ffi::Sock, u16> = Field::new(off::SK_FAMILY, off::SK_FAMILY_SIZE);
/// `struct sock::sk_state` (`unsigned char`).
pub(crate) const SK_STATE: Field<ffi::Sock, u8> = Field::new(off::SK_STATE, off::SK_STATE_SIZE);
/// `struct sock::sk_portpair`: `sk_dport` and `sk_num` as one word.
pub(crate) const SK_PORTPAIR: Field<ffi::Sock, u32> =
    Field::new(off::SK_PORTPAIR, off::SK_PORTPAIR_SIZE);
/// `struct sock::sk_protocol` (`u16`).
pub(crate) const SK_PROTOCOL: Field<ffi::Sock, u16> =
    Field::new(off::SK_PROTOCOL, off::SK_PROTOCOL_SIZE);
/// Whether sockets record their namespace (`CONFIG_NET_NS`); without, all are in `init_net` and
/// [`SK_NET`] must not be read.
pub(crate) const NET_NS: bool = off::NET_NS != 0;
/// `struct sock::sk_net.net` (with `CONFIG_NET_NS`).
pub(crate) const SK_NET: Field<ffi::Sock, *mut ffi::Net> =
    Field::new(off::SK_NET, off::SK_NET_SIZE);
/// `struct inet_connection_sock::icsk_af_ops`, for a TCP `struct sock`.
pub(crate) const ICSK_AF_OPS: Field<ffi::Sock, *const ffi::AfOps> =
    Field::new(off::ICSK_AF_OPS, off::ICSK_AF_OPS_SIZE);

/// `struct net::gen`: the `struct net_generic` (RCU-protected) whose `ptr[id]` is the data of the
/// pernet subsystem registered with `id`.
pub(crate) const NET_GEN: Field<ffi::Net, *const c_void> =
    Field::new(off::NET_GEN, off::NET_GEN_SIZE);
/// `struct net::ns.inum`: the namespace's number.
pub(crate) const NET_INUM: Field<ffi::Net, u32> = Field::new(off::NET_INUM, off::NET_INUM_SIZE);
/// `struct nf_hook_state::net`: the namespace of the packet a netfilter hook sees.
pub(crate) const NF_HOOK_STATE_NET: Field<ffi::NfHookState, *mut ffi::Net> =
    Field::new(off::NF_HOOK_STATE_NET, off::NF_HOOK_STATE_NET_SIZE);
/// The offset of `struct net_generic::ptr`, an array of `void *`.
pub(crate) const NET_GENERIC_PTR: usize = off::NET_GENERIC_PTR;

/// `struct toa_net::stats` (`src/toa_shim.h`): a namespace's published counters.
pub(crate) const TOA_NET_STATS: Field<c_void, *mut u64> =
    Field::new(off::TOA_NET_STATS, off::TOA_NET_STATS_SIZE);
/// `struct toa_net::retired`: counters waiting for a grace period to be freed.
pub(crate) const TOA_NET_RETIRED: Field<c_void, *mut u64> =
    Field::new(off::TOA_NET_RETIRED, off::TOA_NET_RETIRED_SIZE);
/// `struct toa_net::uoa_mappings`: the namespace's number of UDP flow mappings.
pub(crate) const TOA_NET_UOA_MAPPINGS: Field<c_void, isize> =
    Field::new(off::TOA_NET_UOA_MAPPINGS, off::TOA_NET_UOA_MAPPINGS_SIZE);

/// `struct sk_buff::head`: the start of the buffer, where the header offsets count from.
pub(crate) const SKB_HEAD: Field<ffi::SkBuff, *const u8> =
    Field::new(off::SKB_HEAD, off::SKB_HEAD_SIZE);
/// `struct sk_buff::network_header`: an offset from `head`.
pub(crate) const SKB_NETWORK_HEADER: Field<ffi::SkBuff, u16> =
    Field::new(off::SKB_NETWORK_HEADER, off::SKB_NETWORK_HEADER_SIZE);
/// `struct sk_buff::transport_header`: an offset from `head`.
pub(crate) const SKB_TRANSPORT_HEADER: Field<ffi::SkBuff, u16> =
    Field::new(off::SKB_TRANSPORT_HEADER, off::SKB_TRANSPORT_HEADER_SIZE);
/// `struct sk_buff::tail`: the end of the linear data, an offset from `head` (64-bit kernels'
/// `NET_SKBUFF_DATA_USES_OFFSET`, checked below).
pub(crate) const SKB_TAIL: Field<ffi::SkBuff, u32> = Field::new(off::SKB_TAIL, off::SKB_TAIL_SIZE);

const _: () = assert!(
    off::SKB_DATA_USES_OFFSET == 1,
    "toa needs a 64-bit kernel (sk_buff data as offsets)"
);
