// SPDX-License-Identifier: GPL-2.0

//! The UOA flow map: which client (and VIP) each UDP flow's load balancer announced.
//!
//! A flow is keyed as the receiving socket sees it ([`FlowKey`]): the load balancer's address and port
//! (the datagram's source) and the local address and port (its destination), in the namespace the
//! datagram arrived in. All namespaces share one hash table, as TCP's established table is shared: a
//! mapping records its namespace's `ns.inum` (unique among live namespaces; every mapping of a namespace
//! is flushed when it exits, before the number can be reused), and every lookup compares it, so a
//! namespace never sees another's flows.
//!
//! Layout, like toa's socket store (`src/store.rs`) and TCP's `inet_ehash`: a fixed array of buckets
//! (half as many as `uoa_max_mappings`, a power of two), each a singly linked RCU chain ending in a
//! "nulls" marker naming its bucket, and bucket spinlocks (32 per CPU). The bucket is a `jhash` of the
//! namespace, the load balancer's address and port and the local port, with a seed drawn at load; the
//! local address is left out so that a lookup may leave it zero ("any local address", as the public
//! modules allow). Lookups take no lock, only `rcu_read_lock`; updates take the bucket's lock with BHs off.
//!
//! A mapping ([`Flow`]) is 88 bytes in the `uoa_flow` slab cache, `SLAB_TYPESAFE_BY_RCU` (freed at once,
//! never an `rcu_head`): addresses are stored as 16 bytes (IPv4 as `::ffff:a.b.c.d`, which IPv6 never
//! carries as a source on the wire, so the family needs no byte of its own), idle times as 16-bit seconds.
//! A reader copies a mapping between two reads of its namespace number (0 while the object is free) and
//! of its generation (bumped each time the object is reused), as a seqcount reader does, and discards a
//! copy that changed under it.
//!
//! Lifetime: a datagram with an option creates or replaces its flow's mapping (the newest option wins: a
//! replacement is a new object, linked in the old one's place); datagrams without an option and
//! successful lookups restart its idle time. A mapping idle for more than `uoa_timeout` seconds is
//! invisible to lookups at once, and freed by the sweeper: one delayed work for the whole table that
//! visits a slice of the buckets every second, so that it goes round the table every `uoa_timeout / 4`
//! seconds (at least every second, at most every minute). No timer per mapping.
//!
//! Bound: each namespace holds at most `uoa_max_mappings`. A new flow's option beyond that is not stored
//! (`uoa_map_full`): mappings already there are kept, updated and refreshed, so a burst of new flows
//! cannot push established ones out.
//!
//! The kernel objects come typed from `src/sys`: the cache ([`TypesafeCache`]), the bucket locks
//! ([`BucketLocks`]), the RCU read-side sections ([`RcuReadGuard`]), the racy copies ([`RacyCell`]), the
//! sweeper's work ([`DelayedWork`], [`Scheduled`]) and the namespace index ([`UoaNets`]). The public API
//! takes a [`Net`] and is safe. What `unsafe` is left cannot be typed away: turning a chain link into a
//! reference ([`rcu_flow`], [`locked_flow`]: the lifetime is the RCU section's or the bucket lock's, which
//! the types cannot see), freeing an unlinked mapping, the table published for the hooks, the
//! namespace's mapping count (a slot of the per-namespace state), and the sweeper's requeue.

use super::Config;
use crate::stats::{self, Counter};
use crate::sys::hash;
use crate::sys::net::Net;
use crate::sys::slab::TypesafeCache;
use crate::sys::sync::{
    self, BucketGuard, BucketLocks, NullsLink, RacyCell, RcuReadGuard, RcuSection, Words,
};
use crate::sys::work::{self, DelayedWork, Scheduled};
use crate::sys::xarray::{UoaNets, UoaNetsGuard};
use crate::wire::{Addr, Endpoint};
use core::ptr::NonNull;
use core::sync::atomic::{
    fence, AtomicIsize, AtomicPtr, AtomicU16, AtomicU32, AtomicUsize, Ordering,
};
use kernel::prelude::*;

/// An address as the map stores it: IPv6 as is, IPv4 as `::ffff:a.b.c.d` (RFC 4291 section 2.5.5.2).
pub(crate) fn addr16(a: Addr) -> [u8; 16] {
    a.to_v6_mapped()
}

/// The address stored as `a`: IPv4 when it is IPv4-mapped.
pub(crate) fn addr_of16(a: [u8; 16]) -> Addr {
    Addr::from_v6_mapped(a)
}

