// SPDX-License-Identifier: GPL-2.0

//! The per-socket store: which TOA each connection arrived with (Tencent calls it the `toa_nat64_peer`
//! store).
//!
//! A hash table keyed by the `struct sock` address, laid out like TCP's own established table
//! (`inet_ehash`): a fixed array of buckets, each a singly linked RCU chain ending in a "nulls" marker that
//! names the bucket, and an array of bucket spinlocks (bucket `b` takes lock `b & mask`). Lookups take no
//! lock, only `rcu_read_lock`; inserts and removals take the bucket's lock with BHs off. An entry is
//! inserted when the kernel keeps a new child socket (`syn_recv_sock`) and removed in
//! `inet_sock_destruct`, before the socket's memory can be reused.
//!
//! The table has as many buckets as TCP's established hash table (`table_buckets=0`, the default): one
//! per 128 KiB of RAM at boot, at most 512 Ki, or what `thash_entries=` says. Every TOA socket is also in
//! TCP's table, so toa's chains are on average no longer than the ones TCP walks for each packet, and the
//! bucket array costs as much as TCP's (8 bytes per bucket, 0.006 % of RAM). It is allocated once, with
//! `kvmalloc` at its exact size (a power of two of 8-byte buckets: no rounding), so an entry costs its 40
//! bytes and nothing else. The kernel's rhashtable (toa's first store) resizes instead, but its bucket array
//! has a 64-byte header that makes `kvmalloc` round the allocation up to the next power of two: 82 bytes
//! per entry at 100 000 entries.
//!
//! Entries live in `SLAB_TYPESAFE_BY_RCU` slab caches, the scheme of TCP's socket lookups: a removed entry
//! is freed at once and its memory may be reused for another entry while an RCU reader still looks at it,
//! but it stays an entry (never other memory) until the reader's section ends. So there is no `rcu_head`
//! in an entry, and readers never trust what they read without checking it: an entry's socket pointer is
//! null while the object is free and is published last when it is reused (after its data, with a write
//! barrier); a reader reads the pointer, copies the data, and reads the pointer again
//! ([`Entry::copy`]), as a seqcount reader does. A reader may also be carried to another chain by an
//! entry that was freed and reused under it: it then ends on another bucket's nulls marker and starts
//! over, as `__inet_lookup_established` does.
//!
//! Should a destruct ever be missed (a hook that could not run), the entry also records the connection's
//! identity ([`SkTag`]: its local and peer ports) and a lookup only answers for a socket with that
//! identity: a later socket at the same address gets it only if it also has the same two ports.
//!
//! Every entry allocated counts `ip6_address_alloc`, every entry freed `ip6_address_free`.
//!
//! The kernel objects come typed from `src/sys`: the caches ([`TypesafeCache`]), the bucket locks
//! ([`BucketLocks`]), the RCU read-side sections ([`RcuReadGuard`]) and the racy copies ([`RacyCell`]); the
//! bucket array is a [`KVVec`] (one `kvmalloc`). The public API ([`insert`], [`lookup`], [`contains`],
//! [`remove`]) takes a [`Sock`] and is safe. What `unsafe` is left cannot be typed away: turning a chain
//! link into a reference ([`rcu_entry`], [`locked_entry`]: the lifetime is the RCU section's or the bucket
//! lock's, which the types cannot see), freeing an unlinked entry, the table published for the hooks
//! ([`Published`]), the module parameter, and the raw-pointer API that `/proc/net/toa_table`
//! (`src/procfs.rs`) still uses ([`LockedChain`], [`Entry::snapshot`], [`Entry::sk_of`]).

use crate::ffi;
use crate::stats::{self, Counter};
use crate::sys::params;
use crate::sys::slab::TypesafeCache;
use crate::sys::sock::Sock;
use crate::sys::sync::{
    self, BucketLocks, NullsLink, Published, RacyCell, RcuReadGuard, RcuSection, Words,
};
use crate::wire::{Addr, Endpoint, Origin, Toa};
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicPtr, AtomicUsize, Ordering};
use kernel::prelude::*;

/// The identity of a connected socket, fixed at its creation: its local and peer ports, as the kernel's
/// `skc_portpair` word holds them (read in one load; compared, never split).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct SkTag(u32);

impl SkTag {
    /// The tag of `sk`.
    #[inline(always)]
    fn of(sk: &Sock) -> SkTag {
        SkTag(sk.portpair())
    }
}

