// SPDX-License-Identifier: GPL-2.0

//! Operation tables: the per-family function tables a TCP socket calls through, and toa's copies.
//!
//! * `icsk_af_ops` (`struct inet_connection_sock_af_ops`, `ipv4_specific` or `ipv6_specific`): the
//!   connection side. A listener calls its `syn_recv_sock` to create the child socket of a completed
//!   handshake (final ACK, SYN cookie, TCP Fast Open SYN), in softirq context.
//! * `sock->ops` (`struct proto_ops`, `inet_stream_ops` or `inet6_stream_ops`): the socket calls.
//!   `accept()` gives the new socket its listener's table; `accept()`, `getpeername()` and
//!   `getsockname()` call its `getname`, in process context.
//!
//! The kernel itself swaps both pointers at run time (`IPV6_ADDRFORM`, kTLS, MPTCP, SMC); toa does the
//! same for the TCP listeners it serves, with copies of the kernel's tables in which one slot is
//! toa's ([`TableCopy`]): [`AfOpsCopy`] (`syn_recv_sock`) and [`ProtoOpsCopy`] (`getname`). The
//! calls that come through them are [`SynRecvSockCall`] and [`GetnameCall`], given to safe Rust
//! functions by the [`syn_recv_sock_wrapper!`] and [`getname_wrapper!`] macros. When and how the
//! copies are given and taken back is `src/redirect.rs`'s business; the unload protocol is argued
//! there.

use super::sock::{Sock, Socket};
use crate::ffi;
use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::alloc::flags::GFP_ATOMIC;
use kernel::prelude::*;

/// `SOCK_STREAM` and `IPPROTO_TCP`, for [`KernelTables::of_family`]'s socket.
const SOCK_STREAM: c_int = 1;
const IPPROTO_TCP: c_int = 6;

/// A family's TCP tables in the kernel, and the two functions toa's copies wrap.
///
/// # Invariants
///
/// The tables are the kernel's own (static, never freed), and the functions are their slots.
#[derive(Clone, Copy)]
pub(crate) struct KernelTables {
    family: u16,
    af_ops: *const ffi::AfOps,
    proto_ops: *const ffi::ProtoOps,
    syn_recv_sock: ffi::SynRecvSockFn,
    getname: ffi::GetnameFn,
}

// SAFETY: the kernel's tables are immutable statics, shared by every CPU.
unsafe impl Send for KernelTables {}
// SAFETY: as above.
unsafe impl Sync for KernelTables {}

impl KernelTables {
    /// `ipv4_specific` and `inet_stream_ops`.
    pub(crate) fn ipv4() -> Result<Self> {
        Self::of_family(ffi::AF_INET)
    }

    /// `ipv6_specific` and `inet6_stream_ops`.
    pub(crate) fn ipv6() -> Result<Self> {
        Self::of_family(ffi::AF_INET6)
    }

    /// The tables a new TCP socket of `family` starts with, read from one created for the purpose in
    /// the initial namespace (the kernel exports neither `ipv6_specific` nor `inet6_stream_ops`, and
    /// `ipv4_specific` only when IPv6 is a module).
    fn of_family(family: u16) -> Result<Self> {
        let mut sock: *mut ffi::Socket = core::ptr::null_mut();
        // SAFETY: `init_net` lives forever; `sock` receives the new socket on success.
        let ret = unsafe {
            ffi::sock_create_kern(
                core::ptr::addr_of_mut!(ffi::init_net),
                c_int::from(family),
                SOCK_STREAM,
                IPPROTO_TCP,
                &mut sock,
            )
        };
        if ret < 0 {
            pr_err!(
                "cannot create a TCP socket of family {} (error {})\n",
                family,
                ret
            );
            return Err(Error::from_errno(ret));
        }
        // SAFETY: the socket was just created, and is ours until released below.
        let socket = unsafe { Socket::from_raw(sock) };
        let proto_ops = socket.ops();
        let af_ops = socket.sk().map_or(core::ptr::null(), |sk| sk.af_ops());
        if af_ops.is_null() {
            // SAFETY: created above, released once.
            unsafe { ffi::sock_release(sock) };
            return Err(EINVAL);
        }
        // SAFETY: created above, released once.
        unsafe { ffi::sock_release(sock) };
        Ok(Self::of(family, af_ops, proto_ops))
    }

