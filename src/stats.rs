// SPDX-License-Identifier: GPL-2.0

//! Per-CPU, lock-free event counters shown in `/proc/net/toa_stats`, one set per network namespace.
//!
//! Each namespace has, for each possible CPU, an array of `u64`, one per [`Counter`]; an event counts in
//! the namespace of the socket it happens to, on the current CPU (`this_cpu_inc`); readers print the
//! arrays without locking. A namespace's counters live from its creation (or toa's load) to its
//! dismantling (or toa's unload). The first seven counters are the
//! ones of Tencent Cloud CLB's TOA module, in its order; monitoring scripts rely on their names and order.

use crate::ffi;
use crate::sys::net::Net;
use crate::sys::percpu::{CounterIndex, NetCounters, PerCpuArray};
use crate::sys::pernet::{pernet_callbacks, PernetOps, PernetRegistration};
use crate::sys::sock::Sock;
use crate::sys::sync::RcuSection;
use core::ffi::CStr;
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

/// A counter's slot is its number: `Counter` is a fieldless enum numbered from 0 in declaration order,
/// which [`Counter::ALL`] follows (checked below).
impl CounterIndex for Counter {
    const COUNT: usize = Counter::ALL.len();

    #[inline(always)]
    fn index(self) -> usize {
        self as usize
    }
}

// `Counter::ALL` lists every counter once, in declaration order (the last variant closes the list).
const _: () = {
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i].0 as usize == i);
        i += 1;
    }
    assert!(Counter::UoaMappingFree as usize + 1 == Counter::ALL.len());
};

/// The counters of namespace `net`.
#[inline(always)]
fn counters(net: &Net) -> NetCounters<'_, Counter> {
    // SAFETY: `Stats` registers `toa_stats_net_ops` before anything that counts or reads counters is
    // registered, and is dropped after all of them are gone (`Parts`' field order in `toa_main.rs`), so
    // the ops' `init` ran for every namespace a caller can see, and its storage holds `Counter`s only.
    unsafe { NetCounters::of(net) }
}

/// Counts one event on the current CPU, in the namespace of `sk` (a [`Sock`]).
#[inline]
pub(crate) fn inc(sk: &Sock, c: Counter) {
    counters(sk.net()).inc(c)
}

/// [`inc`] for a caller already inside a read-side section.
#[inline]
pub(crate) fn inc_in(sk: &Sock, c: Counter, rcu: &RcuSection) {
    counters(sk.net()).inc_in(c, rcu)
}

/// Counts one event on the current CPU, in namespace `net` (a [`Net`]: the caller's packet's,
/// socket's, or one the UOA sweeper holds).
#[inline]
pub(crate) fn inc_net(net: &Net, c: Counter) {
    counters(net).inc(c)
}

/// [`inc_net`] for a caller already inside a read-side section.
#[inline]
pub(crate) fn inc_net_in(net: &Net, c: Counter, rcu: &RcuSection) {
    counters(net).inc_in(c, rcu)
}

/// Calls `f` with `net`'s counters, `None` once the namespace's are retired (it is going away); `f`
/// runs in an RCU read-side section and must not sleep.
pub(crate) fn with_counters<R>(net: &Net, f: impl FnOnce(Option<&PerCpuArray<Counter>>) -> R) -> R {
    counters(net).with(f)
}

/// The counters' per-namespace callbacks (`toa_stats_net_ops` in `src/toa_shim.c`).
struct StatsOps;

impl PernetOps for StatsOps {
    /// Allocates zeroed counters for every possible CPU and publishes them.
    fn init(net: &Net) -> Result {
        counters(net).publish(PerCpuArray::new()?);
        Ok(())
    }

    /// Unpublishes the counters; the pernet core then waits for an RCU grace period before `exit`, so no
    /// hook still increments them when they are freed.
    fn pre_exit(net: &Net) {
        counters(net).retire();
    }

    /// Frees the counters unpublished by `pre_exit`, a grace period later.
    fn exit(net: &Net) {
        // SAFETY: `exit` runs after `pre_exit` (which retired them) and an RCU grace period.
        drop(unsafe { counters(net).take_retired() });
    }
}

pernet_callbacks!(StatsOps {
    init: toa_stats_net_init,
    pre_exit: toa_stats_net_pre_exit,
    exit: toa_stats_net_exit,
});

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
