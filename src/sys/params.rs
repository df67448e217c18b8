// SPDX-License-Identifier: GPL-2.0

//! toa's module parameters, declared by the shim (`module_param` is a C macro) and read here.
//! `modinfo toa` shows their descriptions; the README lists them.

use crate::ffi;
use core::ffi::CStr;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

/// `debug` (0644): log rate-limited per-connection lines.
#[inline(always)]
pub(crate) fn debug() -> bool {
    // SAFETY: a `bool` of the shim that sysfs may write at any time: read once, volatile (READ_ONCE).
    unsafe { read_volatile(addr_of!(ffi::toa_param_debug)) }
}

/// Whether a debug line may be printed now: `debug` is on and the shared rate limit allows one.
pub(crate) fn debug_line_allowed() -> bool {
    // SAFETY: `__ratelimit` on the shim's static state is safe in any context.
    debug() && unsafe { ffi::toa_debug_ratelimit() }
}

/// `nat64_getpeername` (0644): the IP-option TOA/UOA design's `sockaddr_in6` from `getpeername()` on
/// `AF_INET` sockets.
#[inline(always)]
pub(crate) fn nat64_getpeername() -> bool {
    // SAFETY: as in `debug`.
    unsafe { read_volatile(addr_of!(ffi::toa_param_nat64_getpeername)) }
}

/// `getsockname_vip` (0644): `getsockname()` returns the VIP of an IP-option TOA.
#[inline(always)]
pub(crate) fn getsockname_vip() -> bool {
    // SAFETY: as in `debug`.
    unsafe { read_volatile(addr_of!(ffi::toa_param_getsockname_vip)) }
}

/// `trusted_sources` (0444, fixed after load): the text given, empty if none.
pub(crate) fn trusted_sources() -> &'static CStr {
    // SAFETY: a `charp` parameter of this module, read-only after load: null or a NUL-terminated
    // string that lives as long as the module.
    unsafe {
        let p = read_volatile(addr_of!(ffi::toa_param_trusted_sources));
        if p.is_null() {
            c""
        } else {
            ffi::c_str_from_ptr(p)
        }
    }
}

/// `table_buckets` (0444) as given at load: 0 means "as many as TCP's established table".
pub(crate) fn table_buckets() -> u32 {
    // SAFETY: a read-only parameter, fixed after load.
    unsafe { read_volatile(addr_of!(ffi::toa_param_table_buckets)) }
}

/// Shows `n`, the number of buckets in use, as `table_buckets` in sysfs from now on. Called once at
/// load, before anything else reads the parameter.
pub(crate) fn set_table_buckets(n: u32) {
    // SAFETY: a parameter of this module that sysfs only reads (0444); written once at load.
    unsafe { write_volatile(addr_of_mut!(ffi::toa_param_table_buckets), n) }
}

/// `uoa` (0444): serve UDP (UOA).
pub(crate) fn uoa() -> bool {
    // SAFETY: a read-only parameter, fixed after load.
    unsafe { read_volatile(addr_of!(ffi::toa_param_uoa)) }
}

/// `uoa_timeout` (0444): idle seconds before a UDP flow's mapping expires, as given.
pub(crate) fn uoa_timeout() -> u32 {
    // SAFETY: as in `uoa`.
    unsafe { read_volatile(addr_of!(ffi::toa_param_uoa_timeout)) }
}

/// `uoa_max_mappings` (0444): the most UDP flow mappings per namespace, as given.
pub(crate) fn uoa_max_mappings() -> u32 {
    // SAFETY: as in `uoa`.
    unsafe { read_volatile(addr_of!(ffi::toa_param_uoa_max_mappings)) }
}