/// A UDP flow as the receiving socket sees it. Addresses as [`addr16`] stores them; ports host order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKey {
    /// The load balancer's address (the datagram's source).
    pub(crate) lb: [u8; 16],
    /// The load balancer's port.
    pub(crate) lb_port: u16,
    /// The local address (the datagram's destination); all zero in a lookup: any local address.
    pub(crate) local: [u8; 16],
    /// The local port.
    pub(crate) local_port: u16,
}

/// What a flow's option announced: the real client and, when the format carries it, the VIP.
#[derive(Clone, Copy)]
pub(crate) struct Mapping {
    /// The client address and port (CIP, cport).
    pub(crate) client: Endpoint,
    /// The virtual address and port the client sent to (VIP, vport).
    pub(crate) vip: Option<Endpoint>,
}

/// A live mapping as listed by `/proc/net/uoa_table`.
pub(crate) struct Row {
    /// Its flow.
    pub(crate) key: FlowKey,
    /// What it maps to.
    pub(crate) mapping: Mapping,
    /// Seconds since its last datagram or lookup.
    pub(crate) idle_secs: u16,
}

/// The key and value of a [`Flow`]: 72 bytes, copied by readers as words ([`Words`]).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct FlowData {
    lb: [u8; 16],
    local: [u8; 16],
    client: [u8; 16],
    /// All zero (with port 0) when the option carried no VIP.
    vip: [u8; 16],
    lb_port: u16,
    local_port: u16,
    client_port: u16,
    vip_port: u16,
}

// SAFETY: 72 bytes, 8-aligned (asserted below), fields of integer types that fill it.
unsafe impl Words for FlowData {}

impl FlowData {
    fn new(key: &FlowKey, m: &Mapping) -> Self {
        let (vip, vip_port) = m.vip.map_or(([0; 16], 0), |v| (addr16(v.addr), v.port));
        FlowData {
            lb: key.lb,
            local: key.local,
            client: addr16(m.client.addr),
            vip,
            lb_port: key.lb_port,
            local_port: key.local_port,
            client_port: m.client.port,
            vip_port,
        }
    }

    fn key(&self) -> FlowKey {
        FlowKey {
            lb: self.lb,
            lb_port: self.lb_port,
            local: self.local,
            local_port: self.local_port,
        }
    }

    fn mapping(&self) -> Mapping {
        let vip = (self.vip != [0; 16] || self.vip_port != 0).then(|| Endpoint {
            addr: addr_of16(self.vip),
            port: self.vip_port,
        });
        Mapping {
            client: Endpoint {
                addr: addr_of16(self.client),
                port: self.client_port,
            },
            vip,
        }
    }

    /// Whether `other` is a mapping of the same flow.
    #[inline(always)]
    fn same_key(&self, other: &FlowData) -> bool {
        self.lb == other.lb
            && self.lb_port == other.lb_port
            && self.local == other.local
            && self.local_port == other.local_port
    }

    /// Whether `other` maps to the same client and VIP.
    #[inline(always)]
    fn same_mapping(&self, other: &FlowData) -> bool {
        self.client == other.client
            && self.client_port == other.client_port
            && self.vip == other.vip
            && self.vip_port == other.vip_port
    }

    /// Whether this is the flow `key` names (a zero local address in `key` matches any).
    fn matches(&self, key: &FlowKey) -> bool {
        self.lb == key.lb
            && self.lb_port == key.lb_port
            && self.local_port == key.local_port
            && (key.local == [0; 16] || self.local == key.local)
    }
}

/// One flow's mapping, in the `uoa_flow` slab cache.
///
/// While the object is free, the slab allocator keeps its free pointer in the first 8 bytes of
/// `data.lb` ([`FREEPTR_OFFSET`]); `next`, `inum` and `gen` stay intact for RCU readers.
///
/// Every field is an atomic or a [`RacyCell`], so an `&Flow` may be shared with a writer recycling the
/// object: readers get one for the length of an RCU read-side section ([`rcu_flow`]) or of a bucket lock
/// ([`locked_flow`]).
///
/// # Invariants
///
/// Every `Flow` is an object of the table's `uoa_flow` cache.
#[repr(C)]
pub(crate) struct Flow {
    /// The next mapping of the chain, or the chain's nulls marker ([`Link`]). Written under the bucket
    /// lock only; readers may follow it even while the object is free.
    next: AtomicUsize,
    /// The namespace's `ns.inum`: 0 while the object is free, published last when it is (re)used.
    inum: AtomicU32,
    /// Bumped each time the object is reused, before its data is rewritten.
    gen: AtomicU16,
    /// When the flow last had a datagram or a lookup: [`now_secs`].
    used: AtomicU16,
    data: RacyCell<FlowData>,
}