/// An [`Endpoint`] in 24 bytes: the address (IPv4 in the first 4 bytes), its port (host order) and
/// whether the address is IPv6 (0 or 1). Copied by RCU readers in three words (see [`Words`]).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct PackedEndpoint {
    addr: [u8; 16],
    port: u16,
    v6: u8,
    _pad: [u8; 5],
}

impl PackedEndpoint {
    fn pack(e: Endpoint) -> Self {
        let mut addr = [0; 16];
        let v6 = match e.addr {
            Addr::V4(a) => {
                addr[..4].copy_from_slice(&a);
                0
            }
            Addr::V6(a) => {
                addr = a;
                1
            }
        };
        PackedEndpoint {
            addr,
            port: e.port,
            v6,
            _pad: [0; 5],
        }
    }

    fn unpack(&self) -> Endpoint {
        let addr = if self.v6 != 0 {
            Addr::V6(self.addr)
        } else {
            Addr::V4([self.addr[0], self.addr[1], self.addr[2], self.addr[3]])
        };
        Endpoint {
            addr,
            port: self.port,
        }
    }
}

// SAFETY: 24 bytes, 8-aligned (asserted below), fields of integer types that fill it.
unsafe impl Words for PackedEndpoint {}
// SAFETY: as above.
unsafe impl Words for EntryData {}

const _: () = assert!(core::mem::size_of::<PackedEndpoint>() == 24);
const _: () = assert!(core::mem::align_of::<PackedEndpoint>() == 8);
const _: () = assert!(core::mem::size_of::<EntryData>() == 24);
const _: () = assert!(core::mem::align_of::<EntryData>() == 8);

/// [`Origin`] in one byte: the TCP option kind (never 0, 1 or 2: EOL, NOP and MSS), or these three.
const ORIGIN_IPV4_OPTION: u8 = 0;
const ORIGIN_IPV6_DEST_OPTION: u8 = 1;
const ORIGIN_DPVS_IPV4_OPTION: u8 = 2;

fn pack_origin(o: Origin) -> u8 {
    match o {
        Origin::TcpOption(kind) => kind,
        Origin::Ipv4Option => ORIGIN_IPV4_OPTION,
        Origin::Ipv6DestOption => ORIGIN_IPV6_DEST_OPTION,
        Origin::DpvsIpv4Option => ORIGIN_DPVS_IPV4_OPTION,
    }
}

/// Entry flags: the client address is IPv6.
const FLAG_CLIENT_V6: u8 = 1;
/// Entry flags: the entry is an [`EntryWithVip`].
const FLAG_HAS_VIP: u8 = 2;

/// What toa keeps per socket: 40 bytes on 64-bit, in the `toa_entry` slab cache (`/proc/slabinfo`); an
/// entry whose TOA carries a VIP is an [`EntryWithVip`] (64 bytes, cache `toa_entry_vip`).
///
/// While the object is free, the slab allocator keeps its free pointer in the first 8 bytes of
/// `data.client_addr` ([`FREEPTR_OFFSET`]): `next` (which RCU readers may still follow), `sk` (null while
/// free) and `data.flags` (which cache the object is of) stay intact.
///
/// Every field is an atomic or a [`RacyCell`], so an `&Entry` may be shared with a writer recycling the
/// object: readers get one for the length of an RCU read-side section ([`rcu_entry`]) or of a bucket
/// lock ([`locked_entry`]).
///
/// # Invariants
///
/// Every `Entry` is an object of the table's caches, written by [`Table::new_entry`]: of `toa_entry_vip`,
/// as the first field of an [`EntryWithVip`], exactly when its `FLAG_HAS_VIP` bit is set (the same for
/// every use of the object).
#[repr(C)]
pub(crate) struct Entry {
    /// The next entry of the chain, or the chain's nulls marker ([`Link`]). Written under the bucket lock
    /// only; readers may follow it even while the object is free.
    next: AtomicUsize,
    /// The socket (the table's key), null while the object is free: readers check it around their copy.
    sk: AtomicPtr<ffi::Sock>,
    data: RacyCell<EntryData>,
}

/// The data of an [`Entry`], copied out by readers (see [`Entry::copy`]).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct EntryData {
    tag: SkTag,
    /// The real client's port, host order.
    client_port: u16,
    /// The format that carried it (see [`pack_origin`]).
    origin: u8,
    /// `FLAG_*`. Its `FLAG_HAS_VIP` bit is the same for every object of a cache, so a reader may trust it.
    flags: u8,
    /// The real client (CIP, cport): address, IPv4 in the first 4 bytes.
    client_addr: [u8; 16],
}

