// SPDX-License-Identifier: GPL-2.0

//! `getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP = 4096, &struct toa_nat64_peer, &len)`: the NAT64 API of
//! Tencent Cloud CLB and Huawei Cloud ELB, served through a netfilter socket-option range
//! (`nf_register_sockopt`, PF_INET, options 4096..=4096). It also reaches `AF_INET6` sockets: their
//! `IPPROTO_IP` options fall through to `ip_getsockopt`.
//!
//! Errors (also in `include/toa.h` and the README):
//! * `EINVAL`: `*len` is smaller than `sizeof(struct toa_nat64_peer)` (20).
//! * `ENOTCONN`: the socket has no peer (listening, closed, or connecting).
//! * `ENOENT`: the connection carried no TOA (counts `getname_toa_empty`).
//! * `EAFNOSUPPORT`: the TOA holds an IPv4 client, which `getpeername()` already returns (counts
//!   `getname_toa_mismatch`).
//! * `EFAULT`: the result could not be copied to the caller's buffer.
//!
//! On success 20 bytes are written, `*len` is set to 20 and `getname_toa_ok` counts (it counts an
//! answer that `EFAULT` kept from the caller too, as for `getpeername()`).

use crate::ffi::{TCP_CLOSE, TCP_LISTEN, TCP_SYN_SENT};
use crate::stats::{self, Counter};
use crate::store;
pub(crate) use crate::sys::netfilter::SockoptRegistration;
use crate::sys::netfilter::{getsockopt_handler, GetsockoptCall, SockoptRange};
use crate::sys::sock::Sock;
use crate::sys::sync::RcuReadGuard;
use crate::wire::Addr;
use core::ffi::c_int;
use kernel::bindings;
use kernel::prelude::*;

/// `TOA_SO_GET_LOOKUP` of `include/toa.h`.
pub(crate) const TOA_SO_GET_LOOKUP: c_int = 4096;
/// `sizeof(struct toa_nat64_peer)`: `struct in6_addr saddr` (16), `uint16_t sport` (network order), 2
/// bytes of tail padding.
pub(crate) const TOA_NAT64_PEER_LEN: usize = 20;

/// The answer to one lookup, or the (positive) errno to return. An answer counts `getname_toa_ok` here,
/// in the lookup's read-side section, as `getpeername()`'s does: before the copy to the caller.
fn lookup(sk: &Sock) -> core::result::Result<[u8; TOA_NAT64_PEER_LEN], u32> {
    if matches!(sk.state(), TCP_LISTEN | TCP_CLOSE | TCP_SYN_SENT) {
        return Err(bindings::ENOTCONN);
    }
    let rcu = RcuReadGuard::new();
    let Some(client) = store::client(sk, &rcu).map(|c| c.endpoint()) else {
        stats::inc_in(sk, Counter::GetnameToaEmpty, &rcu);
        return Err(bindings::ENOENT);
    };
    let Addr::V6(addr) = client.addr else {
        stats::inc_in(sk, Counter::GetnameToaMismatch, &rcu);
        return Err(bindings::EAFNOSUPPORT);
    };
    stats::inc_in(sk, Counter::GetnameToaOk, &rcu);
    let mut peer = [0u8; TOA_NAT64_PEER_LEN];
    peer[..16].copy_from_slice(&addr);
    peer[16..18].copy_from_slice(&client.port.to_be_bytes());
    Ok(peer)
}

getsockopt_handler!(toa_sockopt_get => get);

/// `nf_sockopt_ops::get` for `TOA_SO_GET_LOOKUP`: see the module documentation for the errors.
fn get(mut call: GetsockoptCall<'_>) -> c_int {
    if call.optname != TOA_SO_GET_LOOKUP
        || usize::try_from(call.len.get()).map_or(true, |l| l < TOA_NAT64_PEER_LEN)
    {
        return EINVAL.to_errno();
    }
    let peer = match lookup(call.sk) {
        Ok(peer) => peer,
        Err(errno) => return -(errno as c_int),
    };
    if call
        .user_slice(TOA_NAT64_PEER_LEN)
        .writer()
        .write(&peer)
        .is_err()
    {
        return EFAULT.to_errno();
    }
    call.len.set(TOA_NAT64_PEER_LEN as c_int);
    0
}

/// Registers the range of `TOA_SO_GET_LOOKUP`; it is unregistered when the registration drops.
pub(crate) fn register() -> Result<SockoptRegistration> {
    SockoptRegistration::register(SockoptRange::Toa).inspect_err(|e| {
        pr_err!(
            "cannot register getsockopt {} (error {}): another TOA module loaded?\n",
            TOA_SO_GET_LOOKUP,
            e.to_errno()
        )
    })
}