const FREEPTR_OFFSET: usize = core::mem::offset_of!(Flow, data);
const _: () = assert!(core::mem::size_of::<FlowData>() == 72);
const _: () = assert!(core::mem::size_of::<Flow>() == 88);
const _: () = assert!(FREEPTR_OFFSET % 8 == 0);

/// Seconds since boot, modulo 2^16: the clock of idle times (`jiffies / HZ`).
fn now_secs() -> u16 {
    (work::jiffies() / work::hz().max(1)) as u16
}

/// How long ago, in seconds, a mapping last used at `used` was used, seen at `now` (both from
/// [`now_secs`]).
///
/// The clock is read without a lock, so another CPU may refresh a mapping with a reading taken after
/// `now` was: a `used` up to [`CLOCK_SKEW_SECS`] ahead of `now` means "just used" (0), not an idle time
/// of almost 2^16 s. `uoa_timeout` is bounded well below `2^16 - CLOCK_SKEW_SECS`.
fn idle_secs(now: u16, used: u16) -> u16 {
    match now.wrapping_sub(used) {
        idle if idle > u16::MAX - CLOCK_SKEW_SECS => 0,
        idle => idle,
    }
}

/// How far ahead of a clock reading another CPU's reading may be (see [`idle_secs`]).
const CLOCK_SKEW_SECS: u16 = 3600;
const _: () = assert!(crate::uoa::MAX_TIMEOUT_SECS < (u16::MAX - CLOCK_SKEW_SECS) as u32);

/// A link of a chain ([`NullsLink`]) to the next [`Flow`].
type Link = NullsLink<Flow>;

/// The mapping `link` points to, for a reader in `_rcu`'s read-side section, until the section ends.
///
/// # Safety
///
/// `link` was loaded during the section from a bucket head of the table, or from the `next` of a
/// mapping reached so.
#[inline(always)]
unsafe fn rcu_flow(link: Link, _rcu: &RcuSection) -> Option<&Flow> {
    // SAFETY: an object reached through the table in the section stays a `Flow` object of the cache
    // until the section ends (`SLAB_TYPESAFE_BY_RCU`), freed or reused perhaps: every field of a `Flow`
    // is an atomic or a `RacyCell`, so sharing it with its writers is sound.
    link.entry().map(|e| unsafe { e.as_ref() })
}

/// A mapping reached under its bucket's lock: linked, so live, and its data does not change (it is
/// written before the mapping is linked, never after).
#[derive(Clone, Copy)]
struct LockedFlow<'g>(&'g Flow);

impl<'g> LockedFlow<'g> {
    /// The mapping's data, read in place.
    fn data(self) -> &'g FlowData {
        // SAFETY: a linked mapping's data is not written while its bucket's lock is held (the type's
        // invariant).
        unsafe { self.0.data.get() }
    }
}

impl core::ops::Deref for LockedFlow<'_> {
    type Target = Flow;

    fn deref(&self) -> &Flow {
        self.0
    }
}

/// The mapping `link` points to, for a walker holding the chain's bucket lock, until the lock is
/// released.
///
/// # Safety
///
/// `link` was loaded under `_guard` from the head of a bucket it locks, or from the `next` of a mapping
/// reached so.
#[inline(always)]
unsafe fn locked_flow<'g>(link: Link, _guard: &'g BucketGuard<'_>) -> Option<LockedFlow<'g>> {
    // SAFETY: under the bucket lock, the mappings of the chain are linked and live (mappings are
    // unlinked under it before they are freed); one the caller unlinks and frees stays `Flow` memory
    // all the same until the lock is released, since a BH-disabled section is an RCU read-side section.
    link.entry().map(|e| LockedFlow(unsafe { e.as_ref() }))
}

/// The number of mappings of namespace `net` (`struct toa_net` in the shim).
fn mappings_of(net: &Net) -> &AtomicIsize {
    mappings_of_in(net, &RcuReadGuard::new())
}