impl EntryData {
    /// The real client (CIP, cport) the data holds.
    #[inline(always)]
    fn client(&self) -> Endpoint {
        PackedEndpoint {
            addr: self.client_addr,
            port: self.client_port,
            v6: u8::from(self.flags & FLAG_CLIENT_V6 != 0),
            _pad: [0; 5],
        }
        .unpack()
    }
}

/// An [`Entry`] followed by the VIP the TOA carried (the IP-option TOA/UOA design's, ByteDance's 254/16).
#[repr(C)]
struct EntryWithVip {
    entry: Entry,
    vip: RacyCell<PackedEndpoint>,
}

/// Where the slab allocator keeps its free pointer in a free entry (`kmem_cache_args::freeptr_offset`).
const FREEPTR_OFFSET: usize =
    core::mem::offset_of!(Entry, data) + core::mem::offset_of!(EntryData, client_addr);

const _: () = assert!(core::mem::size_of::<Entry>() == 40);
const _: () = assert!(core::mem::size_of::<EntryWithVip>() <= 64);
const _: () = assert!(core::mem::offset_of!(EntryWithVip, entry) == 0);
const _: () = assert!(FREEPTR_OFFSET % core::mem::align_of::<*mut c_void>() == 0);
const _: () = assert!(FREEPTR_OFFSET + 8 <= core::mem::size_of::<Entry>());

/// The fewest and the most buckets `table_buckets` may ask for.
const MIN_BUCKETS: u32 = 1 << 8;
const MAX_BUCKETS: u32 = 1 << 24;

/// A link of a chain ([`NullsLink`]) to the next [`Entry`].
type Link = NullsLink<Entry>;

/// The entry `link` points to, for a reader in `_rcu`'s read-side section, until the section ends.
///
/// # Safety
///
/// `link` was loaded during the section from a bucket head of the table, or from the `next` of an entry
/// reached so.
#[inline(always)]
unsafe fn rcu_entry(link: Link, _rcu: &RcuSection) -> Option<&Entry> {
    // SAFETY: an object reached through the table in the section stays an `Entry` object of the table's
    // caches until the section ends (`SLAB_TYPESAFE_BY_RCU`), freed or reused perhaps: every field of an
    // `Entry` is an atomic or a `RacyCell`, so sharing it with its writers is sound.
    link.entry().map(|e| unsafe { e.as_ref() })
}

/// The entry `link` points to, for a walker holding the chain's bucket lock, until the lock is released.
///
/// # Safety
///
/// `link` was loaded under `_guard` from the head of a bucket it locks, or from the `next` of an entry
/// reached so.
#[inline(always)]
unsafe fn locked_entry<'g>(link: Link, _guard: &'g BucketGuard) -> Option<&'g Entry> {
    // SAFETY: under the bucket lock, the entries of the chain are linked and live (entries are unlinked
    // under it before they are freed); one the caller unlinks and frees stays entry memory until the
    // lock is released all the same, since a BH-disabled section is an RCU read-side section.
    link.entry().map(|e| unsafe { e.as_ref() })
}

/// The table: the bucket array, its locks and the entry caches, published in [`TABLE`] by
/// [`Store::new`] before any hook is registered and taken back by its drop after every hook and reader
/// is gone.
struct Table {
    /// The buckets: each the head of a chain ([`Link`]), `1 << bits` of them.
    heads: KVVec<AtomicUsize>,
    /// log2 of the number of buckets: in 8..=24 (`Table::new` checks it).
    bits: u32,
    /// `64 - bits`: how far [`Table::bucket_of`] shifts a hash.
    shift: u32,
    locks: BucketLocks,
    entries: TypesafeCache<Entry>,
    entries_vip: TypesafeCache<EntryWithVip>,
}

static TABLE: Published<Table> = Published::new();

/// The table, for the hooks, socket options and files that use the store.
#[inline(always)]
fn table() -> &'static Table {
    // SAFETY: every caller is a hook, socket option or /proc file registered after `Store::new`
    // published the table and unregistered (and waited for) before `Store`'s drop takes it back.
    unsafe { TABLE.get() }
}