    fn of(family: u16, af_ops: *const ffi::AfOps, proto_ops: *const ffi::ProtoOps) -> Self {
        // SAFETY: the kernel's static tables (their slots never change).
        let (syn_recv_sock, getname) = unsafe {
            (
                ffi::toa_af_ops_syn_recv_sock(af_ops),
                ffi::toa_proto_ops_getname(proto_ops),
            )
        };
        // INVARIANT: the kernel's tables and their slots.
        Self {
            family,
            af_ops,
            proto_ops,
            syn_recv_sock,
            getname,
        }
    }

    /// `AF_INET` or `AF_INET6`.
    pub(crate) fn family(&self) -> u16 {
        self.family
    }

    /// The kernel's connection table.
    pub(crate) fn af_ops(&self) -> *const ffi::AfOps {
        self.af_ops
    }

    /// The kernel's socket-call table.
    pub(crate) fn proto_ops(&self) -> *const ffi::ProtoOps {
        self.proto_ops
    }

    /// The kernel's `syn_recv_sock` of this family.
    pub(crate) fn syn_recv_sock(&self) -> ffi::SynRecvSockFn {
        self.syn_recv_sock
    }
}

/// A kernel operation table that toa copies with one slot replaced by a wrapper of its own.
///
/// # Safety
///
/// [`CopiedTable::dup`] returns a `kmalloc`ed full copy of the table it is given, or null;
/// [`CopiedTable::set_slot`] writes the slot with one aligned store (`WRITE_ONCE`), which is how the
/// kernel's callers load it (one aligned load).
pub(crate) unsafe trait CopiedTable: Sized {
    /// The type of the replaced slot.
    type Slot: Copy;

    /// The kernel's table of a family.
    fn kernel_table(kernel: &KernelTables) -> *const Self;

    /// The kernel's function in the slot.
    fn kernel_slot(kernel: &KernelTables) -> Self::Slot;

    /// `kmemdup` of `table` (`GFP_KERNEL`): a full copy, or null.
    ///
    /// # Safety
    ///
    /// `table` is a kernel table of this type.
    unsafe fn dup(table: *const Self) -> *mut Self;

    /// Writes `f` in the slot of `table` (`WRITE_ONCE`).
    ///
    /// # Safety
    ///
    /// `table` came from [`CopiedTable::dup`] and is not freed.
    unsafe fn set_slot(table: *mut Self, f: Self::Slot);
}

// SAFETY: the shim's `toa_af_ops_dup` is `kmemdup`; `toa_af_ops_set_syn_recv_sock` is `WRITE_ONCE`.
unsafe impl CopiedTable for ffi::AfOps {
    type Slot = ffi::SynRecvSockFn;

    fn kernel_table(kernel: &KernelTables) -> *const Self {
        kernel.af_ops
    }

    fn kernel_slot(kernel: &KernelTables) -> Self::Slot {
        kernel.syn_recv_sock
    }

    unsafe fn dup(table: *const Self) -> *mut Self {
        // SAFETY: per the function's contract.
        unsafe { ffi::toa_af_ops_dup(table) }
    }

    unsafe fn set_slot(table: *mut Self, f: Self::Slot) {
        // SAFETY: per the function's contract.
        unsafe { ffi::toa_af_ops_set_syn_recv_sock(table, f) }
    }
}

// SAFETY: the shim's `toa_proto_ops_dup` is `kmemdup`; `toa_proto_ops_set_getname` is `WRITE_ONCE`.
unsafe impl CopiedTable for ffi::ProtoOps {
    type Slot = ffi::GetnameFn;