/// [`mappings_of`] for a caller inside a read-side section.
#[inline(always)]
fn mappings_of_in<'n>(net: &'n Net, rcu: &RcuSection) -> &'n AtomicIsize {
    // SAFETY: `toa_stats_net_ops` was initialised on every live namespace (it is registered before UOA
    // and unregistered after it, and every caller is part of UOA), so the slot exists while `net` does
    // (the `struct toa_net` lives as long as its namespace; only the array that points to it is
    // replaced under RCU); it is only accessed atomically. (A module-order fact, hence not a method of
    // `Net`.)
    unsafe {
        let toa_net = net.toa_net(rcu);
        AtomicIsize::from_ptr(crate::sys::layout::TOA_NET_UOA_MAPPINGS.ptr(toa_net))
    }
}

/// Whether namespace `net` has no mapping: the receive path's test before it looks up datagrams
/// without an option.
pub(crate) fn net_is_empty(net: &Net, rcu: &RcuSection) -> bool {
    mappings_of_in(net, rcu).load(Ordering::Relaxed) <= 0
}

/// The namespace number recorded in `net`'s mappings.
pub(crate) fn inum_of(net: &Net) -> u32 {
    net.inum()
}

/// The table: buckets, locks, cache, parameters. Published in [`TABLE`] by [`FlowMap::new`] before any
/// user is registered, withdrawn by its drop after every user is gone.
struct Table {
    /// The buckets: each the head of a chain ([`Link`]), `1 << bits` of them.
    heads: KVVec<AtomicUsize>,
    bits: u32,
    locks: BucketLocks,
    cache: TypesafeCache<Flow>,
    seed: u32,
    config: Config,
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(core::ptr::null_mut());

/// The table, while UOA is loaded.
fn table() -> Option<&'static Table> {
    // SAFETY: a published table lives until `FlowMap`'s drop, which comes after every caller (hooks,
    // getsockopt, /proc, sweeper) is unregistered and an RCU grace period has passed.
    unsafe { TABLE.load(Ordering::Acquire).as_ref() }
}

impl Table {
    fn buckets(&self) -> u32 {
        1 << self.bits
    }

