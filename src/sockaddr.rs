// SPDX-License-Identifier: GPL-2.0

//! The socket address layouts toa writes into `getpeername()`/`accept()` results and prints in
//! `/proc/net/toa_table`: `struct sockaddr_in` and `struct sockaddr_in6` of `include/uapi/linux/in.h` and
//! `include/uapi/linux/in6.h` (stable uapi; family in host order, port and addresses in network order).

use crate::ffi::{AF_INET, AF_INET6};
use crate::wire::{Addr, Endpoint};

/// `struct sockaddr_in`: 16 bytes.
#[repr(C)]
pub(crate) struct SockaddrIn {
    /// `AF_INET`, host order.
    pub(crate) family: u16,
    /// Port, network order.
    pub(crate) port: [u8; 2],
    /// Address, network order.
    pub(crate) addr: [u8; 4],
    /// Zero padding up to `sizeof(struct sockaddr)`.
    pub(crate) zero: [u8; 8],
}

/// `struct sockaddr_in6`: 28 bytes.
#[repr(C)]
pub(crate) struct SockaddrIn6 {
    /// `AF_INET6`, host order.
    pub(crate) family: u16,
    /// Port, network order.
    pub(crate) port: [u8; 2],
    /// Flow information, network order; toa always reports 0.
    pub(crate) flowinfo: [u8; 4],
    /// Address, network order.
    pub(crate) addr: [u8; 16],
    /// Scope id, host order; toa always reports 0 (a client behind a load balancer is never link-local).
    pub(crate) scope_id: u32,
}

const _: () = assert!(core::mem::size_of::<SockaddrIn>() == 16);
const _: () = assert!(core::mem::size_of::<SockaddrIn6>() == 28);

impl SockaddrIn {
    /// An IPv4 socket address.
    pub(crate) fn new(addr: [u8; 4], port: u16) -> Self {
        Self {
            family: AF_INET,
            port: port.to_be_bytes(),
            addr,
            zero: [0; 8],
        }
    }
}

impl SockaddrIn6 {
    /// An IPv6 socket address.
    pub(crate) fn new(addr: [u8; 16], port: u16) -> Self {
        Self {
            family: AF_INET6,
            port: port.to_be_bytes(),
            flowinfo: [0; 4],
            addr,
            scope_id: 0,
        }
    }

    /// What an `AF_INET6` socket reports for `ep`: IPv4 addresses as `::ffff:a.b.c.d`.
    pub(crate) fn mapped(ep: &Endpoint) -> Self {
        Self::new(ep.addr.to_v6_mapped(), ep.port)
    }
}

/// Either layout, for printing an endpoint in its own family.
pub(crate) enum Sockaddr {
    /// IPv4.
    V4(SockaddrIn),
    /// IPv6.
    V6(SockaddrIn6),
}

impl Sockaddr {
    /// The socket address of `ep` in `ep`'s own family.
    pub(crate) fn of(ep: &Endpoint) -> Self {
        match ep.addr {
            Addr::V4(a) => Sockaddr::V4(SockaddrIn::new(a, ep.port)),
            Addr::V6(a) => Sockaddr::V6(SockaddrIn6::new(a, ep.port)),
        }
    }

    /// A pointer to the C `struct sockaddr`, for `%pIS` in `seq_printf`.
    pub(crate) fn as_ptr(&self) -> *const core::ffi::c_void {
        match self {
            Sockaddr::V4(s) => core::ptr::from_ref(s).cast(),
            Sockaddr::V6(s) => core::ptr::from_ref(s).cast(),
        }
    }
}
