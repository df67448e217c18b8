// SPDX-License-Identifier: GPL-2.0

//! `getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP = 2048 | UOA_SO_GET_LOOKUP1 = 2049, ...)` on UDP
//! sockets: the client of a flow, from the flow map. Served through a netfilter socket-option range
//! (`nf_register_sockopt`, PF_INET, 2048..=2049), which also reaches `AF_INET6` sockets: their `IPPROTO_IP`
//! options fall through to `ip_getsockopt`. Layouts and errors are those of `include/uoa.h`:
//!
//! * v0, `struct uoa_param_map` (56 bytes, packed): `af` (host order, or network order as declared by the
//!   IP-option TOA/UOA design), `saddr[16]`, `daddr[16]`, `sport`, `dport` in; `real_saddr[16]`,
//!   `real_sport` out. `af = AF_INET` takes IPv4 addresses in the first 4 bytes of each field.
//! * v1, `union uoa_sockopt_param` (40 bytes, ByteDance's `struct four_tuple`): `type` (0 / 1, or
//!   `AF_INET` / `AF_INET6`), `sport`, `dport`, then the two addresses (4 bytes each for IPv4, 16 for
//!   IPv6) in; the same layout out: `type` = the client's family (0 / 1), client port, vport, client
//!   address, VIP.
//!
//! `saddr:sport` name the load balancer (what `recvfrom()` reported), `daddr:dport` the local end
//! (`daddr` all zero: any local address). An IPv4 flow may also be named with `::ffff:a.b.c.d`
//! addresses (`af = AF_INET6` / `type = 1`), as a dual-stack `AF_INET6` socket sees it.
//!
//! Errors: `ENOPROTOOPT` (not a UDP socket), `EINVAL` (`*len` below the structure's size),
//! `EAFNOSUPPORT` (unknown `af`/`type`; v0 with `af = AF_INET` for an IPv6 client), `EACCES` (`dport` is
//! not the socket's own local port), `ENOENT` (no live mapping in the socket's namespace), `EFAULT`.

use super::flows::{self, FlowKey, Mapping};
use crate::ffi::{AF_INET, AF_INET6, IPPROTO_UDP};
use crate::stats::{self, Counter};
pub(crate) use crate::sys::netfilter::SockoptRegistration;
use crate::sys::netfilter::{getsockopt_handler, GetsockoptCall, SockoptRange};
use crate::sys::sock::Sock;
use crate::wire::Addr;
use core::ffi::c_int;
use kernel::bindings;
use kernel::prelude::*;

/// `UOA_SO_GET_LOOKUP` and `UOA_SO_GET_LOOKUP1` of `include/uoa.h`.
const UOA_SO_GET_LOOKUP: c_int = 2048;
const UOA_SO_GET_LOOKUP1: c_int = 2049;
/// `sizeof(struct uoa_param_map)` and `sizeof(union uoa_sockopt_param)`.
const V0_LEN: usize = 56;
const V1_LEN: usize = 40;
/// The largest of the two.
const MAX_LEN: usize = V0_LEN;