impl Table {
    /// A table of `buckets` (a power of two in `MIN_BUCKETS..=MAX_BUCKETS`, or `EINVAL`) empty buckets.
    fn new(buckets: u32) -> Result<Self> {
        // The invariant `bucket_of` relies on (`bits` in 8..=24).
        if !buckets.is_power_of_two() || !(MIN_BUCKETS..=MAX_BUCKETS).contains(&buckets) {
            return Err(EINVAL);
        }
        let entries = TypesafeCache::new(c"toa_entry", FREEPTR_OFFSET)?;
        let entries_vip = TypesafeCache::new(c"toa_entry_vip", FREEPTR_OFFSET)?;
        // One `kvmalloc` of exactly `buckets` words, as `kvmalloc_array` does.
        let mut heads = KVVec::with_capacity(buckets as usize, GFP_KERNEL)?;
        for b in 0..buckets {
            heads.push(AtomicUsize::new(Link::nulls(b).word()), GFP_KERNEL)?;
        }
        Ok(Table {
            heads,
            bits: buckets.trailing_zeros(),
            shift: 64 - buckets.trailing_zeros(),
            locks: BucketLocks::new(buckets)?,
            entries,
            entries_vip,
        })
    }

    /// The number of buckets.
    fn buckets(&self) -> u32 {
        1 << self.bits
    }

    /// The bucket of `sk` and its head: `hash_ptr()` of its address (a multiplication by the 64-bit
    /// golden ratio, as `include/linux/hash.h`). Socket addresses are not chosen by peers.
    fn bucket_of(&self, sk: &Sock) -> (u32, &AtomicUsize) {
        const GOLDEN_RATIO_64: u64 = 0x61C8_8646_80B5_83EB;
        // `shift` is in 40..=56: the shift neither overflows nor loses the result (so it needs none of
        // the checks `>>` carries with overflow checks on: this is every lookup's path).
        let b = (sk.as_ptr() as usize as u64)
            .wrapping_mul(GOLDEN_RATIO_64)
            .wrapping_shr(self.shift) as u32;
        // SAFETY: `b < 1 << bits`, the number of buckets (the top `bits` bits of a 64-bit product).
        (b, unsafe { self.heads.get_unchecked(b as usize) })
    }

    /// The head of bucket `b` (below `buckets()`).
    fn head(&self, b: u32) -> &AtomicUsize {
        &self.heads[b as usize]
    }

    /// A new entry holding `data` (and `vip`, which it has exactly when `data.flags` has `FLAG_HAS_VIP`)
    /// for `sk`, not linked yet: allocated with `GFP_ATOMIC` (any context but NMI).
    fn new_entry(
        &self,
        sk: &Sock,
        data: EntryData,
        vip: Option<PackedEndpoint>,
    ) -> Option<NonNull<Entry>> {
        // The object may be a recycled entry that RCU readers still look at: the data is written first
        // (readers race with it and discard what they read, see `Entry::copy`), then the socket pointer
        // is published after a write barrier.
        let e = match vip {
            None => self.entries.alloc_atomic()?,
            Some(vip) => {
                let ev = self.entries_vip.alloc_atomic()?;
                // SAFETY: an object of the `EntryWithVip` cache, ours until linked (RCU readers of a
                // recycled one only read it, through atomics and `RacyCell`s).
                unsafe { ev.as_ref() }.vip.store(vip);
                // `EntryWithVip` starts with its `Entry` (`repr(C)`, asserted above).
                ev.cast::<Entry>()
            }
        };
        // SAFETY: as above; the object is an `Entry` of the cache that `data.flags` names (the caller's
        // contract), which keeps the type invariant.
        let entry = unsafe { e.as_ref() };
        entry.data.store(data);
        // smp_wmb(): the data before the pointer that makes it an entry of `sk`.
        fence(Ordering::Release);
        entry.sk.store(sk.as_ptr(), Ordering::Relaxed);
        Some(e)
    }

    /// Frees `e` at once. RCU readers may still be looking at it: its socket pointer is cleared first, so
    /// they see it is no longer an entry before they can see the allocator's free pointer in its data.
    ///
    /// # Safety
    ///
    /// `e` came from [`Table::new_entry`] and is no longer reachable from the table: the caller owns it.
    unsafe fn free_entry_now(&self, e: NonNull<Entry>) {
        // SAFETY: an entry of the table's caches, owned by the caller (the function's contract).
        let entry = unsafe { e.as_ref() };
        entry.sk.store(core::ptr::null_mut(), Ordering::Relaxed);
        // smp_wmb(): the cleared pointer before the allocator's writes.
        fence(Ordering::Release);
        // SAFETY: the caller owns the entry: no one writes its data.
        let has_vip = unsafe { entry.data.get() }.flags & FLAG_HAS_VIP != 0;
        // SAFETY: the object is of the cache its `FLAG_HAS_VIP` bit names (`Entry`'s invariant), owned
        // by the caller.
        unsafe {
            if has_vip {
                self.entries_vip.free(e.cast());
            } else {
                self.entries.free(e);
            }
        }
    }
}

