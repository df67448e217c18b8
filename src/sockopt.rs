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
//! On success 20 bytes are written, `*len` is set to 20 and `getname_toa_ok` counts.

use crate::ffi::{self, NfSockoptOps, Sock, TCP_CLOSE, TCP_LISTEN, TCP_SYN_SENT};
use crate::stats::{self, Counter};
use crate::store;
use crate::wire::Addr;
use core::ffi::{c_int, c_void};
use kernel::bindings;
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

/// `TOA_SO_GET_LOOKUP` of `include/toa.h`.
pub(crate) const TOA_SO_GET_LOOKUP: c_int = 4096;
/// `sizeof(struct toa_nat64_peer)`: `struct in6_addr saddr` (16), `uint16_t sport` (network order), 2
/// bytes of tail padding.
pub(crate) const TOA_NAT64_PEER_LEN: usize = 20;

/// The answer to one lookup, or the (positive) errno to return.
fn lookup(sk: *const Sock) -> core::result::Result<[u8; TOA_NAT64_PEER_LEN], u32> {
    // SAFETY: `sk` is the caller's socket, referenced by its file for the whole syscall.
    let state = unsafe { ffi::toa_sk_state(sk) };
    if matches!(state, TCP_LISTEN | TCP_CLOSE | TCP_SYN_SENT) {
        return Err(bindings::ENOTCONN);
    }
    // SAFETY: as above.
    let Some(client) =
        store::lookup(unsafe { crate::sys::sock::Sock::from_raw(sk) }).map(|t| t.client)
    else {
        stats::inc(sk, Counter::GetnameToaEmpty);
        return Err(bindings::ENOENT);
    };
    let Addr::V6(addr) = client.addr else {
        stats::inc(sk, Counter::GetnameToaMismatch);
        return Err(bindings::EAFNOSUPPORT);
    };
    let mut peer = [0u8; TOA_NAT64_PEER_LEN];
    peer[..16].copy_from_slice(&addr);
    peer[16..18].copy_from_slice(&client.port.to_be_bytes());
    Ok(peer)
}

/// `nf_sockopt_ops::get` for `TOA_SO_GET_LOOKUP`: see the module documentation for the errors.
///
/// # Safety
///
/// Only called by `nf_getsockopt` with a live socket, a user pointer and the kernel copy of its length.
#[no_mangle]
unsafe extern "C" fn toa_sockopt_get(
    sk: *mut Sock,
    optval: c_int,
    user: *mut c_void,
    len: *mut c_int,
) -> c_int {
    // SAFETY: `len` points at the kernel copy of the caller's length (`ip_getsockopt`).
    let ulen = unsafe { len.read() };
    if optval != TOA_SO_GET_LOOKUP || usize::try_from(ulen).map_or(true, |l| l < TOA_NAT64_PEER_LEN)
    {
        return EINVAL.to_errno();
    }
    let peer = match lookup(sk) {
        Ok(peer) => peer,
        Err(errno) => return -(errno as c_int),
    };
    if UserSlice::new(user as usize, TOA_NAT64_PEER_LEN)
        .writer()
        .write_slice(&peer)
        .is_err()
    {
        return EFAULT.to_errno();
    }
    // SAFETY: as above.
    unsafe { len.write(TOA_NAT64_PEER_LEN as c_int) };
    stats::inc(sk, Counter::GetnameToaOk);
    0
}

/// The registration of the socket-option range; unregistered on drop.
pub(crate) struct SockoptRegistration(());

impl SockoptRegistration {
    /// Registers `toa_sockopt_ops` (`src/toa_shim.c`).
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: the shim's static ops, registered once and unregistered in `drop`.
        let ret =
            unsafe { ffi::nf_register_sockopt(core::ptr::addr_of_mut!(ffi::toa_sockopt_ops)) };
        if ret < 0 {
            pr_err!(
                "cannot register getsockopt {} (error {}): another TOA module loaded?\n",
                TOA_SO_GET_LOOKUP,
                ret
            );
            return Err(Error::from_errno(ret));
        }
        Ok(Self(()))
    }
}

impl Drop for SockoptRegistration {
    fn drop(&mut self) {
        let ops: *mut NfSockoptOps = core::ptr::addr_of_mut!(ffi::toa_sockopt_ops);
        // SAFETY: registered in `register`. A handler in progress holds a module reference (`.owner`), so
        // the module cannot be unloading while one runs.
        unsafe { ffi::nf_unregister_sockopt(ops) };
    }
}
