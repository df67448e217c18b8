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
//! ([`Entry::snapshot`]), as a seqcount reader does. A reader may also be carried to another chain by an
//! entry that was freed and reused under it: it then ends on another bucket's nulls marker and starts
//! over, as `__inet_lookup_established` does.
//!
//! Should a destruct ever be missed (a hook that could not run), the entry also records the connection's
//! identity ([`SkTag`]: its local and peer ports) and a lookup only answers for a socket with that
//! identity: a later socket at the same address gets it only if it also has the same two ports.
//!
//! Every entry allocated counts `ip6_address_alloc`, every entry freed `ip6_address_free`.

use crate::ffi::{self, KmemCache, Sock, SpinLock};
use crate::stats::{self, Counter};
use crate::wire::{Addr, Endpoint, Origin, Toa};
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use kernel::prelude::*;

/// The identity of a connected socket, fixed at its creation: its local port (high 16 bits) and its
/// peer port (low 16 bits), host byte order.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct SkTag(u32);

impl SkTag {
    /// The tag of `sk`.
    ///
    /// # Safety
    ///
    /// `sk` is a live socket (or, under RCU, a TCP socket's memory).
    unsafe fn of(sk: *const Sock) -> SkTag {
        // SAFETY: per the function's contract; plain field reads.
        unsafe { SkTag((u32::from(ffi::toa_sk_num(sk)) << 16) | u32::from(ffi::toa_sk_dport(sk))) }
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

/// Data that RCU readers copy while a writer may be recycling the object that holds it: a multiple of 8
/// bytes, 8-aligned, no padding, every bit pattern valid. It is moved as volatile 8-byte accesses (a racy
/// copy that the reader validates afterwards, like a seqcount reader's), not byte by byte. Used by the
/// socket store's entries and by the UOA flow map (`src/uoa/flows.rs`).
///
/// # Safety
///
/// Implemented only for types with exactly that layout.
pub(crate) unsafe trait Words: Copy {
    /// Copies `*src`.
    ///
    /// # Safety
    ///
    /// `src` points to readable memory holding a `Self` (possibly being rewritten concurrently).
    #[inline(always)]
    unsafe fn load(src: *const Self) -> Self {
        let mut out = core::mem::MaybeUninit::<Self>::uninit();
        for i in 0..core::mem::size_of::<Self>() / 8 {
            // SAFETY: per the contracts, `src` and `out` are 8-aligned and a multiple of 8 bytes long.
            unsafe {
                let word = src.cast::<u64>().add(i).read_volatile();
                out.as_mut_ptr().cast::<u64>().add(i).write(word);
            }
        }
        // SAFETY: every word was written, and every bit pattern is a valid `Self` (the trait's contract).
        unsafe { out.assume_init() }
    }

    /// Writes `self` to `dst`.
    ///
    /// # Safety
    ///
    /// `dst` points to writable memory for a `Self`.
    #[inline(always)]
    unsafe fn store(self, dst: *mut Self) {
        let src: *const Self = &self;
        for i in 0..core::mem::size_of::<Self>() / 8 {
            // SAFETY: per the contracts, both are 8-aligned and a multiple of 8 bytes long; `Self` has no
            // padding, so every word read is initialised.
            unsafe {
                let word = src.cast::<u64>().add(i).read();
                dst.cast::<u64>().add(i).write_volatile(word);
            }
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
#[repr(C)]
pub(crate) struct Entry {
    /// The next entry of the chain, or the chain's nulls marker ([`Link`]). Written under the bucket lock
    /// only; readers may follow it even while the object is free.
    next: AtomicUsize,
    /// The socket (the table's key), null while the object is free: readers check it around their copy.
    sk: AtomicPtr<Sock>,
    data: EntryData,
}

/// The data of an [`Entry`], copied out by readers (see [`Entry::snapshot`]).
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

/// An [`Entry`] followed by the VIP the TOA carried (the IP-option TOA/UOA design's, ByteDance's 254/16).
#[repr(C)]
struct EntryWithVip {
    entry: Entry,
    vip: PackedEndpoint,
}

/// Where the slab allocator keeps its free pointer in a free entry (`kmem_cache_args::freeptr_offset`).
const FREEPTR_OFFSET: usize =
    core::mem::offset_of!(Entry, data) + core::mem::offset_of!(EntryData, client_addr);

const _: () = assert!(core::mem::size_of::<Entry>() == 40);
const _: () = assert!(core::mem::size_of::<EntryWithVip>() <= 64);
const _: () = assert!(FREEPTR_OFFSET % core::mem::align_of::<*mut c_void>() == 0);
const _: () = assert!(FREEPTR_OFFSET + 8 <= core::mem::size_of::<Entry>());

/// A `SLAB_TYPESAFE_BY_RCU` slab cache of its own (shown by name in `/proc/slabinfo`); destroyed when
/// dropped, after a grace period (`kmem_cache_destroy` waits for RCU readers of typesafe caches).
struct SlabCache(NonNull<KmemCache>);

impl SlabCache {
    /// A cache of `T` objects named `name`, whose free pointer is at [`FREEPTR_OFFSET`].
    fn new<T>(name: &'static core::ffi::CStr) -> Result<Self> {
        // SAFETY: `name` is a static C string, as the cache keeps the pointer; size and alignment are
        // those of `T`, whose size is not 0; the free pointer offset is aligned and inside `T` (the
        // asserts above, and every `T` here starts with an `Entry`).
        let c = unsafe {
            ffi::toa_kmem_cache_create(
                name.as_ptr(),
                core::mem::size_of::<T>() as u32,
                core::mem::align_of::<T>() as u32,
                FREEPTR_OFFSET as u32,
            )
        };
        NonNull::new(c).map(SlabCache).ok_or(ENOMEM)
    }
}

// SAFETY: a slab cache may be used and destroyed from any thread (it has its own locking).
unsafe impl Send for SlabCache {}
// SAFETY: as above; `SlabCache` has no `&self` method.
unsafe impl Sync for SlabCache {}

impl Drop for SlabCache {
    fn drop(&mut self) {
        // SAFETY: created by `new`; its owner ([`Store`]) has freed every object.
        unsafe { ffi::kmem_cache_destroy(self.0.as_ptr()) };
    }
}

/// The caches of [`Entry`] and [`EntryWithVip`], for the hooks: set by [`Store::new`] before any hook
/// is registered, cleared by its drop after every hook is gone.
static ENTRY_CACHE: AtomicPtr<KmemCache> = AtomicPtr::new(core::ptr::null_mut());
static ENTRY_VIP_CACHE: AtomicPtr<KmemCache> = AtomicPtr::new(core::ptr::null_mut());

fn cache_of(has_vip: bool) -> *mut KmemCache {
    if has_vip {
        ENTRY_VIP_CACHE.load(Ordering::Relaxed)
    } else {
        ENTRY_CACHE.load(Ordering::Relaxed)
    }
}

/// The fewest and the most buckets `table_buckets` may ask for.
const MIN_BUCKETS: u32 = 1 << 8;
const MAX_BUCKETS: u32 = 1 << 24;

/// A link of a chain, as one word: the address of the next [`Entry`] (8-aligned, so bit 0 is clear), or,
/// at the end of a chain, its nulls marker `(bucket << 1) | 1`, which tells a reader which bucket's chain
/// it has walked (`include/linux/list_nulls.h`).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Link(usize);

impl Link {
    fn nulls(bucket: u32) -> Link {
        Link(((bucket as usize) << 1) | 1)
    }

    fn to(e: *const Entry) -> Link {
        Link(e as usize)
    }

    /// The entry this link points to, or `None` at the end of a chain.
    fn entry(self) -> Option<*mut Entry> {
        (self.0 & 1 == 0).then_some(self.0 as *mut Entry)
    }
}

/// The table: the bucket array and its locks, published by [`Table::new`] before any hook is
/// registered and withdrawn by its drop after every hook and reader is gone. The hooks read it with
/// relaxed loads: registering a probe or a file orders these stores before any handler runs.
struct Table;

static BUCKETS: AtomicPtr<AtomicUsize> = AtomicPtr::new(core::ptr::null_mut());
/// log2 of the number of buckets.
static BITS: AtomicU32 = AtomicU32::new(0);
static LOCKS: AtomicPtr<SpinLock> = AtomicPtr::new(core::ptr::null_mut());
static LOCK_MASK: AtomicU32 = AtomicU32::new(0);

impl Table {
    /// Allocates a table of `buckets` (a power of two in `MIN_BUCKETS..=MAX_BUCKETS`) empty buckets.
    fn new(buckets: u32) -> Result<Self> {
        let n = buckets as usize;
        // SAFETY: `kvmalloc_array` with a non-zero count and element size; checked for null below.
        let array = unsafe { ffi::toa_kvmalloc_array(n, core::mem::size_of::<AtomicUsize>()) }
            .cast::<AtomicUsize>();
        if array.is_null() {
            return Err(ENOMEM);
        }
        for b in 0..buckets {
            // SAFETY: `b < n`, inside the allocation, which is suitably aligned for a word.
            unsafe {
                array
                    .add(b as usize)
                    .write(AtomicUsize::new(Link::nulls(b).0))
            };
        }
        let mut locks = core::ptr::null_mut();
        let mut lock_mask = 0;
        // SAFETY: out-pointers to locals; the shim's wrapper of `alloc_bucket_spinlocks`.
        let ret = unsafe { ffi::toa_alloc_bucket_locks(&mut locks, &mut lock_mask, buckets) };
        if ret < 0 {
            // SAFETY: allocated above and not published.
            unsafe { ffi::kvfree(array.cast()) };
            return Err(Error::from_errno(ret));
        }
        BITS.store(buckets.trailing_zeros(), Ordering::Relaxed);
        LOCK_MASK.store(lock_mask, Ordering::Relaxed);
        LOCKS.store(locks, Ordering::Relaxed);
        BUCKETS.store(array, Ordering::Relaxed);
        Ok(Table)
    }

    /// The number of buckets.
    fn buckets() -> u32 {
        1 << BITS.load(Ordering::Relaxed)
    }

    /// The bucket of `sk`: `hash_ptr()` of its address (a multiplication by the 64-bit golden ratio, as
    /// `include/linux/hash.h`). Socket addresses are not chosen by peers.
    fn bucket_of(sk: *const Sock) -> u32 {
        const GOLDEN_RATIO_64: u64 = 0x61C8_8646_80B5_83EB;
        let bits = BITS.load(Ordering::Relaxed);
        // `bits` is in 8..=24: the shift neither overflows nor loses the result.
        ((sk as usize as u64).wrapping_mul(GOLDEN_RATIO_64) >> (64 - bits)) as u32
    }

    /// The head of bucket `b`.
    fn head(b: u32) -> &'static AtomicUsize {
        // SAFETY: the array lives from `Table::new` to its drop, which comes after every user; `b` is a
        // bucket number (below `buckets()`) for every caller.
        unsafe { &*BUCKETS.load(Ordering::Relaxed).add(b as usize) }
    }

    /// The lock of bucket `b`.
    fn lock(b: u32) -> *mut SpinLock {
        // SAFETY: the lock array lives as long as the bucket array and has `LOCK_MASK + 1` locks.
        unsafe {
            ffi::toa_bucket_lock(
                LOCKS.load(Ordering::Relaxed),
                b & LOCK_MASK.load(Ordering::Relaxed),
            )
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let array = BUCKETS.swap(core::ptr::null_mut(), Ordering::Relaxed);
        let locks = LOCKS.swap(core::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: both were allocated by `new`; the owner ([`Store`]) has emptied the table and no user
        // is left.
        unsafe {
            ffi::kvfree(array.cast());
            ffi::free_bucket_spinlocks(locks);
        }
    }
}

/// The lock of a bucket, held (BHs off) until dropped: the writers' side, and the `/proc` dump's.
/// (`Option<BucketGuard>` is one pointer, null for `None`.)
#[repr(transparent)]
pub(crate) struct BucketGuard(NonNull<SpinLock>);

impl BucketGuard {
    /// Takes the lock of bucket `b` (below [`buckets`]).
    pub(crate) fn lock(b: u32) -> Self {
        // SAFETY: the address of an element of the lock array is not null.
        let lock = unsafe { NonNull::new_unchecked(Table::lock(b)) };
        // SAFETY: a lock of the live table; released by `drop`.
        unsafe { ffi::toa_spin_lock_bh(lock.as_ptr()) };
        BucketGuard(lock)
    }
}

impl Drop for BucketGuard {
    fn drop(&mut self) {
        // SAFETY: taken by `lock`.
        unsafe { ffi::toa_spin_unlock_bh(self.0.as_ptr()) };
    }
}

/// The number of buckets of the table (a power of two).
pub(crate) fn buckets() -> u32 {
    Table::buckets()
}

/// `table_buckets` as given (0: TCP's), checked: the number of buckets to use.
fn table_buckets() -> Result<u32> {
    // SAFETY: a read-only (0444) parameter, read once at load.
    let param =
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(ffi::toa_param_table_buckets)) };
    if param == 0 {
        // SAFETY: TCP's established table exists from boot on.
        let tcp = unsafe { ffi::toa_tcp_ehash_size() };
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

/// Owner of the table and of its slab caches: initialised by [`Store::new`]; on drop, every remaining
/// entry is freed, then the table and the caches go.
pub(crate) struct Store {
    // Dropped after `drop` below has emptied the table: the table, then the caches.
    _table: Table,
    _entries: SlabCache,
    _entries_vip: SlabCache,
}

impl Store {
    /// Checks `table_buckets`, allocates the (global) table and creates the entry caches.
    pub(crate) fn new() -> Result<Self> {
        let buckets = table_buckets()?;
        let entries = SlabCache::new::<Entry>(c"toa_entry")?;
        let entries_vip = SlabCache::new::<EntryWithVip>(c"toa_entry_vip")?;
        let table = Table::new(buckets)?;
        // SAFETY: a read-only parameter of this module, written once here, before any hook exists; sysfs
        // shows the number in use from now on.
        unsafe {
            core::ptr::write_volatile(
                core::ptr::addr_of_mut!(ffi::toa_param_table_buckets),
                buckets,
            )
        };
        ENTRY_CACHE.store(entries.0.as_ptr(), Ordering::Relaxed);
        ENTRY_VIP_CACHE.store(entries_vip.0.as_ptr(), Ordering::Relaxed);
        Ok(Store {
            _table: table,
            _entries: entries,
            _entries_vip: entries_vip,
        })
    }
}

/// Frees `e` at once. RCU readers may still be looking at it: its socket pointer is cleared first, so
/// they see it is no longer an entry before they can see the allocator's free pointer in its data.
///
/// # Safety
///
/// `e` was allocated by [`insert`] and is not (or no longer) reachable from the table.
unsafe fn free_entry_now(e: *mut Entry) {
    // SAFETY: per the function's contract, `e` is an object of the cache its `FLAG_HAS_VIP` bit tells;
    // the entry types own nothing, so freeing the memory is all there is to drop.
    unsafe {
        (*e).sk.store(core::ptr::null_mut(), Ordering::Relaxed);
        // smp_wmb(): the cleared pointer before the allocator's writes.
        fence(Ordering::Release);
        ffi::kmem_cache_free(cache_of((*e).data.flags & FLAG_HAS_VIP != 0), e.cast());
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The owner unregisters every hook, /proc file and sockopt handler first: no new entry can be
        // inserted and no new reader can start. Wait for the readers already inside an RCU section.
        // SAFETY: `synchronize_rcu` may sleep; module exit runs in process context.
        unsafe { ffi::synchronize_rcu() };
        for b in 0..Table::buckets() {
            // SAFETY: no one else uses the table any more, which is as good as holding every bucket lock;
            // the iterator reads an entry's `next` before it yields the entry, so freeing it is safe.
            for e in unsafe { LockedChain::of(b) } {
                // SAFETY: `e` is an entry of the table, unreachable by anyone else. Its socket is not
                // touched: once the destructor hook is gone, sockets die without taking their entries
                // along, so the socket may be freed memory already. (Not counted either: the counters of
                // this module instance end with it.)
                unsafe { free_entry_now(e) };
            }
        }
        ENTRY_CACHE.store(core::ptr::null_mut(), Ordering::Relaxed);
        ENTRY_VIP_CACHE.store(core::ptr::null_mut(), Ordering::Relaxed);
        // The fields drop next: the table is freed, then the caches are destroyed (after a grace period).
    }
}

/// Unlinks the entry of `sk` from bucket `b`, if there is one, and returns it.
///
/// # Safety
///
/// The caller holds the lock of bucket `b`, the bucket of `sk`.
unsafe fn unlink(b: u32, sk: *const Sock) -> Option<*mut Entry> {
    let mut prev: &AtomicUsize = Table::head(b);
    loop {
        let e = Link(prev.load(Ordering::Relaxed)).entry()?;
        // SAFETY: under the bucket lock, every entry of the chain is live (entries are unlinked under it
        // before they are freed).
        let e_ref = unsafe { &*e };
        if e_ref.sk.load(Ordering::Relaxed) == sk.cast_mut() {
            // Readers standing on `e` go on through its `next`, which is left as it is.
            prev.store(e_ref.next.load(Ordering::Relaxed), Ordering::Release);
            return Some(e);
        }
        prev = &e_ref.next;
    }
}

/// Frees `e`, just unlinked from the table, and counts it.
///
/// # Safety
///
/// `e` was allocated by [`insert`] and has just been unlinked from the table by the caller.
unsafe fn free_removed(sk: *const Sock, e: *mut Entry) {
    // SAFETY: per the function's contract.
    unsafe { free_entry_now(e) };
    stats::inc(sk, Counter::Ip6AddressFree);
}

/// Stores `toa` for `sk`. Runs in softirq context (the `syn_recv_sock` return probe).
///
/// An entry already present for `sk` can only be a stale one left by an earlier socket at the same
/// address whose destruction was missed: it is replaced, never returned for the new socket.
///
/// # Safety
///
/// `sk` is a live, connected child socket.
pub(crate) unsafe fn insert(sk: *const Sock, toa: &Toa) -> Result {
    let client = PackedEndpoint::pack(toa.client);
    let mut flags = if client.v6 != 0 { FLAG_CLIENT_V6 } else { 0 };
    if toa.vip.is_some() {
        flags |= FLAG_HAS_VIP;
    }
    let data = EntryData {
        // SAFETY: per the function's contract.
        tag: unsafe { SkTag::of(sk) },
        client_port: client.port,
        origin: pack_origin(toa.origin),
        flags,
        client_addr: client.addr,
    };
    // SAFETY: the cache was created by `Store::new` for the type written into the object below (an
    // `EntryWithVip` exactly when `flags` has `FLAG_HAS_VIP`); `GFP_ATOMIC` as this runs in softirq.
    let raw = unsafe { ffi::toa_kmem_cache_alloc_atomic(cache_of(toa.vip.is_some())) };
    if raw.is_null() {
        stats::inc(sk, Counter::StoreInsertFailed);
        return Err(ENOMEM);
    }
    let e = raw.cast::<Entry>();
    // SAFETY: `raw` is an object of the right size and alignment for the type written. It may be a
    // recycled entry that RCU readers still look at: the data is written (volatile: readers race with it
    // and discard what they read, see `Entry::snapshot`), then the socket pointer is published after a
    // write barrier.
    unsafe {
        data.store(core::ptr::addr_of_mut!((*e).data));
        if let Some(vip) = toa.vip {
            PackedEndpoint::pack(vip)
                .store(core::ptr::addr_of_mut!((*raw.cast::<EntryWithVip>()).vip));
        }
        // smp_wmb(): the data before the pointer that makes it an entry of `sk`.
        fence(Ordering::Release);
        (*e).sk.store(sk.cast_mut(), Ordering::Relaxed);
    }
    stats::inc(sk, Counter::Ip6AddressAlloc);
    let b = Table::bucket_of(sk);
    let head = Table::head(b);
    let stale = {
        let _guard = BucketGuard::lock(b);
        // SAFETY: the bucket's lock is held.
        let stale = unsafe { unlink(b, sk) };
        // SAFETY: `e` is ours until published; a reader standing on it (a recycled object) follows `next`
        // into this chain, whose nulls marker tells it where it is. The release store publishes the entry
        // (rcu_assign_pointer).
        unsafe {
            (*e).next
                .store(head.load(Ordering::Relaxed), Ordering::Relaxed)
        };
        head.store(Link::to(e).0, Ordering::Release);
        stale
    };
    if let Some(old) = stale {
        stats::inc(sk, Counter::StoreStaleReplaced);
        // SAFETY: `old` was unlinked under the lock by this call, which makes it its only owner.
        unsafe { free_removed(sk, old) };
    }
    Ok(())
}

/// Whether `sk` has an entry: a lockless look, for the destructor hook, which takes the bucket lock only
/// then (most sockets have no entry). Safe in any context, a breakpoint's NMI-like one included (RCU and
/// plain loads only).
///
/// # Safety
///
/// `sk`'s memory is live.
#[inline(always)]
pub(crate) unsafe fn contains(sk: *const Sock) -> bool {
    // SAFETY: per the function's contract; the callback only says "found".
    unsafe { rcu_find(sk, |_| Ok(Some(()))) }.is_some()
}

/// Removes and frees the entry of `sk`, if any. Runs from `inet_sock_destruct`, in any context but a
/// breakpoint's (it takes the bucket lock).
pub(crate) fn remove(sk: *const Sock) {
    let b = Table::bucket_of(sk);
    let removed = {
        let _guard = BucketGuard::lock(b);
        // SAFETY: the bucket's lock is held.
        unsafe { unlink(b, sk) }
    };
    if let Some(e) = removed {
        // SAFETY: unlinked under the lock by this call, which makes it the entry's only owner.
        unsafe { free_removed(sk, e) };
    }
}

/// The TOA stored for `sk`, or `None` when `sk` has no entry of its own. Safe in any context, a
/// breakpoint's NMI-like one included (RCU and plain loads only). An entry is inserted before its socket
/// is visible to anyone (in `syn_recv_sock`, before the socket is queued for `accept()`), so no later call
/// on the socket can miss it.
///
/// # Safety
///
/// `sk` is a live socket.
#[inline(always)]
pub(crate) unsafe fn lookup(sk: *const Sock) -> Option<Toa> {
    // SAFETY: per the function's contract; `found` gets entries reached under RCU (`rcu_find`), copied
    // through `snapshot`, which checks that the entry still belongs to `sk`.
    unsafe {
        rcu_find(sk, |e| match Entry::snapshot(e) {
            Some(s) if s.sk == sk => Ok((s.tag == SkTag::of(sk)).then_some(s.toa)),
            // Freed or reused under us: the entry of `sk`, if any, is elsewhere.
            _ => Err(()),
        })
    }
}

/// Walks the chain of `sk`'s bucket under `rcu_read_lock` for an entry whose socket is `sk`, and returns
/// what `found` makes of it (`found` returns `Err` to have the walk start over: the entry changed under
/// it), or `None` when there is no such entry.
///
/// # Safety
///
/// `sk`'s memory is live. `found` is called inside the RCU section with an entry object reached in it,
/// possibly freed or reused since (it stays an entry object until the section ends).
#[inline(always)]
unsafe fn rcu_find<T>(
    sk: *const Sock,
    found: impl Fn(*mut Entry) -> core::result::Result<Option<T>, ()>,
) -> Option<T> {
    let b = Table::bucket_of(sk);
    let head = Table::head(b);
    // SAFETY: the chain is read inside the RCU section: every object reached stays an entry object
    // (typesafe by RCU) whose `next` and `sk` are never overwritten by the allocator.
    unsafe {
        ffi::toa_rcu_read_lock();
        let r = 'walk: loop {
            // Acquire loads of the links: rcu_dereference().
            let mut link = Link(head.load(Ordering::Acquire));
            while let Some(e) = link.entry() {
                if (*e).sk.load(Ordering::Relaxed) == sk.cast_mut() {
                    match found(e) {
                        Ok(r) => break 'walk r,
                        Err(()) => continue 'walk,
                    }
                }
                link = Link((*e).next.load(Ordering::Acquire));
            }
            if link != Link::nulls(b) {
                // Carried to another chain by an entry reused under us: start over.
                continue;
            }
            break None;
        };
        ffi::toa_rcu_read_unlock();
        r
    }
}

/// The entries of a chain, in order, for a walker that holds the chain's bucket lock (so the chain does
/// not change and its entries are live while it walks).
pub(crate) struct LockedChain(Link);

impl LockedChain {
    /// The chain of bucket `b`.
    ///
    /// # Safety
    ///
    /// The caller holds the lock of bucket `b` for as long as it uses the iterator, or is the table's only
    /// user left ([`Store`]'s drop). An entry may be freed once yielded: its `next` was read before.
    pub(crate) unsafe fn of(b: u32) -> Self {
        LockedChain(Link(Table::head(b).load(Ordering::Relaxed)))
    }

    /// The entries after `e` in its chain.
    ///
    /// # Safety
    ///
    /// `e` is an entry of the table, and the caller holds its bucket's lock for as long as it uses the
    /// iterator.
    pub(crate) unsafe fn after(e: *const Entry) -> Self {
        // SAFETY: per the function's contract `e` is live.
        LockedChain(Link(unsafe { (*e).next.load(Ordering::Relaxed) }))
    }
}

impl Iterator for LockedChain {
    type Item = *mut Entry;

    fn next(&mut self) -> Option<*mut Entry> {
        let e = self.0.entry()?;
        // SAFETY: under the bucket lock (the constructors' contract), `e` is live.
        self.0 = Link(unsafe { (*e).next.load(Ordering::Relaxed) });
        Some(e)
    }
}

/// Whether bucket `b` has no entry, without its lock (a hint: the dump skips empty buckets without
/// taking their lock, as `/proc/net/tcp` does).
pub(crate) fn bucket_is_empty(b: u32) -> bool {
    Link(Table::head(b).load(Ordering::Relaxed))
        .entry()
        .is_none()
}

/// A consistent copy of an entry, taken by [`Entry::snapshot`].
pub(crate) struct Snapshot {
    /// The socket the entry belonged to when copied.
    pub(crate) sk: *const Sock,
    tag: SkTag,
    /// The TOA stored for it.
    pub(crate) toa: Toa,
}

impl Entry {
    /// Copies the entry at `e`, or `None` if it is free or was reused while it was being copied.
    ///
    /// # Safety
    ///
    /// `e` was reached through the table in the caller's current RCU read-side section (so it is an
    /// entry object, possibly free or recycled, until the section ends).
    #[inline(always)]
    pub(crate) unsafe fn snapshot(e: *const Entry) -> Option<Snapshot> {
        // SAFETY: per the function's contract the object stays a readable entry; the reads race with a
        // writer recycling it and are volatile; `FLAG_HAS_VIP` is the same for every object of a cache
        // (and the free pointer never covers `flags`), so an object with it is an `EntryWithVip`.
        unsafe {
            let sk = (*e).sk.load(Ordering::Relaxed);
            if sk.is_null() {
                return None;
            }
            // smp_rmb(): the pointer before the data (pairs with the write barrier in `insert`).
            fence(Ordering::Acquire);
            let data = EntryData::load(core::ptr::addr_of!((*e).data));
            let vip = if data.flags & FLAG_HAS_VIP != 0 {
                Some(PackedEndpoint::load(core::ptr::addr_of!(
                    (*e.cast::<EntryWithVip>()).vip
                )))
            } else {
                None
            };
            // smp_rmb(): the data before the pointer again (pairs with `free_entry_now`).
            fence(Ordering::Acquire);
            if (*e).sk.load(Ordering::Relaxed) != sk {
                return None;
            }
            Some(Snapshot {
                sk,
                tag: data.tag,
                toa: Toa {
                    client: PackedEndpoint {
                        addr: data.client_addr,
                        port: data.client_port,
                        v6: u8::from(data.flags & FLAG_CLIENT_V6 != 0),
                        _pad: [0; 5],
                    }
                    .unpack(),
                    vip: vip.map(|v| v.unpack()),
                    origin: unpack_origin(data.origin),
                },
            })
        }
    }

    /// The socket of the entry at `e` (null if the object is free).
    ///
    /// # Safety
    ///
    /// As for [`Entry::snapshot`], or `e` is in a bucket whose lock the caller holds.
    pub(crate) unsafe fn sk_of(e: *const Entry) -> *const Sock {
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