/// The lock of a bucket, held (BHs off) until dropped: the writers' side, and the `/proc` dump's.
/// (`Option<BucketGuard>` is one pointer, null for `None`.)
#[repr(transparent)]
pub(crate) struct BucketGuard(sync::BucketGuard<'static>);

impl BucketGuard {
    /// Takes the lock of bucket `b` (below [`buckets`]).
    pub(crate) fn lock(b: u32) -> Self {
        BucketGuard(table().locks.lock(b))
    }
}

/// The number of buckets of the table (a power of two).
pub(crate) fn buckets() -> u32 {
    table().buckets()
}

/// `table_buckets` as given (0: TCP's), checked: the number of buckets to use.
fn table_buckets() -> Result<u32> {
    let param = params::table_buckets();
    if param == 0 {
        let tcp = crate::sys::sock::tcp_established_buckets();
        return Ok(tcp.clamp(MIN_BUCKETS, MAX_BUCKETS).next_power_of_two());
    }
    if !param.is_power_of_two() || !(MIN_BUCKETS..=MAX_BUCKETS).contains(&param) {
        pr_err!(
            "invalid table_buckets={}: use 0 (as many as TCP's established hash table) or a power of two from {} to {}\n",
            param,
            MIN_BUCKETS,
            MAX_BUCKETS
        );
        return Err(EINVAL);
    }
    Ok(param)
}

/// Owner of the table and of its slab caches: published by [`Store::new`]; on drop, every remaining
/// entry is freed, then the table and the caches go.
pub(crate) struct Store(());

impl Store {
    /// Checks `table_buckets`, allocates the (global) table and creates the entry caches.
    pub(crate) fn new() -> Result<Self> {
        let buckets = table_buckets()?;
        let table = Table::new(buckets)?;
        // sysfs shows the number in use from now on.
        params::set_table_buckets(buckets);
        // SAFETY: nothing is published (one `Store` at a time: the module's), and the hooks, socket
        // options and files that read the table are registered after this returns.
        unsafe { TABLE.set(table) };
        Ok(Store(()))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The owner unregisters every hook, /proc file and sockopt handler first: no new entry can be
        // inserted and no new reader can start. Wait for the readers already inside an RCU section.
        sync::synchronize_rcu();
        let t = table();
        for b in 0..t.buckets() {
            // SAFETY: no one else uses the table any more, which is as good as holding every bucket lock;
            // the iterator reads an entry's `next` before it yields the entry, so freeing it is safe.
            for e in unsafe { LockedChain::of(b) } {
                // SAFETY: `e` is an entry of the table, unreachable by anyone else. Its socket is not
                // touched: once the destructor hook is gone, sockets die without taking their entries
                // along, so the socket may be freed memory already. (Not counted either: the counters of
                // this module instance end with it.)
                unsafe { t.free_entry_now(NonNull::new_unchecked(e)) };
            }
        }
        // SAFETY: published by `new`; every reader is gone (above). Dropped at once: the bucket array,
        // the locks, then the caches (`kmem_cache_destroy` waits for RCU readers of typesafe caches).
        drop(unsafe { TABLE.take() });
    }
}

/// Unlinks the entry of `sk` from the chain that starts at `head`, if there is one, and returns it.
///
/// # Safety
///
/// `head` is the head of `sk`'s bucket, whose lock `guard` holds.
unsafe fn unlink(guard: &BucketGuard, head: &AtomicUsize, sk: &Sock) -> Option<NonNull<Entry>> {
    let mut prev: &AtomicUsize = head;
    loop {
        let link = Link::from_word(prev.load(Ordering::Relaxed));
        // SAFETY: loaded under the lock from the chain's head or an entry's `next` (the contract).
        let e = unsafe { locked_entry(link, guard) }?;
        if e.sk.load(Ordering::Relaxed) == sk.as_ptr() {
            // Readers standing on `e` go on through its `next`, which is left as it is.
            prev.store(e.next.load(Ordering::Relaxed), Ordering::Release);
            return link.entry();
        }
        prev = &e.next;
    }
}

/// Stores `toa` for `sk`. Runs in softirq context (the `syn_recv_sock` return probe), for a new child
/// socket (its ports are its identity, [`SkTag`]).
///
/// An entry already present for `sk` can only be a stale one left by an earlier socket at the same
/// address whose destruction was missed: it is replaced, never returned for the new socket. The entry is
/// removed by [`remove`] in the socket's destructor (every [`Sock`] is an inet socket, destroyed through
/// `inet_sock_destruct`).
///
/// The caller's read-side section `rcu` is where the counters are counted.
///
/// # Errors
///
/// `ENOMEM` when no entry can be allocated (counted: `store_insert_failed`).
pub(crate) fn insert(sk: &Sock, toa: &Toa, rcu: &RcuSection) -> Result {
    let t = table();
    let client = PackedEndpoint::pack(toa.client);
    let mut flags = if client.v6 != 0 { FLAG_CLIENT_V6 } else { 0 };
    if toa.vip.is_some() {
        flags |= FLAG_HAS_VIP;
    }
    let data = EntryData {
        tag: SkTag::of(sk),
        client_port: client.port,
        origin: pack_origin(toa.origin),
        flags,
        client_addr: client.addr,
    };
    let Some(e) = t.new_entry(sk, data, toa.vip.map(PackedEndpoint::pack)) else {
        stats::inc_in(sk, Counter::StoreInsertFailed, rcu);
        return Err(ENOMEM);
    };
    stats::inc_in(sk, Counter::Ip6AddressAlloc, rcu);
    let (b, head) = t.bucket_of(sk);
    let stale = {
        let guard = BucketGuard::lock(b);
        // SAFETY: `head` is the head of bucket `b`, locked by `guard`.
        let stale = unsafe { unlink(&guard, head, sk) };
        // SAFETY: `e` is ours until published; a reader standing on it (a recycled object) follows `next`
        // into this chain, whose nulls marker tells it where it is.
        unsafe { e.as_ref() }
            .next
            .store(head.load(Ordering::Relaxed), Ordering::Relaxed);
        // The release store publishes the entry (rcu_assign_pointer).
        head.store(Link::to(e).word(), Ordering::Release);
        stale
    };
    if let Some(old) = stale {
        stats::inc_in(sk, Counter::StoreStaleReplaced, rcu);
        // SAFETY: `old` was unlinked under the lock by this call, which makes it its only owner.
        unsafe { t.free_entry_now(old) };
        stats::inc_in(sk, Counter::Ip6AddressFree, rcu);
    }
    Ok(())
}

/// Whether `sk` has an entry: a lockless look in the caller's read-side section, for the destructor
/// hook, which takes the bucket lock only then (most sockets have no entry). Safe in any context, a
/// breakpoint's NMI-like one included (plain loads only).
#[inline(always)]
pub(crate) fn contains(sk: &Sock, rcu: &RcuSection) -> bool {
    rcu_find_in(sk, rcu, |_| Ok(Some(()))).is_some()
}

/// Removes and frees the entry of `sk`, if any, counting in the caller's read-side section `rcu`. Runs
/// from `inet_sock_destruct`, in any context but a breakpoint's (it takes the bucket lock).
pub(crate) fn remove(sk: &Sock, rcu: &RcuSection) {
    let t = table();
    let (b, head) = t.bucket_of(sk);
    let removed = {
        let guard = BucketGuard::lock(b);
        // SAFETY: `head` is the head of bucket `b`, locked by `guard`.
        unsafe { unlink(&guard, head, sk) }
    };
    if let Some(e) = removed {
        // SAFETY: unlinked under the lock by this call, which makes it the entry's only owner.
        unsafe { t.free_entry_now(e) };
        stats::inc_in(sk, Counter::Ip6AddressFree, rcu);
    }
}

/// The TOA stored for `sk`, or `None` when `sk` has no entry of its own. Safe in any context, a
/// breakpoint's NMI-like one included (RCU and plain loads only). An entry is inserted before its socket
/// is visible to anyone (in `syn_recv_sock`, before the socket is queued for `accept()`), so no later call
/// on the socket can miss it.
#[inline(always)]
pub(crate) fn lookup(sk: &Sock) -> Option<Toa> {
    rcu_find(sk, |e| match e.copy() {
        Some(s) if s.sk == sk.as_ptr().cast_const() => {
            Ok((s.tag == SkTag::of(sk)).then_some(s.toa))
        }
        // Freed or reused under us: the entry of `sk`, if any, is elsewhere.
        _ => Err(()),
    })
}

/// The real client stored for `sk` (the peer address `getpeername()` answers), or `None` when `sk` has
/// no entry of its own: [`lookup`] without the VIP and the format, inside the caller's read-side
/// section (which may go on using it, to count the answer).
#[inline(always)]
pub(crate) fn client(sk: &Sock, rcu: &RcuSection) -> Option<StoredClient> {
    rcu_find_in(sk, rcu, |e| match e.data_of(sk) {
        Some(data) => Ok((data.tag == SkTag::of(sk)).then_some(StoredClient(data))),
        // Freed or reused under us: the entry of `sk`, if any, is elsewhere.
        None => Err(()),
    })
}

/// A client as [`client`] copied it from its entry: read from the entry's words as the caller needs it
/// (the `getpeername()` path keeps them in registers).
#[derive(Clone, Copy)]
pub(crate) struct StoredClient(EntryData);

impl StoredClient {
    /// The client's IPv4 address (network order) and port (host order), if it is IPv4.
    #[inline(always)]
    pub(crate) fn v4(&self) -> Option<([u8; 4], u16)> {
        let d = &self.0;
        (d.flags & FLAG_CLIENT_V6 == 0).then(|| {
            (
                [
                    d.client_addr[0],
                    d.client_addr[1],
                    d.client_addr[2],
                    d.client_addr[3],
                ],
                d.client_port,
            )
        })
    }

    /// The client.
    #[inline(always)]
    pub(crate) fn endpoint(&self) -> Endpoint {
        self.0.client()
    }
}

/// Walks the chain of `sk`'s bucket under `rcu_read_lock` for an entry whose socket is `sk`: see
/// [`rcu_find_in`].
#[inline(always)]
fn rcu_find<T>(
    sk: &Sock,
    found: impl Fn(&Entry) -> core::result::Result<Option<T>, ()>,
) -> Option<T> {
    rcu_find_in(sk, &RcuReadGuard::new(), found)
}

/// Walks the chain of `sk`'s bucket in the read-side section `_rcu` for an entry whose socket is `sk`,
/// and returns what `found` makes of it (`found` returns `Err` to have the walk start over: the entry
/// changed under it), or `None` when there is no such entry. `found` runs inside the section, with an
/// entry that may have been freed or reused since it was reached.
#[inline(always)]
fn rcu_find_in<T>(
    sk: &Sock,
    rcu: &RcuSection,
    found: impl Fn(&Entry) -> core::result::Result<Option<T>, ()>,
) -> Option<T> {
    let (b, head) = table().bucket_of(sk);
    'walk: loop {
        // Acquire loads of the links: rcu_dereference().
        let mut link = Link::from_word(head.load(Ordering::Acquire));
        // SAFETY: `link` is loaded in `rcu`'s section from the bucket's head, then from the `next` of
        // the entries reached so.
        while let Some(e) = unsafe { rcu_entry(link, rcu) } {
            if e.sk.load(Ordering::Relaxed) == sk.as_ptr() {
                match found(e) {
                    Ok(r) => return r,
                    Err(()) => continue 'walk,
                }
            }
            link = Link::from_word(e.next.load(Ordering::Acquire));
        }
        if link != Link::nulls(b) {
            // Carried to another chain by an entry reused under us: start over.
            continue;
        }
        return None;
    }
}

