// SPDX-License-Identifier: GPL-2.0

//! The per-socket store: which TOA each connection arrived with (Tencent calls it the `toa_nat64_peer`
//! store).
//!
//! An rhashtable (the kernel's resizable RCU hash table, so lookups stay flat at any size) keyed by the
//! `struct sock` address. Lookups take no lock, only `rcu_read_lock`; inserts and removals use the
//! table's per-bucket locks. An entry is inserted when the kernel keeps a new child socket
//! (`syn_recv_sock`) and removed in `inet_sock_destruct`, before the socket's memory can be reused.
//!
//! Entries live in `SLAB_TYPESAFE_BY_RCU` slab caches, the scheme of TCP's own socket lookups: a removed
//! entry is freed at once and its memory may be reused for another entry while an RCU reader still looks
//! at it, but it stays an entry (never other memory) until the reader's section ends. So there is no
//! `rcu_head` in an entry (40 bytes, not 56), and readers never trust what they read without checking it:
//! an entry's socket pointer is null while the object is free and is published last when it is reused
//! (after its data, with a write barrier); a reader reads the pointer, copies the data, and reads the
//! pointer again ([`Entry::snapshot`]), as a seqcount reader does. The rhashtable lookup itself copes with
//! an entry moving to another chain under it (each chain ends in its own nulls marker and the lookup
//! restarts).
//!
//! Should a destruct ever be missed (a probe that could not run), the entry also records the connection's
//! identity ([`SkTag`]: its local and peer ports) and a lookup only answers for a socket with that
//! identity: a later socket at the same address gets it only if it also has the same two ports.
//!
//! Every entry allocated counts `ip6_address_alloc`, every entry freed `ip6_address_free`.

use crate::ffi::{self, KmemCache, RhashHead, Sock};
use crate::stats::{self, Counter};
use crate::wire::{Addr, Endpoint, Origin, Toa};
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicPtr, Ordering};
use kernel::prelude::*;

/// `-EEXIST`, as returned by `rhashtable_lookup_insert_fast`.
const EEXIST_RET: i32 = -17;

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

/// The parts of an entry that RCU readers copy while a writer may be recycling the object: 24 bytes,
/// 8-aligned, no padding, every bit pattern valid. They are moved as three volatile 8-byte accesses
/// (a racy copy that the reader validates afterwards, like a seqcount reader's), not byte by byte.
///
/// # Safety
///
/// Implemented only for types with exactly that layout.
unsafe trait Words: Copy {
    /// Copies `*src`.
    ///
    /// # Safety
    ///
    /// `src` points to readable memory holding a `Self` (possibly being rewritten concurrently).
    unsafe fn load(src: *const Self) -> Self {
        let mut w = [0u64; 3];
        for (i, word) in w.iter_mut().enumerate() {
            // SAFETY: per the contracts, `src` is 8-aligned and 24 bytes long.
            *word = unsafe { src.cast::<u64>().add(i).read_volatile() };
        }
        // SAFETY: same size, and every bit pattern is a valid `Self` (the trait's contract).
        unsafe { core::mem::transmute_copy(&w) }
    }