    /// The bucket of a flow (`inum`, load balancer address and port, local port), and its head.
    ///
    /// An IPv4 load balancer (`::ffff:a.b.c.d`) is hashed as three words (its address, the two ports,
    /// the namespace), as TCP's `inet_ehashfn` hashes an IPv4 flow: the mapped prefix is the same for
    /// every IPv4 flow and would only lengthen the hash. An IPv6 one is hashed whole, with `jhash2`.
    #[inline(always)]
    fn bucket_of(&self, inum: u32, key: &FlowKey) -> (u32, &AtomicUsize) {
        let ports = (u32::from(key.lb_port) << 16) | u32::from(key.local_port);
        let h = if let Addr::V4(lb) = Addr::from_v6_mapped(key.lb) {
            hash::jhash_3words(u32::from_ne_bytes(lb), ports, inum, self.seed)
        } else {
            let mut w = [inum, 0, 0, 0, 0, ports];
            for (i, chunk) in key.lb.chunks_exact(4).enumerate() {
                w[1 + i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
            hash::jhash2(&w, self.seed)
        };
        // `bits` is in 8..=23: the shift is in 9..=24, neither wraps.
        let b = h.wrapping_shr(32u32.wrapping_sub(self.bits));
        // SAFETY: `b < 1 << bits`, the number of buckets (the top `bits` bits of a 32-bit hash).
        (b, unsafe { self.heads.get_unchecked(b as usize) })
    }

    /// The head of bucket `b` (below `buckets()`).
    fn head(&self, b: u32) -> &AtomicUsize {
        &self.heads[b as usize]
    }

    fn expired(&self, now: u16, used: u16) -> bool {
        u32::from(idle_secs(now, used)) > self.config.timeout_secs
    }

    /// A new mapping object for namespace `inum`, not linked yet.
    fn alloc(&self, inum: u32, data: &FlowData, now: u16) -> Option<NonNull<Flow>> {
        let e = self.cache.alloc_atomic()?;
        // SAFETY: an object of the cache, ours until linked. It may be a recycled object that RCU
        // readers still look at (its `inum` is 0 since it was freed), through atomics and `RacyCell`s:
        // its generation is bumped before its data is rewritten, and its namespace number published last
        // (see `Flow::snapshot`).
        let f = unsafe { e.as_ref() };
        let gen = f.gen.load(Ordering::Relaxed);
        f.gen.store(gen.wrapping_add(1), Ordering::Relaxed);
        // smp_wmb(): the generation before the data.
        fence(Ordering::Release);
        f.data.store(*data);
        f.used.store(now, Ordering::Relaxed);
        // smp_wmb(): the data before the number that makes it a mapping.
        fence(Ordering::Release);
        f.inum.store(inum, Ordering::Relaxed);
        Some(e)
    }

    /// Frees `e` at once: its namespace number is cleared first, so RCU readers see it is no longer a
    /// mapping before they can see the allocator's free pointer in its data.
    ///
    /// # Safety
    ///
    /// `e` came from [`Table::alloc`] and is no longer reachable from the table: the caller owns it.
    unsafe fn free_now(&self, e: NonNull<Flow>) {
        // SAFETY: a mapping of the cache, owned by the caller.
        unsafe { e.as_ref() }.inum.store(0, Ordering::Relaxed);
        // smp_wmb(): the cleared number before the allocator's writes.
        fence(Ordering::Release);
        // SAFETY: allocated from this cache, owned by the caller.
        unsafe { self.cache.free(e) };
    }

    /// Unlinks, frees and counts every mapping of bucket `b` (below `buckets()`) for which
    /// `doomed(inum, used)` holds; `net_of(inum)` is the namespace to account a removal to. Takes the
    /// bucket's lock.
    fn remove_where<'n>(
        &self,
        b: u32,
        net_of: impl Fn(u32) -> Option<&'n Net>,
        mut doomed: impl FnMut(u32, u16) -> Option<Counter>,
    ) {
        let guard = self.locks.lock(b);
        let mut prev: &AtomicUsize = self.head(b);
        loop {
            let link = Link::from_word(prev.load(Ordering::Relaxed));
            // SAFETY: loaded under `guard` from the head of bucket `b`, or from the `next` of a mapping
            // reached so.
            let Some(f) = (unsafe { locked_flow(link, &guard) }) else {
                break;
            };
            let inum = f.inum.load(Ordering::Relaxed);
            match doomed(inum, f.used.load(Ordering::Relaxed)) {
                Some(why) => {
                    // Readers standing on `f` go on through its `next`, left as it is.
                    prev.store(f.next.load(Ordering::Relaxed), Ordering::Release);
                    account_removal(net_of(inum), why);
                    if let Some(e) = link.entry() {
                        // SAFETY: unlinked just now, under the lock: ours alone.
                        unsafe { self.free_now(e) };
                    }
                }
                None => prev = &f.0.next,
            }
        }
    }
}

/// Counts the removal of a mapping of namespace `net` (`why`, and `uoa_mapping_free`) and takes it off
/// the namespace's count. `None`: the namespace is gone (not counted).
fn account_removal(net: Option<&Net>, why: Counter) {
    let Some(net) = net else {
        return;
    };
    mappings_of(net).fetch_sub(1, Ordering::Relaxed);
    if why != Counter::UoaMappingFree {
        stats::inc_net(net, why);
    }
    stats::inc_net(net, Counter::UoaMappingFree);
}

impl Flow {
    /// Copies the mapping (data and last use) if it is a mapping of namespace `inum`, or `None` if it is
    /// not, is free, or was reused while being copied.
    #[inline(always)]
    fn snapshot(&self, inum: u32) -> Option<(FlowData, u16)> {
        if self.inum.load(Ordering::Acquire) != inum {
            return None;
        }
        let gen = self.gen.load(Ordering::Relaxed);
        // smp_rmb(): number and generation before the data.
        fence(Ordering::Acquire);
        let data = self.data.load();
        let used = self.used.load(Ordering::Relaxed);
        // smp_rmb(): the data before the number, the number before the generation (pairs with
        // `free_now` and `alloc`).
        fence(Ordering::Acquire);
        if self.inum.load(Ordering::Relaxed) != inum {
            return None;
        }
        fence(Ordering::Acquire);
        if self.gen.load(Ordering::Relaxed) != gen {
            return None;
        }
        Some((data, used))
    }
}

/// Why a datagram's option was not stored.
pub(crate) enum NotStored {
    /// The namespace holds `uoa_max_mappings`.
    Full,
    /// No memory for the mapping.
    NoMemory,
}

/// Stores `m` for flow `key` of namespace `net` (the newest option wins), counting in the hook's
/// read-side section `rcu`. Runs in softirq context (the netfilter hook).
///
/// The common case, a flow's live mapping that already holds `m` (balancers repeat the option on a
/// flow's first datagrams), only has its idle time restarted, without the bucket lock.
pub(crate) fn update(
    net: &Net,
    key: &FlowKey,
    m: &Mapping,
    rcu: &RcuSection,
) -> core::result::Result<(), NotStored> {
    let Some(t) = table() else {
        return Ok(());
    };
    let inum = inum_of(net);
    let now = now_secs();
    let data = FlowData::new(key, m);
    let (b, head) = t.bucket_of(inum, key);
    if refresh_if_same(t, b, head, inum, &data, now, rcu) {
        return Ok(());
    }
    let guard = t.locks.lock(b);
    let mut prev: &AtomicUsize = head;
    loop {
        let link = Link::from_word(prev.load(Ordering::Relaxed));
        // SAFETY: loaded under `guard` from the head of the flow's bucket, or from the `next` of a
        // mapping reached so.
        let Some(f) = (unsafe { locked_flow(link, &guard) }) else {
            break;
        };
        if f.inum.load(Ordering::Relaxed) == inum && f.data().same_key(&data) {
            if f.data().same_mapping(&data) {
                f.used.store(now, Ordering::Relaxed);
                return Ok(());
            }
            let new = t.alloc(inum, &data, now).ok_or(NotStored::NoMemory)?;
            stats::inc_net_in(net, Counter::UoaMappingAlloc, rcu);
            // SAFETY: `new` is ours until the release store below publishes it in `f`'s place.
            unsafe { new.as_ref() }
                .next
                .store(f.next.load(Ordering::Relaxed), Ordering::Relaxed);
            prev.store(Link::to(new).word(), Ordering::Release);
            stats::inc_net_in(net, Counter::UoaMappingFree, rcu);
            if let Some(e) = link.entry() {
                // SAFETY: `f` was unlinked just now, under the lock: ours alone.
                unsafe { t.free_now(e) };
            }
            return Ok(());
        }
        prev = &f.0.next;
    }
    let count = mappings_of(net);
    if count.fetch_add(1, Ordering::Relaxed) >= t.config.max_mappings as isize {
        count.fetch_sub(1, Ordering::Relaxed);
        return Err(NotStored::Full);
    }
    let Some(new) = t.alloc(inum, &data, now) else {
        count.fetch_sub(1, Ordering::Relaxed);
        return Err(NotStored::NoMemory);
    };
    stats::inc_net_in(net, Counter::UoaMappingAlloc, rcu);
    // SAFETY: `new` is ours until the release store publishes it (rcu_assign_pointer). A reader standing
    // on it (a recycled object) follows `next` into this chain, whose nulls marker tells it where it is.
    unsafe { new.as_ref() }
        .next
        .store(head.load(Ordering::Relaxed), Ordering::Relaxed);
    head.store(Link::to(new).word(), Ordering::Release);
    Ok(())
}

/// Walks the chain of bucket `b` (whose head is `head`) in the read-side section `rcu`, calling
/// `found(f, data, used)` with each mapping of namespace `inum` and its consistent copy, until `found`
/// returns `Some` (the walk's result); `None` when it never does. A mapping freed or reused under the
/// walk, or a reuse that carries it to another chain, starts the walk over.
#[inline(always)]
fn walk_rcu<R>(
    b: u32,
    head: &AtomicUsize,
    inum: u32,
    rcu: &RcuSection,
    mut found: impl FnMut(&Flow, &FlowData, u16) -> Option<R>,
) -> Option<R> {
    'walk: loop {
        let mut link = Link::from_word(head.load(Ordering::Acquire));
        // SAFETY: `link` is loaded in `rcu`'s section from the bucket's head, then from the `next` of
        // the mappings reached so.
        while let Some(f) = unsafe { rcu_flow(link, rcu) } {
            if f.inum.load(Ordering::Relaxed) == inum {
                let Some((data, used)) = f.snapshot(inum) else {
                    // Freed or reused under us: start over.
                    continue 'walk;
                };
                if let Some(r) = found(f, &data, used) {
                    return Some(r);
                }
            }
            link = Link::from_word(f.next.load(Ordering::Acquire));
        }
        if link != Link::nulls(b) {
            // Carried to another chain by a mapping reused under us: start over.
            continue;
        }
        return None;
    }
}