/// The entries of a chain, in order, for a walker that holds the chain's bucket lock (so the chain does
/// not change and its entries are live while it walks).
pub(crate) struct LockedChain(Link);

impl LockedChain {
    /// The chain of bucket `b` (below [`buckets`]).
    ///
    /// # Safety
    ///
    /// The caller holds the lock of bucket `b` for as long as it uses the iterator, or is the table's only
    /// user left ([`Store`]'s drop). An entry may be freed once yielded: its `next` was read before.
    pub(crate) unsafe fn of(b: u32) -> Self {
        LockedChain(Link::from_word(table().head(b).load(Ordering::Relaxed)))
    }

    /// The entries after `e` in its chain.
    ///
    /// # Safety
    ///
    /// `e` is an entry of the table, and the caller holds its bucket's lock for as long as it uses the
    /// iterator.
    pub(crate) unsafe fn after(e: *const Entry) -> Self {
        // SAFETY: per the function's contract `e` is live.
        LockedChain(Link::from_word(unsafe {
            (*e).next.load(Ordering::Relaxed)
        }))
    }
}

impl Iterator for LockedChain {
    type Item = *mut Entry;

    fn next(&mut self) -> Option<*mut Entry> {
        let e = self.0.entry()?;
        // SAFETY: under the bucket lock (the constructors' contract), `e` is live.
        self.0 = Link::from_word(unsafe { e.as_ref() }.next.load(Ordering::Relaxed));
        Some(e.as_ptr())
    }
}