/// The address family a query names, as the map stores addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// `AF_INET` / `AF_INET6` in host or network order (v0's `af`).
    fn from_af(af: u16) -> Option<Self> {
        match af {
            AF_INET => Some(Family::V4),
            AF_INET6 => Some(Family::V6),
            _ if af.swap_bytes() == AF_INET => Some(Family::V4),
            _ if af.swap_bytes() == AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }

    /// ByteDance's `UOA_IP_TYPE_V4` / `_V6` (0 / 1) or `AF_INET` / `AF_INET6` (v1's `type`).
    fn from_type(t: u32) -> Option<Self> {
        match t {
            0 => Some(Family::V4),
            1 => Some(Family::V6),
            _ => u16::try_from(t).ok().and_then(|af| match af {
                AF_INET => Some(Family::V4),
                AF_INET6 => Some(Family::V6),
                _ => None,
            }),
        }
    }

    /// The address of this family at `b[at..]` (4 or 16 bytes), as the map stores it.
    fn addr16(self, b: &[u8], at: usize) -> [u8; 16] {
        let mut a = [0u8; 16];
        match self {
            Family::V4 => {
                let mut v4 = [0u8; 4];
                v4.copy_from_slice(&b[at..at + 4]);
                // All zero stays all zero (any local address), not ::ffff:0.0.0.0.
                if v4 != [0; 4] {
                    a = flows::addr16(Addr::V4(v4));
                }
            }
            Family::V6 => a.copy_from_slice(&b[at..at + 16]),
        }
        a
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The flow a query names: the load balancer's address and port at `s`/`sport`, the local ones at
/// `d`/`dport`.
fn key(f: Family, q: &[u8], s: usize, d: usize, sport: usize, dport: usize) -> FlowKey {
    FlowKey {
        lb: f.addr16(q, s),
        lb_port: be16(q, sport),
        local: f.addr16(q, d),
        local_port: be16(q, dport),
    }
}

/// Answers query `q` (the caller's structure, `V0_LEN` or `V1_LEN` bytes) for a socket of `sk`'s
/// namespace, in place; `Err` holds the (positive) errno.
fn answer(sk: &Sock, v1: bool, q: &mut [u8]) -> core::result::Result<(), u32> {
    let (family, flow) = if v1 {
        let f = Family::from_type(u32::from_ne_bytes([q[0], q[1], q[2], q[3]]))
            .ok_or(bindings::EAFNOSUPPORT)?;
        let (s, d) = if f == Family::V4 { (8, 12) } else { (8, 24) };
        (f, key(f, q, s, d, 4, 6))
    } else {
        let f = Family::from_af(u16::from_ne_bytes([q[0], q[1]])).ok_or(bindings::EAFNOSUPPORT)?;
        (f, key(f, q, 2, 18, 34, 36))
    };
    if flow.local_port != sk.num() {
        return Err(bindings::EACCES);
    }
    let Some(Mapping { client, vip }) = flows::lookup(sk.net(), &flow, true) else {
        stats::inc(sk, Counter::UoaLookupMissed);
        return Err(bindings::ENOENT);
    };
    if v1 {
        let (t, width) = match client.addr {
            Addr::V4(_) => (0u32, 4),
            Addr::V6(_) => (1u32, 16),
        };
        q.fill(0);
        q[0..4].copy_from_slice(&t.to_ne_bytes());
        q[4..6].copy_from_slice(&client.port.to_be_bytes());
        let put = |q: &mut [u8], at: usize, a: Addr| match a {
            Addr::V4(a) if width == 4 => q[at..at + 4].copy_from_slice(&a),
            a => q[at..at + 16].copy_from_slice(&a.to_v6_mapped()),
        };
        put(q, 8, client.addr);
        if let Some(vip) = vip {
            q[6..8].copy_from_slice(&vip.port.to_be_bytes());
            put(q, 8 + width, vip.addr);
        }
    } else {
        let real = match (family, client.addr) {
            (Family::V4, Addr::V6(_)) => return Err(bindings::EAFNOSUPPORT),
            (Family::V4, Addr::V4(a)) => {
                let mut r = [0u8; 16];
                r[..4].copy_from_slice(&a);
                r
            }
            (Family::V6, a) => a.to_v6_mapped(),
        };
        q[38..54].copy_from_slice(&real);
        q[54..56].copy_from_slice(&client.port.to_be_bytes());
    }
    stats::inc(sk, Counter::UoaLookupOk);
    Ok(())
}

getsockopt_handler!(toa_uoa_sockopt_get => get);

/// `nf_sockopt_ops::get` for 2048 and 2049: see the module documentation for the errors.
fn get(mut call: GetsockoptCall<'_>) -> c_int {
    if call.sk.protocol() != u16::from(IPPROTO_UDP) {
        return -(bindings::ENOPROTOOPT as c_int);
    }
    let size = match call.optname {
        UOA_SO_GET_LOOKUP => V0_LEN,
        UOA_SO_GET_LOOKUP1 => V1_LEN,
        _ => return EINVAL.to_errno(),
    };
    if usize::try_from(call.len.get()).map_or(true, |l| l < size) {
        return EINVAL.to_errno();
    }
    let mut buf = [0u8; MAX_LEN];
    let q = &mut buf[..size];
    let (mut reader, mut writer) = call.user_slice(size).reader_writer();
    if reader.read_slice(q).is_err() {
        return EFAULT.to_errno();
    }
    if let Err(errno) = answer(call.sk, call.optname == UOA_SO_GET_LOOKUP1, q) {
        return -(errno as c_int);
    }
    if writer.write_slice(q).is_err() {
        return EFAULT.to_errno();
    }
    call.len.set(size as c_int);
    0
}

/// Registers the range 2048..=2049; it is unregistered when the registration drops.
pub(crate) fn register() -> Result<SockoptRegistration> {
    SockoptRegistration::register(SockoptRange::Uoa).inspect_err(|e| {
        pr_err!(
            "cannot register getsockopt {}-{} (error {}): another UOA module (uoa.ko) loaded? Unload it, or load toa with uoa=0\n",
            UOA_SO_GET_LOOKUP,
            UOA_SO_GET_LOOKUP1,
            e.to_errno()
        )
    })
}