    fn kernel_table(kernel: &KernelTables) -> *const Self {
        kernel.proto_ops
    }

    fn kernel_slot(kernel: &KernelTables) -> Self::Slot {
        kernel.getname
    }

    unsafe fn dup(table: *const Self) -> *mut Self {
        // SAFETY: per the function's contract.
        unsafe { ffi::toa_proto_ops_dup(table) }
    }

    unsafe fn set_slot(table: *mut Self, f: Self::Slot) {
        // SAFETY: per the function's contract.
        unsafe { ffi::toa_proto_ops_set_getname(table, f) }
    }
}

/// toa's copy of one of a family's tables, with one slot replaced: allocated, since a socket can keep
/// it after the module is gone, and retired at unload ([`TableCopy::retire`]), never freed.
///
/// * [`AfOpsCopy`], the connection table with `syn_recv_sock` replaced. A child created while toa
///   gives its listener the copy (a handshake completing in the kernel's own `syn_recv_sock`, called
///   through the kernel's table, clones the listener after the swap) inherits the copy without passing
///   through toa's wrapper, which gives every other child the kernel's table back.
/// * [`ProtoOpsCopy`], the socket-call table with `getname` replaced. Accepted sockets inherit it from
///   their listener.
///
/// # Invariants
///
/// `ptr` is an allocated full copy of the kernel's table owned by this value; its slot is toa's
/// wrapper until [`TableCopy::neutralize`], `kernel_slot` (the kernel's function) afterwards.
pub(crate) struct TableCopy<T: CopiedTable> {
    ptr: *mut T,
    kernel_slot: T::Slot,
}

/// toa's copy of a family's connection table (`struct inet_connection_sock_af_ops`).
pub(crate) type AfOpsCopy = TableCopy<ffi::AfOps>;
/// toa's copy of a family's socket-call table (`struct proto_ops`).
pub(crate) type ProtoOpsCopy = TableCopy<ffi::ProtoOps>;

// SAFETY: a table read by every CPU, written with `WRITE_ONCE` only.
unsafe impl<T: CopiedTable> Send for TableCopy<T> {}
// SAFETY: as above.
unsafe impl<T: CopiedTable> Sync for TableCopy<T> {}

impl<T: CopiedTable> TableCopy<T> {
    /// A copy of `kernel`'s table with the slot replaced by `wrapper`. Fails with `ENOMEM`.
    pub(crate) fn new(kernel: KernelTables, wrapper: T::Slot) -> Result<Self> {
        // SAFETY: the kernel's table is static.
        let ptr = unsafe { T::dup(T::kernel_table(&kernel)) };
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: just allocated, not shared yet.
        unsafe { T::set_slot(ptr, wrapper) };
        // INVARIANT: a full copy with toa's slot.
        Ok(Self {
            ptr,
            kernel_slot: T::kernel_slot(&kernel),
        })
    }

    /// The copy, as a socket points at it.
    pub(crate) fn as_ptr(&self) -> *const T {
        self.ptr
    }

    /// Puts the kernel's function back in the slot: a call that loads the slot from now on no longer
    /// reaches toa.
    pub(crate) fn neutralize(&self) {
        // SAFETY: ours (type invariant); readers load the slot with one aligned load.
        unsafe { T::set_slot(self.ptr, self.kernel_slot) };
    }

    /// Neutralizes the copy and leaves it allocated for good: sockets that hold it (see the type) may
    /// outlive the module, and every call through it is the kernel's own. Marked for kmemleak as
    /// intended: one table of each kind per family and load (88 bytes for the connection table, 264 for
    /// the socket-call table, on x86_64).
    pub(crate) fn retire(self) {
        self.neutralize();
        // SAFETY: ours; never freed (no `drop`), so every socket's pointer to it stays valid.
        unsafe { ffi::toa_kmemleak_not_leak(self.ptr.cast()) };
        core::mem::forget(self);
    }
}

