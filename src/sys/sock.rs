// SPDX-License-Identifier: GPL-2.0

//! Sockets: `struct socket` (the file side) and `struct sock` (the protocol side).

use super::layout;
use super::net::Net;
use crate::ffi;
use kernel::types::Opaque;

/// A socket's protocol side (`struct sock`), TCP or UDP, IPv4 or IPv6.
///
/// Its address is what toa keys a TCP socket's entry with ([`Sock::as_ptr`]); fields are read in place
/// where `src/sys/layout.rs` knows them, through the shim otherwise, with `READ_ONCE` where the kernel
/// may change them concurrently.
///
/// # Invariants
///
/// A `&Sock` refers to a `struct sock` that stays allocated for the lifetime of the reference: the
/// caller holds a reference to it (a syscall on its file, the `syn_recv_sock` caller's new child), or
/// is in `inet_sock_destruct`, which frees it only after returning. Its family, protocol and namespace
/// do not change while it is borrowed.
#[repr(transparent)]
pub(crate) struct Sock(Opaque<ffi::Sock>);

impl Sock {
    /// The socket at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points at a `struct sock` that stays allocated for `'a` (see the type invariants).
    pub(crate) unsafe fn from_raw<'a>(ptr: *const ffi::Sock) -> &'a Sock {
        // SAFETY: `Sock` is a transparent wrapper of `ffi::Sock`; per the function's contract the
        // object lives for `'a`.
        unsafe { &*ptr.cast::<Sock>() }
    }

    /// The C object: toa's key for the socket's TCP entry, and the argument of the shim's functions.
    pub(crate) fn as_ptr(&self) -> *mut ffi::Sock {
        self.0.get()
    }

    /// `sk_family`: `AF_INET` or `AF_INET6` for the sockets toa sees.
    pub(crate) fn family(&self) -> u16 {
        // SAFETY: by the type invariant the socket is allocated; the family never changes.
        unsafe { layout::SK_FAMILY.read_once(self.as_ptr()) }
    }

    /// `sk_protocol`: `IPPROTO_TCP`, `IPPROTO_UDP`... (16 bits: `IPPROTO_MPTCP` is 262).
    pub(crate) fn protocol(&self) -> u16 {
        // SAFETY: as in `family`.
        unsafe { layout::SK_PROTOCOL.read_once(self.as_ptr()) }
    }

    /// `sk_state` (`TCP_LISTEN`, `TCP_CLOSE`...), read once.
    pub(crate) fn state(&self) -> u8 {
        // SAFETY: as in `family`; a `READ_ONCE` of a field that may change concurrently.
        unsafe { layout::SK_STATE.read_once(self.as_ptr()) }
    }

    /// The socket's network namespace.
    pub(crate) fn net(&self) -> &Net {
        // SAFETY: a socket holds its namespace (or, for a kernel socket, is freed before it) while it
        // is allocated, and its namespace never changes: it lives at least as long as `self`. Without
        // `CONFIG_NET_NS` the shim answers `init_net`.
        unsafe {
            Net::from_raw(if layout::NET_NS {
                layout::SK_NET.read_once(self.as_ptr())
            } else {
                ffi::toa_sk_net(self.as_ptr())
            })
        }
    }

    /// `sk_rcv_saddr`: the local IPv4 address, network byte order as in memory.
    pub(crate) fn rcv_saddr(&self) -> [u8; 4] {
        // SAFETY: as in `state`.
        unsafe { ffi::toa_sk_rcv_saddr(self.as_ptr()) }.to_ne_bytes()
    }

    /// `sk_daddr`: the peer's IPv4 address as the kernel knows it, network byte order.
    pub(crate) fn daddr(&self) -> [u8; 4] {
        // SAFETY: as in `state`.
        unsafe { ffi::toa_sk_daddr(self.as_ptr()) }.to_ne_bytes()
    }

    /// `sk_v6_rcv_saddr`: the local IPv6 address (`::ffff:a.b.c.d` for IPv4 on a dual-stack socket).
    pub(crate) fn v6_rcv_saddr(&self) -> [u8; 16] {
        // SAFETY: by the type invariant the socket is allocated and the shim returns the address of
        // its field; a 16-byte copy (the kernel updates it only on bind/connect of this socket).
        unsafe { ffi::toa_sk_v6_rcv_saddr(self.as_ptr()).read() }
    }