/// Restarts the idle time of `f`, last used at `used`, if that is not `now` already. Racing with a
/// reuse of `f` at worst refreshes another live mapping.
#[inline(always)]
fn touch(f: &Flow, used: u16, now: u16) {
    if used != now {
        f.used.store(now, Ordering::Relaxed);
    }
}

/// Whether bucket `b` (whose head is `head`) has a live mapping of flow `data.key()` in namespace `inum`
/// that already holds `data`: if so its idle time is restarted (a lockless walk in `rcu`, as
/// [`lookup`]'s).
#[inline(always)]
fn refresh_if_same(
    t: &Table,
    b: u32,
    head: &AtomicUsize,
    inum: u32,
    data: &FlowData,
    now: u16,
    rcu: &RcuSection,
) -> bool {
    walk_rcu(b, head, inum, rcu, |f, found, used| {
        found.same_key(data).then(|| {
            let same = found.same_mapping(data) && !t.expired(now, used);
            if same {
                touch(f, used, now);
            }
            same
        })
    })
    .unwrap_or(false)
}

/// The live mapping of flow `key` in namespace `net` (a zero local address matches any), restarting its
/// idle time when `refresh`. Lockless: safe in softirq and process context.
pub(crate) fn lookup(net: &Net, key: &FlowKey, refresh: bool) -> Option<Mapping> {
    let rcu = RcuReadGuard::new();
    find(net, key, refresh, &rcu).map(|data| data.mapping())
}