/// Whether bucket `b` (below [`buckets`]) has no entry, without its lock (a hint: the dump skips empty
/// buckets without taking their lock, as `/proc/net/tcp` does).
pub(crate) fn bucket_is_empty(b: u32) -> bool {
    Link::from_word(table().head(b).load(Ordering::Relaxed))
        .entry()
        .is_none()
}

/// A consistent copy of an entry, taken by [`Entry::copy`].
pub(crate) struct Snapshot {
    /// The socket the entry belonged to when copied.
    pub(crate) sk: *const ffi::Sock,
    tag: SkTag,
    /// The TOA stored for it.
    pub(crate) toa: Toa,
}

impl Entry {
    /// Copies the entry, or `None` if it is free or was reused while it was being copied.
    #[inline(always)]
    fn copy(&self) -> Option<Snapshot> {
        let (sk, data, vip) = self.read(|data| {
            (data.flags & FLAG_HAS_VIP != 0).then(|| {
                // SAFETY: `FLAG_HAS_VIP` is the same for every use of an object and the free pointer
                // never covers `flags`: the object is the `entry` of an `EntryWithVip` (the type
                // invariant), which stays one while `self` is borrowed.
                let ev = unsafe { &*core::ptr::from_ref(self).cast::<EntryWithVip>() };
                ev.vip.load()
            })
        })?;
        Some(Snapshot {
            sk,
            tag: data.tag,
            toa: Toa {
                client: data.client(),
                vip: vip.map(|v| v.unpack()),
                origin: unpack_origin(data.origin),
            },
        })
    }