    /// `sk_v6_daddr`: the peer's IPv6 address as the kernel knows it.
    pub(crate) fn v6_daddr(&self) -> [u8; 16] {
        // SAFETY: as in `v6_rcv_saddr`.
        unsafe { ffi::toa_sk_v6_daddr(self.as_ptr()).read() }
    }

    /// `sk_num`: the local port, host byte order.
    pub(crate) fn num(&self) -> u16 {
        // SAFETY: as in `state`.
        unsafe { ffi::toa_sk_num(self.as_ptr()) }
    }

    /// Whether a kernel user created the socket (`sk_kern_sock`: SMC's, MPTCP's, in-kernel servers').
    pub(crate) fn is_kernel_socket(&self) -> bool {
        // SAFETY: as in `family`; set at creation, never changed.
        unsafe { ffi::toa_sk_kern(self.as_ptr()) }
    }

    /// The connection table the socket calls (`icsk_af_ops`), read once. Only for TCP sockets.
    pub(crate) fn af_ops(&self) -> *const ffi::AfOps {
        // SAFETY: as in `state`; every TCP socket is an `inet_connection_sock`.
        unsafe { layout::ICSK_AF_OPS.read_once(self.as_ptr()) }
    }

    /// Points the socket's connection table at `new` if it is `old` (one atomic compare-and-exchange,
    /// as the kernel's own writers race with none but toa); returns whether it did. Only for TCP sockets.
    ///
    /// # Safety
    ///
    /// `new` is a full connection table of the socket's family that stays valid as long as the socket
    /// may call it.
    pub(crate) unsafe fn replace_af_ops(
        &self,
        old: *const ffi::AfOps,
        new: *const ffi::AfOps,
    ) -> bool {
        // SAFETY: as in `af_ops`; the kernel stores the pointer whole. The new table per the
        // function's contract.
        unsafe { layout::ICSK_AF_OPS.compare_exchange(self.as_ptr(), old, new) }
    }

    /// Takes a reference to the socket (`sock_hold`), dropped with the returned [`SockRef`].
    pub(crate) fn hold(&self) -> SockRef {
        // SAFETY: allocated (type invariant); the reference keeps it so until `sock_put`.
        unsafe { ffi::toa_sock_hold(self.as_ptr()) };
        // INVARIANT: the reference just taken.
        SockRef(core::ptr::NonNull::from(self))
    }

    /// Takes the socket's owner lock (`lock_sock`: may sleep), released when the guard drops.
    pub(crate) fn lock(&self) -> SockLock<'_> {
        // SAFETY: allocated (type invariant); process context is the caller's (the guard is not Send).
        unsafe { ffi::toa_lock_sock(self.as_ptr()) };
        // INVARIANT: locked just above.
        SockLock(self, core::marker::PhantomData)
    }

    /// `skc_portpair`, read once: `sk_dport` (network byte order as in memory) and `sk_num` (host
    /// order) as one 32-bit word whose layout is the kernel's; toa compares it, never splits it.
    pub(crate) fn portpair(&self) -> u32 {
        // SAFETY: as in `state`.
        unsafe { layout::SK_PORTPAIR.read_once(self.as_ptr()) }
    }

    /// `sk_dport`: the peer's port, network byte order as in memory.
    pub(crate) fn dport_be(&self) -> u16 {
        // SAFETY: as in `state`.
        unsafe { ffi::toa_sk_dport(self.as_ptr()) }
    }
}

/// A counted reference to a socket (`sock_hold`), released (`sock_put`) on drop.
///
/// # Invariants
///
/// Holds one reference to the socket, which stays allocated while it exists.
pub(crate) struct SockRef(core::ptr::NonNull<Sock>);

impl core::ops::Deref for SockRef {
    type Target = Sock;
    fn deref(&self) -> &Sock {
        // SAFETY: referenced (type invariant).
        unsafe { self.0.as_ref() }
    }
}

impl Drop for SockRef {
    fn drop(&mut self) {
        // SAFETY: the reference taken by `Sock::hold`, given back once.
        unsafe { ffi::toa_sock_put(self.0.as_ref().as_ptr()) };
    }
}

