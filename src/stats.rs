// SPDX-License-Identifier: GPL-2.0

//! Per-CPU, lock-free event counters shown in `/proc/net/toa_stats`, one set per network namespace.
//!
//! Each namespace has, for each possible CPU, an array of `u64`, one per [`Counter`]; an event counts in
//! the namespace of the socket it happens to, on the current CPU (`this_cpu_inc`); readers print the
//! arrays without locking. A namespace's counters live from its creation (or toa's load) to its
//! dismantling (or toa's unload). The first seven counters are the
//! ones of Tencent Cloud CLB's TOA module, in its order; monitoring scripts rely on their names and order.

use crate::ffi::{self, Net, Sock};
use crate::pernet::PernetRegistration;
use core::ffi::{c_int, c_uint, CStr};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// The counters, in `/proc/net/toa_stats` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Counter {
    /// A connection kept by the kernel (`own_req`) whose packet carried a TOA (Tencent's TOA).
    SynRecvSockToa,
    /// A connection kept by the kernel without a usable TOA (none, or malformed options) (Tencent's TOA).
    SynRecvSockNoToa,
    /// An address handed to the application: rewritten by `accept()`/`getpeername()`, or returned by
    /// getsockopt 4096 (Tencent's TOA).
    GetnameToaOk,
    /// getsockopt 4096 on a connection whose TOA holds an IPv4 client (Tencent's TOA).
    GetnameToaMismatch,
    /// getsockopt 4096 on a connection without TOA (Tencent's TOA).
    GetnameToaEmpty,
    /// A per-socket entry allocated (every TOA stored, IPv4 or IPv6) (Tencent's TOA).
    Ip6AddressAlloc,
    /// A per-socket entry freed: equals `Ip6AddressAlloc` once all TOA connections are gone (Tencent's TOA).
    Ip6AddressFree,
    /// A packet whose TCP option list was malformed (bad data offset or option length): ignored.
    TcpOptionMalformed,
    /// A packet whose IP-option TOA (IPv4 option 31, IPv6 destination option 31) was found and used.
    IpOptionToa,
    /// A packet whose IP options or destination options were malformed: ignored (the TCP options are
    /// still looked at).
    IpOptionMalformed,
    /// A TOA from a source outside `trusted_sources`: ignored (possibly forged by a client that reaches
    /// the server directly).
    UntrustedSource,
    /// A TOA that could not be stored (no memory, or the table refused it): the connection goes on
    /// without it.
    StoreInsertFailed,
    /// An entry left by an earlier socket at the same address, replaced (its destruction was missed).
    StoreStaleReplaced,
    /// A UDP datagram whose IP option 31 (UOA) was stored for its flow.
    UoaOptionFound,
    /// A UDP datagram whose IP options or destination options were malformed: ignored (the datagram is
    /// delivered).
    UoaOptionMalformed,
    /// A UDP datagram's UOA from a source outside `trusted_sources`: ignored.
    UoaUntrustedSource,
    /// getsockopt 2048/2049 answered.
    UoaLookupOk,
    /// getsockopt 2048/2049 for a flow without a live mapping (`ENOENT`).
    UoaLookupMissed,
    /// A mapping removed after `uoa_timeout` seconds without datagrams or lookups.
    UoaMappingExpired,
    /// A new flow's UOA not stored: the namespace holds `uoa_max_mappings` already.
    UoaMapFull,
    /// A flow mapping allocated (a newer option for a flow allocates its replacement).
    UoaMappingAlloc,
    /// A flow mapping freed: equals `UoaMappingAlloc` once every mapping is gone.
    UoaMappingFree,
}