/// Restarts the idle time of flow `key`'s live mapping in namespace `net`, if there is one (a zero
/// local address matches any): what a datagram without an option does to its flow. Lockless, in the
/// caller's read-side section `rcu`.
pub(crate) fn refresh_in(net: &Net, key: &FlowKey, rcu: &RcuSection) {
    find(net, key, true, rcu);
}

/// The data of flow `key`'s live mapping in namespace `net`, restarting its idle time when `refresh`
/// (a lockless walk in `rcu`).
#[inline(always)]
fn find(net: &Net, key: &FlowKey, refresh: bool, rcu: &RcuSection) -> Option<FlowData> {
    let t = table()?;
    let inum = inum_of(net);
    let now = now_secs();
    let (b, head) = t.bucket_of(inum, key);
    walk_rcu(b, head, inum, rcu, |f, data, used| {
        (data.matches(key) && !t.expired(now, used)).then(|| {
            if refresh {
                touch(f, used, now);
            }
            *data
        })
    })
}

/// The first live mapping of namespace `inum` at or after bucket `b`, with its bucket: in bucket `b`,
/// the one after the mapping of flow `after` (or the bucket's first, if `after` is `None` or gone, so
/// that no mapping is ever skipped). For the `/proc/net/uoa_table` walk; takes each bucket's lock while
/// it looks at it.
pub(crate) fn next_row(inum: u32, mut b: u32, mut after: Option<FlowKey>) -> Option<(u32, Row)> {
    let t = table()?;
    let now = now_secs();
    while b < t.buckets() {
        if Link::from_word(t.head(b).load(Ordering::Relaxed))
            .entry()
            .is_some()
        {
            let guard = t.locks.lock(b);
            let mut first = None;
            let mut past_after = after.is_none();
            let mut link = Link::from_word(t.head(b).load(Ordering::Relaxed));
            // SAFETY: loaded under `guard` from the head of bucket `b`, then from the `next` of the
            // mappings reached so.
            while let Some(f) = unsafe { locked_flow(link, &guard) } {
                link = Link::from_word(f.next.load(Ordering::Relaxed));
                let used = f.used.load(Ordering::Relaxed);
                if f.inum.load(Ordering::Relaxed) != inum || t.expired(now, used) {
                    continue;
                }
                let row = Row {
                    key: f.data().key(),
                    mapping: f.data().mapping(),
                    idle_secs: idle_secs(now, used),
                };
                if past_after {
                    return Some((b, row));
                }
                if Some(row.key) == after {
                    past_after = true;
                } else if first.is_none() {
                    first = Some(row);
                }
            }
            if !past_after {
                // `after` is gone: list the bucket from its start again.
                if let Some(row) = first {
                    return Some((b, row));
                }
            }
        }
        b += 1;
        after = None;
    }
    None
}

/// Removes every mapping of namespace `net`, at its exit (its hooks are gone: nothing adds any).
pub(crate) fn flush_net(net: &Net) {
    let Some(t) = table() else {
        return;
    };
    let inum = inum_of(net);
    for b in 0..t.buckets() {
        if net_is_empty(net, &RcuReadGuard::new()) {
            break;
        }
        t.remove_where(
            b,
            // Only `net`'s mappings are removed, and it is alive: no need to look it up.
            |_| Some(net),
            |i, _| (i == inum).then_some(Counter::UoaMappingFree),
        );
    }
}

/// Where the sweeper goes on from.
static SWEEP_CURSOR: AtomicU32 = AtomicU32::new(0);

