// SPDX-License-Identifier: GPL-2.0

//! Per-CPU, lock-free event counters shown in `/proc/net/toa_stats`.
//!
//! Each possible CPU has an array of `u64`, one per [`Counter`]; a CPU only increments its own array
//! (`this_cpu_inc`), readers sum or print the arrays without locking. The first seven counters are the
//! ones of Tencent's TOA (seed 000), in its order; monitoring scripts rely on their names and order.

use crate::ffi;
use core::ffi::{c_int, c_uint, CStr};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// The counters, in `/proc/net/toa_stats` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Counter {
    /// A connection kept by the kernel (`own_req`) whose packet carried a TOA (seed 000).
    SynRecvSockToa,
    /// A connection kept by the kernel without a usable TOA (none, or malformed options) (seed 000).
    SynRecvSockNoToa,
    /// An address handed to the application: rewritten by `accept()`/`getpeername()`, or returned by
    /// getsockopt 4096 (seed 000).
    GetnameToaOk,
    /// getsockopt 4096 on a connection whose TOA holds an IPv4 client (seed 000).
    GetnameToaMismatch,
    /// getsockopt 4096 on a connection without TOA (seed 000).
    GetnameToaEmpty,
    /// A per-socket entry allocated (every TOA stored, IPv4 or IPv6) (seed 000).
    Ip6AddressAlloc,
    /// A per-socket entry freed: equals `Ip6AddressAlloc` once all TOA connections are gone (seed 000).
    Ip6AddressFree,
    /// A packet whose TCP option list was malformed (bad data offset or option length): ignored.
    TcpOptionMalformed,
    /// A packet whose IP-option TOA (IPv4 option 31, IPv6 destination option 31) was found and used.
    IpOptionToa,
    /// A packet whose IP options or destination options were malformed: ignored (the TCP options are
    /// still looked at).
    IpOptionMalformed,
    /// A TOA that could not be stored (no memory, or the table refused it): the connection goes on
    /// without it.
    StoreInsertFailed,
    /// An entry left by an earlier socket at the same address, replaced (its destruction was missed).
    StoreStaleReplaced,
}

impl Counter {
    /// Every counter, in display order, with its `/proc/net/toa_stats` row name.
    pub(crate) const ALL: [(Counter, &'static CStr); 12] = [
        (Counter::SynRecvSockToa, c"syn_recv_sock_toa"),
        (Counter::SynRecvSockNoToa, c"syn_recv_sock_no_toa"),
        (Counter::GetnameToaOk, c"getname_toa_ok"),
        (Counter::GetnameToaMismatch, c"getname_toa_mismatch"),
        (Counter::GetnameToaEmpty, c"getname_toa_empty"),
        (Counter::Ip6AddressAlloc, c"ip6_address_alloc"),
        (Counter::Ip6AddressFree, c"ip6_address_free"),
        (Counter::TcpOptionMalformed, c"tcp_option_malformed"),
        (Counter::IpOptionToa, c"ip_option_toa"),
        (Counter::IpOptionMalformed, c"ip_option_malformed"),
        (Counter::StoreInsertFailed, c"store_insert_failed"),
        (Counter::StoreStaleReplaced, c"store_stale_replaced"),
    ];
}

const N_COUNTERS: usize = Counter::ALL.len();

/// The per-CPU arrays, published for the hooks while a [`Stats`] owns them; null otherwise.
static BASE: AtomicPtr<u64> = AtomicPtr::new(core::ptr::null_mut());

/// Owner of the per-CPU counter arrays: allocated by [`Stats::new`], freed on drop.
pub(crate) struct Stats(());

impl Stats {
    /// Allocates zeroed counters for every possible CPU and publishes them.
    pub(crate) fn new() -> Result<Self> {
        let size = N_COUNTERS * core::mem::size_of::<u64>();
        // SAFETY: plain allocation; `__alloc_percpu` returns zeroed memory or null.
        let base = unsafe { ffi::toa_alloc_percpu(size, core::mem::align_of::<u64>()) };
        if base.is_null() {
            return Err(ENOMEM);
        }
        BASE.store(base, Ordering::Release);
        Ok(Stats(()))
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        // Every hook, /proc file and sockopt handler is unregistered before the owner drops this.
        let base = BASE.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: `base` came from `__alloc_percpu` in `new` and nothing uses it any more.
        unsafe { ffi::free_percpu(base) };
    }
}

/// Counts one event on the current CPU.
pub(crate) fn inc(c: Counter) {
    let base = BASE.load(Ordering::Acquire);
    if !base.is_null() {
        // SAFETY: `base` is live per-CPU memory with `N_COUNTERS` entries; `c as u32` is below that.
        unsafe { ffi::toa_percpu_inc(base, c as c_uint) };
    }
}

/// The value of `c` on `cpu` (a possible CPU from [`possible_cpus`]).
pub(crate) fn read(c: Counter, cpu: c_int) -> u64 {
    let base = BASE.load(Ordering::Acquire);
    if base.is_null() {
        return 0;
    }
    // SAFETY: as in `inc`; `cpu` is a possible CPU, so its per-CPU area exists.
    unsafe { ffi::toa_percpu_read(base, c as c_uint, cpu) }
}

/// Iterates over the possible CPU ids, in increasing order (ids may have holes).
pub(crate) fn possible_cpus() -> impl Iterator<Item = c_int> {
    // SAFETY: reads `nr_cpu_ids`, fixed after boot.
    let nr = unsafe { ffi::toa_nr_cpu_ids() } as c_int;
    let mut prev: c_int = -1;
    core::iter::from_fn(move || {
        // SAFETY: `cpumask_next` on `cpu_possible_mask` accepts any `prev` from -1 upwards.
        let cpu = unsafe { ffi::toa_next_possible_cpu(prev) };
        if cpu >= nr {
            return None;
        }
        prev = cpu;
        Some(cpu)
    })
}
