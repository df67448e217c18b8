// SPDX-License-Identifier: GPL-2.0

//! Sockets: `struct socket` (the file side) and `struct sock` (the protocol side).

use super::net::Net;
use crate::ffi;
use kernel::types::Opaque;

/// A socket's protocol side (`struct sock`), TCP or UDP, IPv4 or IPv6.
///
/// Its address is what toa keys a TCP socket's entry with ([`Sock::as_ptr`]); fields are read through
/// the shim, with `READ_ONCE` where the kernel may change them concurrently.
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
        unsafe { ffi::toa_sk_family(self.as_ptr()) }
    }

    /// `sk_protocol`: `IPPROTO_TCP`, `IPPROTO_UDP`...
    pub(crate) fn protocol(&self) -> u8 {
        // SAFETY: as in `family`.
        unsafe { ffi::toa_sk_protocol(self.as_ptr()) }
    }

    /// `sk_state` (`TCP_LISTEN`, `TCP_CLOSE`...), read once.
    pub(crate) fn state(&self) -> u8 {
        // SAFETY: as in `family`; a `READ_ONCE` of a field that may change concurrently.
        unsafe { ffi::toa_sk_state(self.as_ptr()) }
    }

    /// The socket's network namespace.
    pub(crate) fn net(&self) -> &Net {
        // SAFETY: a socket holds its namespace (or, for a kernel socket, is freed before it) while it
        // is allocated, and its namespace never changes: it lives at least as long as `self`.
        unsafe { Net::from_raw(ffi::toa_sk_net(self.as_ptr())) }
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

    /// `sk_dport`: the peer's port, network byte order as in memory.
    pub(crate) fn dport_be(&self) -> u16 {
        // SAFETY: as in `state`.
        unsafe { ffi::toa_sk_dport(self.as_ptr()) }
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

    /// Its protocol side, if it has one (a socket being released may not).
    pub(crate) fn sk(&self) -> Option<&Sock> {
        // SAFETY: by the type invariant the socket is referenced; `sock->sk` is a socket that lives
        // while the file does.
        let sk = unsafe { ffi::toa_socket_sk(self.0.get()) };
        // SAFETY: a non-null `sock->sk` lives as long as the `struct socket` that holds it.
        (!sk.is_null()).then(|| unsafe { Sock::from_raw(sk) })
    }
}

/// The number of buckets of TCP's established hash table (`tcp_hashinfo.ehash_mask + 1`), sized at boot.
pub(crate) fn tcp_established_buckets() -> u32 {
    // SAFETY: TCP's established table exists from boot on, and its size never changes.
    unsafe { ffi::toa_tcp_ehash_size() }
}