    /// Writes `self` to `dst`.
    ///
    /// # Safety
    ///
    /// `dst` points to writable memory for a `Self`.
    unsafe fn store(self, dst: *mut Self) {
        // SAFETY: same size, and `Self` has no padding (the trait's contract).
        let w: [u64; 3] = unsafe { core::mem::transmute_copy(&self) };
        for (i, word) in w.into_iter().enumerate() {
            // SAFETY: per the contracts, `dst` is 8-aligned and 24 bytes long.
            unsafe { dst.cast::<u64>().add(i).write_volatile(word) };
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

/// [`Origin`] in one byte: the TCP option kind (never 0 or 1, which are EOL and NOP), or these two.
const ORIGIN_IPV4_OPTION: u8 = 0;
const ORIGIN_IPV6_DEST_OPTION: u8 = 1;

fn pack_origin(o: Origin) -> u8 {
    match o {
        Origin::TcpOption(kind) => kind,
        Origin::Ipv4Option => ORIGIN_IPV4_OPTION,
        Origin::Ipv6DestOption => ORIGIN_IPV6_DEST_OPTION,
    }
}

/// Entry flags: the client address is IPv6.
const FLAG_CLIENT_V6: u8 = 1;
/// Entry flags: the entry is an [`EntryWithVip`].
const FLAG_HAS_VIP: u8 = 2;

/// What toa keeps per socket: 40 bytes on 64-bit, in the `toa_entry` slab cache (`/proc/slabinfo`); an
/// entry whose TOA carries a VIP is an [`EntryWithVip`] (64 bytes, cache `toa_entry_vip`).
///
/// Layout contract with `toa_store_params` in `src/toa_shim.c`: the `rhash_head` at offset 0, the key
/// (the `struct sock *`) right after it. While the object is free, the slab allocator keeps its free
/// pointer in the first 8 bytes of `data.client_addr` ([`FREEPTR_OFFSET`]): `node` (which RCU readers may
/// still follow), `sk` (null while free) and `data.flags` (which cache the object is of) stay intact.
#[repr(C)]
pub(crate) struct Entry {
    /// Written by the rhashtable only: readers may be following it even while the object is free.
    node: RhashHead,
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

/// An [`Entry`] followed by the VIP the TOA carried (IP-option TOA of seed 004, ByteDance's 254/16).
#[repr(C)]
struct EntryWithVip {
    entry: Entry,
    vip: PackedEndpoint,
}

/// Where the slab allocator keeps its free pointer in a free entry (`kmem_cache_args::freeptr_offset`).
const FREEPTR_OFFSET: usize =
    core::mem::offset_of!(Entry, data) + core::mem::offset_of!(EntryData, client_addr);

const _: () = assert!(core::mem::offset_of!(Entry, node) == 0);
const _: () = assert!(core::mem::offset_of!(Entry, sk) == core::mem::size_of::<*mut RhashHead>());
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

/// Owner of the table and of its slab caches: initialised by [`Store::new`]; on drop, every remaining
/// entry is freed, then the caches are destroyed.
pub(crate) struct Store {
    // Dropped after `drop` below has emptied the table: caches last.
    _entries: SlabCache,
    _entries_vip: SlabCache,
}

impl Store {
    /// Initialises the (global) table and the entry caches.
    pub(crate) fn new() -> Result<Self> {
        let entries = SlabCache::new::<Entry>(c"toa_entry")?;
        let entries_vip = SlabCache::new::<EntryWithVip>(c"toa_entry_vip")?;
        // SAFETY: initialises the shim's static table once; the module owns it until `drop`.
        let ret = unsafe { ffi::toa_store_init() };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        ENTRY_CACHE.store(entries.0.as_ptr(), Ordering::Relaxed);
        ENTRY_VIP_CACHE.store(entries_vip.0.as_ptr(), Ordering::Relaxed);
        Ok(Store {
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

/// `rhashtable_free_and_destroy` callback: frees one entry left at unload.
///
/// # Safety
///
/// Only called by `rhashtable_free_and_destroy` in [`Store::drop`], once per entry still in the table.
unsafe extern "C" fn free_entry(ptr: *mut c_void, _arg: *mut c_void) {
    // SAFETY: every object in the table comes from `insert`, and the table is being destroyed with no
    // reader left, so this is its last owner. Its socket is not touched: once the destructor probe is
    // gone, sockets die without taking their entries along, so the socket may be freed memory already.
    // (Not counted either: the counters of this module instance end with it.)
    unsafe { free_entry_now(ptr.cast::<Entry>()) };
}

impl Drop for Store {
    fn drop(&mut self) {
        // The owner unregisters every hook, /proc file and sockopt handler first: no new entry can be
        // inserted and no new reader can start. Wait for the readers already inside an RCU section.
        // SAFETY: `synchronize_rcu` may sleep; module exit runs in process context.
        unsafe { ffi::synchronize_rcu() };
        // SAFETY: the table was initialised by `new`; no one else uses it any more.
        unsafe {
            ffi::rhashtable_free_and_destroy(
                core::ptr::addr_of_mut!(ffi::toa_store_table),
                free_entry,
                core::ptr::null_mut(),
            )
        };
        ENTRY_CACHE.store(core::ptr::null_mut(), Ordering::Relaxed);
        ENTRY_VIP_CACHE.store(core::ptr::null_mut(), Ordering::Relaxed);
        // The fields drop next: the caches are destroyed (after a grace period).
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
    // recycled entry that RCU readers still look at: `node` is left alone (the rhashtable sets it on
    // insert), the data is written (volatile: readers race with it and discard what they read, see
    // `Entry::snapshot`), then the socket pointer is published after a write barrier.
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
    // SAFETY: `e` is a valid, unlinked entry.
    let mut ret = unsafe { ffi::toa_store_insert(core::ptr::addr_of_mut!((*e).node)) };
    if ret == EEXIST_RET {
        // SAFETY: the lookup runs under `rcu_read_lock`; `old` is only used inside that section.
        ret = unsafe {
            ffi::toa_rcu_read_lock();
            let old = ffi::toa_store_lookup(sk).cast::<Entry>();
            let r = if old.is_null() {
                // Removed meanwhile: insert into the free slot.
                ffi::toa_store_insert(core::ptr::addr_of_mut!((*e).node))
            } else {
                let r = ffi::toa_store_replace(
                    core::ptr::addr_of_mut!((*old).node),
                    core::ptr::addr_of_mut!((*e).node),
                );
                if r == 0 {
                    stats::inc(sk, Counter::StoreStaleReplaced);
                    free_removed(sk, old);
                }
                r
            };
            ffi::toa_rcu_read_unlock();
            r
        };
    }
    if ret < 0 {
        // SAFETY: `e` never became reachable from the table.
        unsafe { free_entry_now(e) };
        stats::inc(sk, Counter::Ip6AddressFree);
        stats::inc(sk, Counter::StoreInsertFailed);
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// Removes and frees the entry of `sk`, if any. Runs from `inet_sock_destruct`, in any context.
pub(crate) fn remove(sk: *const Sock) {
    // SAFETY: lookup and removal under `rcu_read_lock`; a successful removal makes this the entry's only
    // remover, which frees it.
    unsafe {
        ffi::toa_rcu_read_lock();
        let e = ffi::toa_store_lookup(sk).cast::<Entry>();
        if !e.is_null() && ffi::toa_store_remove(core::ptr::addr_of_mut!((*e).node)) == 0 {
            free_removed(sk, e);
        }
        ffi::toa_rcu_read_unlock();
    }
}

/// The TOA stored for `sk`, or `None` when `sk` has no entry of its own.
///
/// # Safety
///
/// `sk` is a live socket.
#[inline(always)]
pub(crate) unsafe fn lookup(sk: *const Sock) -> Option<Toa> {
    // SAFETY: the entry is read under `rcu_read_lock`, through `snapshot`, which checks that it still
    // belongs to `sk`; `sk` is live per the function's contract.
    unsafe {
        ffi::toa_rcu_read_lock();
        let e = ffi::toa_store_lookup(sk).cast::<Entry>();
        let r = if e.is_null() {
            None
        } else {
            Entry::snapshot(e).filter(|s| s.sk == sk && s.tag == SkTag::of(sk))
        };
        ffi::toa_rcu_read_unlock();
        r.map(|s| s.toa)
    }
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

    /// The socket of the entry at `e` (null if the object is free), for a walker that only compares it
    /// or reads a TCP socket's fields under RCU (TCP sockets are `SLAB_TYPESAFE_BY_RCU` too).
    ///
    /// # Safety
    ///
    /// As for [`Entry::snapshot`].
    pub(crate) unsafe fn sk_of(e: *const Entry) -> *const Sock {
        // SAFETY: per the function's contract.
        unsafe { (*e).sk.load(Ordering::Relaxed) }
    }
}

fn unpack_origin(o: u8) -> Origin {
    match o {
        ORIGIN_IPV4_OPTION => Origin::Ipv4Option,
        ORIGIN_IPV6_DEST_OPTION => Origin::Ipv6DestOption,
        kind => Origin::TcpOption(kind),
    }
}