/// The sweeper's work function: frees the expired mappings of the next slice of buckets, then runs
/// again a second later.
///
/// # Safety
///
/// Only called by the workqueue, for `toa_uoa_sweep_work` ([`DelayedWork::uoa_sweep`]).
#[no_mangle]
unsafe extern "C" fn toa_uoa_sweep(_work: *mut crate::ffi::WorkStruct) {
    let Some(t) = table() else {
        return;
    };
    let period = (t.config.timeout_secs / 4).clamp(1, 60);
    let slice = t.buckets().div_ceil(period);
    let start = SWEEP_CURSOR.load(Ordering::Relaxed).min(t.buckets());
    let end = start.saturating_add(slice).min(t.buckets());
    let now = now_secs();
    // Held while mappings are accounted to the namespaces found in the index (see `UoaNets`).
    let nets: UoaNetsGuard = UoaNets::lock();
    for b in start..end {
        if Link::from_word(t.head(b).load(Ordering::Relaxed))
            .entry()
            .is_none()
        {
            continue;
        }
        t.remove_where(
            b,
            |inum| nets.get(inum),
            |_, used| t.expired(now, used).then_some(Counter::UoaMappingExpired),
        );
    }
    drop(nets);
    SWEEP_CURSOR.store(if end >= t.buckets() { 0 } else { end }, Ordering::Relaxed);
    // SAFETY: `Sweeper`'s drop cancels the work (with this requeue) before the table and the module go.
    unsafe { DelayedWork::uoa_sweep().schedule(work::hz()) };
}

/// The running sweeper; stopped (and waited for) on drop.
pub(crate) struct Sweeper {
    _work: Scheduled,
}

impl Sweeper {
    /// Starts the sweeper: its first run is a second from now.
    pub(crate) fn start() -> Self {
        Sweeper {
            _work: Scheduled::start(DelayedWork::uoa_sweep(), work::hz()),
        }
    }
}

/// Owner of the table: built by [`FlowMap::new`]; on drop, what is left is freed and the table goes.
pub(crate) struct FlowMap(NonNull<Table>);

// SAFETY: the table is shared with the hooks through `TABLE`; its owner only frees it.
unsafe impl Send for FlowMap {}
// SAFETY: as above.
unsafe impl Sync for FlowMap {}

impl FlowMap {
    /// Allocates the table for `config` (half as many buckets as `max_mappings`, from 256 to 2^23) and
    /// the `uoa_flow` cache, and publishes them.
    pub(crate) fn new(config: Config) -> Result<Self> {
        let buckets = (config.max_mappings.next_power_of_two() / 2).clamp(1 << 8, 1 << 23);
        let cache = TypesafeCache::new(c"uoa_flow", FREEPTR_OFFSET)?;
        // One `kvmalloc` of exactly `buckets` words, as `kvmalloc_array` does.
        let mut heads = KVVec::with_capacity(buckets as usize, GFP_KERNEL)?;
        for b in 0..buckets {
            heads.push(AtomicUsize::new(Link::nulls(b).word()), GFP_KERNEL)?;
        }
        let table = KBox::new(
            Table {
                heads,
                bits: buckets.trailing_zeros(),
                locks: BucketLocks::new(buckets)?,
                cache,
                seed: hash::random_u32(),
                config,
            },
            GFP_KERNEL,
        )?;
        let p = NonNull::from(KBox::leak(table));
        TABLE.store(p.as_ptr(), Ordering::Release);
        Ok(FlowMap(p))
    }
}

impl Drop for FlowMap {
    fn drop(&mut self) {
        TABLE.store(core::ptr::null_mut(), Ordering::Release);
        // The owner unregistered every user first (hooks, getsockopt, /proc, sweeper); wait for readers
        // still inside an RCU section.
        sync::synchronize_rcu();
        // SAFETY: came from `KBox::leak` in `new`; no one else uses it any more.
        let t = unsafe { KBox::from_raw(self.0.as_ptr()) };
        for b in 0..t.buckets() {
            let mut link = Link::from_word(t.head(b).load(Ordering::Relaxed));
            while let Some(e) = link.entry() {
                // SAFETY: the table's only user left; `next` is read before `e` is freed. Namespaces
                // flushed their own mappings at their exit, so nothing is left to account.
                unsafe {
                    link = Link::from_word(e.as_ref().next.load(Ordering::Relaxed));
                    t.free_now(e);
                }
            }
        }
        // `t` drops: the bucket array, the locks, then the (empty) cache, whose destruction waits for
        // RCU readers of a typesafe cache.
    }
}