impl<T: CopiedTable> Drop for TableCopy<T> {
    fn drop(&mut self) {
        // Dropped without `retire`: only on a failed load, before any socket was given the copy.
        // SAFETY: allocated by `new`, never shared (see above).
        unsafe { ffi::kfree(self.ptr.cast()) };
    }
}

/// One call of `syn_recv_sock` through toa's copy: the packet that completes the handshake.
///
/// # Invariants
///
/// `skb` is the call's packet, in TCP's receive path, valid until the wrapper returns.
pub(crate) struct SynRecvSockCall {
    skb: *mut ffi::SkBuff,
}

impl SynRecvSockCall {
    /// The call's arguments.
    ///
    /// # Safety
    ///
    /// The arguments of a `syn_recv_sock` call through toa's copy, used only during it.
    pub(crate) unsafe fn new(skb: *mut ffi::SkBuff) -> Self {
        // INVARIANT: per the function's contract.
        Self { skb }
    }

    /// The packet that completes the handshake (final ACK, SYN cookie ACK or Fast Open SYN).
    pub(crate) fn skb(&self) -> &super::skb::TcpSkBuff {
        // SAFETY: by the type invariant, a packet in TCP's receive path, whose headers are set.
        unsafe { super::skb::SkBuff::from_raw(self.skb).as_tcp() }
    }
}

/// Defines `$c`, toa's `syn_recv_sock` of one family: calls the kernel's (`$kernel`, an expression
/// giving the [`KernelTables`]), then, for a child, `$f(call: &SynRecvSockCall, child: &Sock,
/// own_req: bool)`; returns the kernel's result unchanged.
macro_rules! syn_recv_sock_wrapper {
    ($c:ident, kernel: $kernel:expr, then: $f:path) => {
        /// toa's `syn_recv_sock` (see [`crate::sys::ops::syn_recv_sock_wrapper!`]).
        ///
        /// # Safety
        ///
        /// Only called through toa's connection table, by TCP, with `syn_recv_sock`'s arguments.
        #[no_mangle]
        unsafe extern "C" fn $c(
            sk: *const $crate::ffi::Sock,
            skb: *mut $crate::ffi::SkBuff,
            req: *mut $crate::ffi::RequestSock,
            dst: *mut $crate::ffi::DstEntry,
            req_unhash: *mut $crate::ffi::RequestSock,
            own_req: *mut bool,
            opt_child_init: *const core::ffi::c_void,
        ) -> *mut $crate::ffi::Sock {
            let kernel: $crate::sys::ops::KernelTables = $kernel;
            // SAFETY: the caller's arguments, passed on unchanged to the kernel's function of the
            // same type.
            let child = unsafe {
                (kernel.syn_recv_sock())(sk, skb, req, dst, req_unhash, own_req, opt_child_init)
            };
            if !child.is_null() {
                // SAFETY: the call's arguments; a non-null child is referenced and locked by the
                // caller, and `own_req` was written by the kernel's function.
                let (call, child_sk, own) = unsafe {
                    (
                        $crate::sys::ops::SynRecvSockCall::new(skb),
                        $crate::sys::sock::Sock::from_raw(child),
                        own_req.read(),
                    )
                };
                $f(&call, child_sk, own);
            }
            child
        }
    };
}
pub(crate) use syn_recv_sock_wrapper;

/// Calls of the kernel's `getname` made from toa's wrappers and not returned yet (they may sleep, in
/// `lock_sock`): the unload waits for them with [`wait_forwarded_getname`].
static FORWARDED: AtomicUsize = AtomicUsize::new(0);

/// One call of `getname` through toa's copy.
///
/// # Invariants
///
/// `sock` is the called socket, referenced by the caller; `addr` its buffer, which holds at least the
/// family's `sockaddr` (`sockaddr_in` for [`GetnameCall::kernel`]'s IPv4 tables, `sockaddr_in6` for
/// IPv6): `getname`'s contract.
pub(crate) struct GetnameCall<'a> {
    sock: &'a Socket,
    addr: *mut u8,
    peer: c_int,
    kernel: &'a KernelTables,
}