impl Counter {
    /// Every counter, in display order, with its `/proc/net/toa_stats` row name: the TCP rows
    /// ([`Counter::TCP_ROWS`] of them, which the probe-miss rows follow), then the UDP (UOA) ones.
    pub(crate) const ALL: [(Counter, &'static CStr); 22] = [
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
        (Counter::UntrustedSource, c"toa_untrusted_source"),
        (Counter::StoreInsertFailed, c"store_insert_failed"),
        (Counter::StoreStaleReplaced, c"store_stale_replaced"),
        (Counter::UoaOptionFound, c"uoa_option_found"),
        (Counter::UoaOptionMalformed, c"uoa_option_malformed"),
        (Counter::UoaUntrustedSource, c"uoa_untrusted_source"),
        (Counter::UoaLookupOk, c"uoa_lookup_ok"),
        (Counter::UoaLookupMissed, c"uoa_lookup_missed"),
        (Counter::UoaMappingExpired, c"uoa_mapping_expired"),
        (Counter::UoaMapFull, c"uoa_map_full"),
        (Counter::UoaMappingAlloc, c"uoa_mapping_alloc"),
        (Counter::UoaMappingFree, c"uoa_mapping_free"),
    ];

    /// How many of [`Counter::ALL`] are TCP rows, shown before the probe-miss rows.
    pub(crate) const TCP_ROWS: usize = 13;
}

const N_COUNTERS: usize = Counter::ALL.len();

/// The counters' slot of network namespace `net` (`struct toa_net` in the shim, `net_generic` storage).
///
/// # Safety
///
/// `net` is a live namespace on which `toa_stats_net_ops` was initialised, and the caller is inside an
/// RCU read-side section (`net_generic`).
unsafe fn slot<'a>(net: *const Net) -> &'a AtomicPtr<u64> {
    // SAFETY: per the function's contract the slot exists; it is only accessed atomically.
    unsafe { AtomicPtr::from_ptr(ffi::toa_net_stats_slot(net)) }
}

/// Counts one event on the current CPU, in the namespace of `sk`.
pub(crate) fn inc(sk: *const Sock, c: Counter) {
    // SAFETY: `sk` is a socket the caller holds (or is destroying): its namespace is alive.
    inc_net(unsafe { ffi::toa_sk_net(sk) }, c)
}

/// Counts one event on the current CPU, in namespace `net` (a live namespace: the caller's packet's,
/// socket's, or one the UOA sweeper holds).
pub(crate) fn inc_net(net: *const Net, c: Counter) {
    // SAFETY: `net` is alive, and so are its counters until `toa_stats_net_pre_exit`, which RCU orders
    // against this read-side section.
    unsafe {
        ffi::toa_rcu_read_lock();
        let base = slot(net).load(Ordering::Acquire);
        if !base.is_null() {
            ffi::toa_percpu_inc(base, c as c_uint);
        }
        ffi::toa_rcu_read_unlock();
    }
}

/// Calls `f` with a reader of `net`'s counters: `read(counter, cpu)` for a possible CPU.
///
/// # Safety
///
/// `net` is a live namespace on which `toa_stats_net_ops` was initialised. `f` must not sleep.
pub(crate) unsafe fn with_counters<R>(
    net: *const Net,
    f: impl FnOnce(&dyn Fn(Counter, c_int) -> u64) -> R,
) -> R {
    // SAFETY: per the function's contract; the counters stay allocated for the RCU section.
    unsafe {
        ffi::toa_rcu_read_lock();
        let base = slot(net).load(Ordering::Acquire);
        let read = |c: Counter, cpu: c_int| {
            if base.is_null() {
                0
            } else {
                // `base` has `N_COUNTERS` entries per possible CPU (inside the outer `unsafe`).
                ffi::toa_percpu_read(base, c as c_uint, cpu)
            }
        };
        let r = f(&read);
        ffi::toa_rcu_read_unlock();
        r
    }
}

/// `pernet_operations::init` of the counters: allocates zeroed counters for every possible CPU.
///
/// # Safety
///
/// Only called by the pernet core, for a namespace being set up.
#[no_mangle]
unsafe extern "C" fn toa_stats_net_init(net: *mut Net) -> c_int {
    let size = N_COUNTERS * core::mem::size_of::<u64>();
    // SAFETY: plain allocation; `__alloc_percpu` returns zeroed memory or null.
    let base = unsafe { ffi::toa_alloc_percpu(size, core::mem::align_of::<u64>()) };
    if base.is_null() {
        return ENOMEM.to_errno();
    }
    // SAFETY: the namespace's slot exists once the pernet core calls `init`; no reader yet.
    unsafe {
        ffi::toa_rcu_read_lock();
        slot(net).store(base, Ordering::Release);
        ffi::toa_rcu_read_unlock();
    }
    0
}

/// `pernet_operations::pre_exit`: unpublishes the counters; the pernet core then waits for an RCU grace
/// period before `exit`, so no hook still increments them when they are freed.
///
/// # Safety
///
/// Only called by the pernet core, for a namespace going away (or all of them at unregistration).
#[no_mangle]
unsafe extern "C" fn toa_stats_net_pre_exit(net: *mut Net) {
    // SAFETY: both slots exist until after `exit`; only the pernet core calls this and `exit`.
    unsafe {
        ffi::toa_rcu_read_lock();
        let base = slot(net).swap(core::ptr::null_mut(), Ordering::AcqRel);
        *ffi::toa_net_stats_retired_slot(net) = base;
        ffi::toa_rcu_read_unlock();
    }
}

/// `pernet_operations::exit`: frees the counters unpublished by `pre_exit`, a grace period later.
///
/// # Safety
///
/// Only called by the pernet core, after `toa_stats_net_pre_exit` and a grace period.
#[no_mangle]
unsafe extern "C" fn toa_stats_net_exit(net: *mut Net) {
    // SAFETY: the retired pointer came from `toa_alloc_percpu` and no reader can see it any more.
    unsafe {
        ffi::toa_rcu_read_lock();
        let base = core::mem::take(&mut *ffi::toa_net_stats_retired_slot(net));
        ffi::toa_rcu_read_unlock();
        if !base.is_null() {
            ffi::free_percpu(base);
        }
    }
}

/// The per-namespace counters: registered by [`Stats::new`]; every namespace's counters are freed on drop.
pub(crate) struct Stats {
    _registration: PernetRegistration,
}

impl Stats {
    /// Registers `toa_stats_net_ops` (`src/toa_shim.c`): counters for every namespace, now and later.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: the shim's static ops, registered once; the owner drops this after every hook, /proc
        // file and sockopt handler is gone and the store is drained.
        unsafe { PernetRegistration::register(core::ptr::addr_of_mut!(ffi::toa_stats_net_ops)) }
            .map(|r| Stats { _registration: r })
    }
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