    /// Copies the data of an entry whose socket was just read as `sk` (by the chain walk), or `None`
    /// if the entry was freed or reused since: [`Entry::read`] for `getpeername()`, whose first read
    /// of the socket pointer is the walk's.
    #[inline(always)]
    fn data_of(&self, sk: &Sock) -> Option<EntryData> {
        // smp_rmb(): the pointer (read by the walk) before the data (pairs with the write barrier in
        // `new_entry`).
        fence(Ordering::Acquire);
        let data = self.data.load();
        // smp_rmb(): the data before the pointer again (pairs with `free_entry_now`).
        fence(Ordering::Acquire);
        (self.sk.load(Ordering::Relaxed) == sk.as_ptr()).then_some(data)
    }

    /// Reads the entry's socket and data, and what `more` reads of the object given the data, as a
    /// seqcount reader does: the socket pointer, the data, the pointer again; `None` if the entry is
    /// free or was reused meanwhile.
    #[inline(always)]
    fn read<T>(
        &self,
        more: impl FnOnce(&EntryData) -> T,
    ) -> Option<(*const ffi::Sock, EntryData, T)> {
        let sk = self.sk.load(Ordering::Relaxed);
        if sk.is_null() {
            return None;
        }
        // smp_rmb(): the pointer before the data (pairs with the write barrier in `new_entry`).
        fence(Ordering::Acquire);
        let data = self.data.load();
        let extra = more(&data);
        // smp_rmb(): the data before the pointer again (pairs with `free_entry_now`).
        fence(Ordering::Acquire);
        if self.sk.load(Ordering::Relaxed) != sk {
            return None;
        }
        Some((sk, data, extra))
    }

    /// Copies the entry at `e`, or `None` if it is free or was reused while it was being copied.
    ///
    /// # Safety
    ///
    /// `e` was reached through the table in the caller's current RCU read-side section, or is in a bucket
    /// whose lock the caller holds (so it is an entry object, possibly free or recycled, until then).
    #[inline(always)]
    pub(crate) unsafe fn snapshot(e: *const Entry) -> Option<Snapshot> {
        // SAFETY: per the function's contract, `e` stays an entry object while it is borrowed.
        unsafe { &*e }.copy()
    }

    /// The socket of the entry at `e` (null if the object is free).
    ///
    /// # Safety
    ///
    /// As for [`Entry::snapshot`].
    pub(crate) unsafe fn sk_of(e: *const Entry) -> *const ffi::Sock {
        // SAFETY: per the function's contract.
        unsafe { (*e).sk.load(Ordering::Relaxed) }
    }
}

fn unpack_origin(o: u8) -> Origin {
    match o {
        ORIGIN_IPV4_OPTION => Origin::Ipv4Option,
        ORIGIN_IPV6_DEST_OPTION => Origin::Ipv6DestOption,
        ORIGIN_DPVS_IPV4_OPTION => Origin::DpvsIpv4Option,
        kind => Origin::TcpOption(kind),
    }
}