impl<'a> GetnameCall<'a> {
    /// The call's arguments.
    ///
    /// # Safety
    ///
    /// The arguments of a `getname` call through toa's copy of `kernel`'s table, used only during it.
    pub(crate) unsafe fn new(
        sock: *mut ffi::Socket,
        addr: *mut u8,
        peer: c_int,
        kernel: &'a KernelTables,
    ) -> Self {
        // INVARIANT: per the function's contract.
        Self {
            // SAFETY: the caller holds the socket for the call.
            sock: unsafe { Socket::from_raw(sock) },
            addr,
            peer,
            kernel,
        }
    }

    /// The socket.
    pub(crate) fn socket(&self) -> &'a Socket {
        self.sock
    }

    /// 0 for `getsockname()`, 1 for `getpeername()`, 2 for `accept()`'s address.
    pub(crate) fn peer(&self) -> c_int {
        self.peer
    }

    /// The kernel's tables of the socket's family.
    pub(crate) fn kernel(&self) -> &'a KernelTables {
        self.kernel
    }

    /// Lets the kernel's `getname` answer (it may sleep; counted for the unload).
    pub(crate) fn forward(&self) -> c_int {
        FORWARDED.fetch_add(1, Ordering::AcqRel);
        // SAFETY: the call's own arguments, to the kernel's function of the same family and type.
        let ret = unsafe { (self.kernel.getname)(self.sock.as_ptr(), self.addr, self.peer) };
        FORWARDED.fetch_sub(1, Ordering::AcqRel);
        ret
    }

    /// Writes an `AF_INET` answer on an IPv4 socket; returns its length, `None` on an IPv6 one.
    pub(crate) fn write_in(&self, sin: crate::sockaddr::SockaddrIn) -> Option<c_int> {
        if self.kernel.family != ffi::AF_INET {
            return None;
        }
        // SAFETY: an IPv4 socket's buffer holds a `sockaddr_in` (type invariant).
        unsafe {
            self.addr
                .cast::<crate::sockaddr::SockaddrIn>()
                .write_unaligned(sin)
        };
        Some(core::mem::size_of::<crate::sockaddr::SockaddrIn>() as c_int)
    }

    /// Writes an `AF_INET6` answer on an IPv6 socket; returns its length, `None` on an IPv4 table.
    pub(crate) fn write_in6(&self, sin6: crate::sockaddr::SockaddrIn6) -> Option<c_int> {
        if self.kernel.family != ffi::AF_INET6 {
            return None;
        }
        // SAFETY: an IPv6 socket's buffer holds a `sockaddr_in6` (type invariant).
        unsafe { self.write_in6_unchecked(sin6) }
    }

    /// Writes an `AF_INET6` answer whatever the socket's family (NAT64 on an `AF_INET` socket).
    ///
    /// # Safety
    ///
    /// The buffer holds a `sockaddr_in6`: the caller is one of the syscalls whose kernel buffer is a
    /// `sockaddr_storage`.
    pub(crate) unsafe fn write_in6_unchecked(
        &self,
        sin6: crate::sockaddr::SockaddrIn6,
    ) -> Option<c_int> {
        // SAFETY: per the function's contract.
        unsafe {
            self.addr
                .cast::<crate::sockaddr::SockaddrIn6>()
                .write_unaligned(sin6)
        };
        Some(core::mem::size_of::<crate::sockaddr::SockaddrIn6>() as c_int)
    }
}

/// Waits until no call forwarded by a [`GetnameCall`] is in flight (sleeps: process context).
pub(crate) fn wait_forwarded_getname() {
    while FORWARDED.load(Ordering::Acquire) != 0 {
        // SAFETY: process context (module unload).
        unsafe { ffi::msleep(1) };
    }
}