/// A socket whose owner lock (`lock_sock`) is held: its `struct socket` is stable (only a holder
/// orphans the socket) and the kernel's own table writers (`listen()`, `TCP_ULP`, `IPV6_ADDRFORM`,
/// close) are excluded.
///
/// # Invariants
///
/// The socket's owner lock is held by the current task while this exists (taken by [`Sock::lock`]
/// and released on drop, or held by the caller of a hooked function: [`SockLock::assume_held`]).
pub(crate) struct SockLock<'a>(&'a Sock, core::marker::PhantomData<*mut ()>);

impl<'a> SockLock<'a> {
    /// The socket `sk`, whose owner lock the caller holds (it is in a kernel function called with the
    /// socket locked). The returned value does not release it.
    ///
    /// # Safety
    ///
    /// The current task holds `sk`'s owner lock for `'a`.
    pub(crate) unsafe fn assume_held(sk: &'a Sock) -> core::mem::ManuallyDrop<Self> {
        // INVARIANT: per the function's contract.
        core::mem::ManuallyDrop::new(SockLock(sk, core::marker::PhantomData))
    }

    /// The locked socket.
    pub(crate) fn sk(&self) -> &'a Sock {
        self.0
    }

    /// Its file side, if it has one (a kernel-internal or orphaned socket has none).
    pub(crate) fn socket(&self) -> Option<&Socket> {
        // SAFETY: allocated (type invariant of `Sock`); under the owner lock `sk_socket` is stable and
        // the `struct socket` lives while it is set.
        let sock = unsafe { ffi::toa_sk_socket(self.0.as_ptr()) };
        // SAFETY: as above.
        (!sock.is_null()).then(|| unsafe { Socket::from_raw(sock) })
    }
}

impl Drop for SockLock<'_> {
    fn drop(&mut self) {
        // SAFETY: locked (type invariant); released once.
        unsafe { ffi::toa_release_sock(self.0.as_ptr()) };
    }
}

/// A socket's file side (`struct socket`).
///
/// # Invariants
///
/// A `&Socket` refers to a socket the caller holds a reference to (a syscall on its file) for the
/// lifetime of the reference.
#[repr(transparent)]
pub(crate) struct Socket(Opaque<ffi::Socket>);

impl Socket {
    /// The socket at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points at a `struct socket` the caller holds a reference to for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *const ffi::Socket) -> &'a Socket {
        // SAFETY: a transparent wrapper; per the function's contract the object lives for `'a`.
        unsafe { &*ptr.cast::<Socket>() }
    }

    /// The C object.
    pub(crate) fn as_ptr(&self) -> *mut ffi::Socket {
        self.0.get()
    }

    /// The socket-call table it calls (`sock->ops`), read once.
    pub(crate) fn ops(&self) -> *const ffi::ProtoOps {
        // SAFETY: referenced (type invariant); a `READ_ONCE` of a field the kernel may change.
        unsafe { layout::SOCKET_OPS.read_once(self.as_ptr()) }
    }

    /// Points the socket's call table at `new` if it is `old` (one atomic compare-and-exchange: the
    /// kernel's writers hold the owner lock, toa may not); returns whether it did.
    ///
    /// # Safety
    ///
    /// `new` is a full call table for the socket's family and type that stays valid as long as the
    /// socket may call it.
    pub(crate) unsafe fn replace_ops(
        &self,
        old: *const ffi::ProtoOps,
        new: *const ffi::ProtoOps,
    ) -> bool {
        // SAFETY: as in `ops`; the kernel stores the pointer whole. The new table per the function's
        // contract.
        unsafe { layout::SOCKET_OPS.compare_exchange(self.as_ptr(), old, new) }
    }

    /// Its protocol side, if it has one (a socket being released may not).
    pub(crate) fn sk(&self) -> Option<&Sock> {
        // SAFETY: by the type invariant the socket is referenced; `sock->sk` is a socket that lives
        // while the file does.
        let sk = unsafe { layout::SOCKET_SK.read_once(self.as_ptr()) };
        // SAFETY: a non-null `sock->sk` lives as long as the `struct socket` that holds it.
        (!sk.is_null()).then(|| unsafe { Sock::from_raw(sk) })
    }
}

/// The number of buckets of TCP's established hash table (`tcp_hashinfo.ehash_mask + 1`), sized at boot.
pub(crate) fn tcp_established_buckets() -> u32 {
    // SAFETY: TCP's established table exists from boot on, and its size never changes.
    unsafe { ffi::toa_tcp_ehash_size() }
}