/// Defines `$c`, toa's `getname` for a family: `$f(&GetnameCall) -> c_int` answers; `$kernel` is an
/// expression giving a reference to the family's [`KernelTables`], valid for the call.
macro_rules! getname_wrapper {
    ($c:ident, kernel: $kernel:expr, then: $f:path) => {
        /// toa's `getname` (see [`crate::sys::ops::getname_wrapper!`]).
        ///
        /// # Safety
        ///
        /// Only called through toa's socket-call table, with `getname`'s arguments.
        #[no_mangle]
        unsafe extern "C" fn $c(
            sock: *mut $crate::ffi::Socket,
            addr: *mut u8,
            peer: core::ffi::c_int,
        ) -> core::ffi::c_int {
            // SAFETY: the caller's arguments, through toa's copy of this family's table.
            $f(&unsafe { $crate::sys::ops::GetnameCall::new(sock, addr, peer, $kernel) })
        }
    };
}
pub(crate) use getname_wrapper;

/// Waits until every task that may be running toa code reached through a table has left it: tasks
/// preempted anywhere in a wrapper (`synchronize_rcu_tasks`; plain RCU on kernels without
/// preemption, where it means the same) and softirqs (`synchronize_rcu`). Sleeps.
pub(crate) fn synchronize_table_calls() {
    super::sync::synchronize_rcu();
    // SAFETY: process context (module unload).
    unsafe { ffi::toa_synchronize_rcu_tasks() };
}

/// Calls `f` on every TCP listener of every network namespace (they share one listening hash) with
/// its `struct socket` (none for a kernel-internal one), under the listener's hash bucket lock: `f`
/// must not sleep. Stops at `f`'s first error.
///
/// Under the bucket lock a listener cannot leave the hash, and a listener in the hash is not closed
/// yet (close unhashes it, under that lock, before orphaning it), so both stay alive during `f`.
pub(crate) fn for_each_tcp_listener(mut f: impl FnMut(&Sock, Option<&Socket>) -> Result) -> Result {
    // SAFETY: TCP's listening hash exists from boot on; its size never changes.
    let buckets = unsafe { ffi::toa_lhash2_buckets() };
    for i in 0..buckets {
        // SAFETY: `i` is a bucket of the hash.
        let lock = unsafe { ffi::toa_lhash2_lock(i) };
        // SAFETY: the bucket's lock, taken as `__inet_hash`/`inet_unhash` take it (process context).
        unsafe { ffi::toa_spin_lock(lock) };
        // SAFETY: under the bucket lock the chain is stable: listeners linked by `sk_nulls_node`.
        let mut node = unsafe { ffi::toa_lhash2_first(i) };
        let mut res = Ok(());
        // A nulls marker (bit 0 set) ends the chain.
        while node as usize & 1 == 0 {
            // SAFETY: a node of the locked chain; its socket is alive (see above).
            let sk = unsafe { Sock::from_raw(ffi::toa_nulls_node_sk(node)) };
            // SAFETY: as above; a hashed listener's `sk_socket` is set (application socket) or null
            // (kernel-internal), and its `struct socket` lives while it is hashed.
            let sock = unsafe { ffi::toa_sk_socket(sk.as_ptr()) };
            // SAFETY: as above.
            let sock = (!sock.is_null()).then(|| unsafe { Socket::from_raw(sock) });
            res = f(sk, sock);
            if res.is_err() {
                break;
            }
            // SAFETY: as above.
            node = unsafe { ffi::toa_sk_nulls_next(sk.as_ptr()) };
        }
        // SAFETY: taken above.
        unsafe { ffi::toa_spin_unlock(lock) };
        res?;
    }
    Ok(())
}

/// Every TCP listener of every network namespace, held (for work that sleeps, as `lock_sock`).
///
/// Fails with `ENOMEM` if the list cannot grow (atomic allocations: taken under the bucket locks).
pub(crate) fn tcp_listeners() -> Result<KVec<super::sock::SockRef>> {
    let mut out = KVec::new();
    for_each_tcp_listener(|sk, _| out.push(sk.hold(), GFP_ATOMIC).map_err(|_| ENOMEM))?;
    Ok(out)
}
