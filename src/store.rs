// SPDX-License-Identifier: GPL-2.0

//! The per-socket store: which TOA each connection arrived with (Tencent calls it the `toa_nat64_peer`
//! store).
//!
//! An rhashtable (the kernel's resizable RCU hash table, so lookups stay flat at any size) keyed by the
//! `struct sock` address. Lookups take no lock, only `rcu_read_lock`; inserts and removals use the
//! table's per-bucket locks. An entry is inserted when the kernel keeps a new child socket
//! (`syn_recv_sock`) and removed in `inet_sock_destruct`, before the socket's memory can be reused; it is
//! freed after an RCU grace period. Should a destruct ever be missed (a probe that could not run), the
//! entry also records the connection's identity ([`SkTag`]: its local and peer ports) and a lookup only
//! answers for a socket with that identity: a later socket at the same address gets it only if it also has
//! the same two ports.
//!
//! Every entry allocated counts `ip6_address_alloc`, every entry freed `ip6_address_free`.

use crate::ffi::{self, KmemCache, RcuHead, RhashHead, Sock};
use crate::stats::{self, Counter};
use crate::wire::{Addr, Endpoint, Origin, Toa};
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// `-EEXIST`, as returned by `rhashtable_lookup_insert_fast`.
const EEXIST_RET: i32 = -17;

/// The identity of a connected socket, fixed at its creation: its local port (high 16 bits) and its
/// peer port (low 16 bits), host byte order.
#[derive(Clone, Copy, PartialEq, Eq)]
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

/// An [`Endpoint`] in 19 bytes: the address (IPv4 in the first 4 bytes), its port (host order) and
/// whether the address is IPv6.
#[derive(Clone, Copy)]
#[repr(C)]
struct PackedEndpoint {
    addr: [u8; 16],
    port: u16,
    v6: bool,
}

impl PackedEndpoint {
    fn pack(e: Endpoint) -> Self {
        let mut addr = [0; 16];
        let v6 = match e.addr {
            Addr::V4(a) => {
                addr[..4].copy_from_slice(&a);
                false
            }
            Addr::V6(a) => {
                addr = a;
                true
            }
        };
        PackedEndpoint {
            addr,
            port: e.port,
            v6,
        }
    }

    fn unpack(&self) -> Endpoint {
        let addr = if self.v6 {
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

/// What toa keeps per socket: 56 bytes on 64-bit, in the `toa_entry` slab cache (`/proc/slabinfo`); an
/// entry whose TOA carries a VIP is an [`EntryWithVip`] (80 bytes, cache `toa_entry_vip`).
///
/// Layout contract with `toa_store_params` in `src/toa_shim.c`: the `rhash_head` at offset 0, the key
/// (the `struct sock *`) right after it.
#[repr(C)]
pub(crate) struct Entry {
    node: RhashHead,
    sk: *const Sock,
    rcu: RcuHead,
    tag: SkTag,
    /// The real client (CIP, cport): address, IPv4 in the first 4 bytes.
    client_addr: [u8; 16],
    /// The real client's port, host order.
    client_port: u16,
    /// The format that carried it (see [`pack_origin`]).
    origin: u8,
    /// `FLAG_*`.
    flags: u8,
}

/// An [`Entry`] followed by the VIP the TOA carried (IP-option TOA of seed 004, ByteDance's 254/16).
#[repr(C)]
struct EntryWithVip {
    entry: Entry,
    vip: PackedEndpoint,
}

const _: () = assert!(core::mem::offset_of!(Entry, node) == 0);
const _: () = assert!(core::mem::offset_of!(Entry, sk) == core::mem::size_of::<*mut RhashHead>());
const _: () = assert!(core::mem::size_of::<Entry>() <= 56);

/// A slab cache of its own (shown by name in `/proc/slabinfo`); destroyed when dropped, which waits
/// for the objects still queued for freeing after a grace period (`kvfree_rcu_barrier`).
struct SlabCache(NonNull<KmemCache>);

impl SlabCache {
    /// A cache of `T` objects named `name`.
    fn new<T>(name: &'static core::ffi::CStr) -> Result<Self> {
        // SAFETY: `name` is a static C string, as the cache keeps the pointer; size and alignment are
        // those of `T`, whose size is not 0.
        let c = unsafe {
            ffi::toa_kmem_cache_create(
                name.as_ptr(),
                core::mem::size_of::<T>() as u32,
                core::mem::align_of::<T>() as u32,
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
        // SAFETY: created by `new`; its owner ([`Store`]) has freed every object or queued it for freeing.
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

/// Frees `e` at once, without touching its socket.
///
/// # Safety
///
/// `e` was allocated by [`insert`] and nothing references it any more.
unsafe fn drop_entry(e: *mut Entry) {
    // SAFETY: per the function's contract, `e` is an object of the cache `flags` tells; the entry types
    // own nothing, so freeing the memory is all there is to drop.
    unsafe { ffi::kmem_cache_free(cache_of((*e).flags & FLAG_HAS_VIP != 0), e.cast()) };
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
    unsafe { drop_entry(ptr.cast::<Entry>()) };
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
        // The fields drop next: the caches are destroyed once the entries queued by
        // `free_after_grace_period` are freed.
    }
}

/// Frees `e` after a grace period (readers may still hold it).
///
/// # Safety
///
/// `e` was allocated by [`insert`] and has just been unlinked from the table by the caller.
unsafe fn free_after_grace_period(e: *mut Entry) {
    // SAFETY: `e` is a live slab object no longer reachable from the table; its `rcu` field is unused
    // until now. `kvfree_call_rcu` only calls `kfree`, never module code, and `kfree` frees objects of
    // any cache; destroying the cache waits for it (`kvfree_rcu_barrier`).
    let sk = unsafe {
        let sk = (*e).sk;
        ffi::toa_kvfree_rcu(core::ptr::addr_of_mut!((*e).rcu), e.cast());
        sk
    };
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
    let mut flags = if client.v6 { FLAG_CLIENT_V6 } else { 0 };
    if toa.vip.is_some() {
        flags |= FLAG_HAS_VIP;
    }
    let entry = Entry {
        node: RhashHead {
            next: core::ptr::null_mut(),
        },
        sk,
        rcu: RcuHead {
            next: core::ptr::null_mut(),
            func: core::ptr::null(),
        },
        // SAFETY: per the function's contract.
        tag: unsafe { SkTag::of(sk) },
        client_addr: client.addr,
        client_port: client.port,
        origin: pack_origin(toa.origin),
        flags,
    };
    // SAFETY: the cache was created by `Store::new` for the type written into the object below (an
    // `EntryWithVip` exactly when `flags` has `FLAG_HAS_VIP`); `GFP_ATOMIC` as this runs in softirq.
    let raw = unsafe { ffi::toa_kmem_cache_alloc_atomic(cache_of(toa.vip.is_some())) };
    if raw.is_null() {
        stats::inc(sk, Counter::StoreInsertFailed);
        return Err(ENOMEM);
    }
    // SAFETY: `raw` is a fresh object of the right size and alignment for the type written.
    unsafe {
        match toa.vip {
            Some(vip) => raw.cast::<EntryWithVip>().write(EntryWithVip {
                entry,
                vip: PackedEndpoint::pack(vip),
            }),
            None => raw.cast::<Entry>().write(entry),
        }
    }
    let e = raw.cast::<Entry>();
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
                    free_after_grace_period(old);
                }
                r
            };
            ffi::toa_rcu_read_unlock();
            r
        };
    }
    if ret < 0 {
        // SAFETY: `e` never became reachable from the table: this is its only owner.
        unsafe { drop_entry(e) };
        stats::inc(sk, Counter::Ip6AddressFree);
        stats::inc(sk, Counter::StoreInsertFailed);
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// Removes and frees the entry of `sk`, if any. Runs from `inet_sock_destruct`, in any context.
pub(crate) fn remove(sk: *const Sock) {
    // SAFETY: lookup and removal under `rcu_read_lock`; a successful removal makes this the entry's only
    // remover, which hands it to RCU.
    unsafe {
        ffi::toa_rcu_read_lock();
        let e = ffi::toa_store_lookup(sk).cast::<Entry>();
        if !e.is_null() && ffi::toa_store_remove(core::ptr::addr_of_mut!((*e).node)) == 0 {
            free_after_grace_period(e);
        }
        ffi::toa_rcu_read_unlock();
    }
}

/// Calls `f` with the entry of `sk` under `rcu_read_lock`, and returns what `f` returns; `None` when
/// `sk` has no entry of its own. `f` must not sleep.
///
/// # Safety
///
/// `sk` is a live socket.
pub(crate) unsafe fn with_entry<R>(sk: *const Sock, f: impl FnOnce(&Entry) -> R) -> Option<R> {
    // SAFETY: the entry stays valid until `rcu_read_unlock` (it is freed after a grace period), and it is
    // only borrowed inside that section; `sk` is live per the function's contract.
    unsafe {
        ffi::toa_rcu_read_lock();
        let e = ffi::toa_store_lookup(sk).cast::<Entry>();
        let r = if e.is_null() || (*e).tag != SkTag::of(sk) {
            None
        } else {
            Some(f(&*e))
        };
        ffi::toa_rcu_read_unlock();
        r
    }
}

impl Entry {
    /// The real client (CIP, cport).
    pub(crate) fn client(&self) -> Endpoint {
        PackedEndpoint {
            addr: self.client_addr,
            port: self.client_port,
            v6: self.flags & FLAG_CLIENT_V6 != 0,
        }
        .unpack()
    }

    /// The format that carried the TOA.
    pub(crate) fn origin(&self) -> Origin {
        match self.origin {
            ORIGIN_IPV4_OPTION => Origin::Ipv4Option,
            ORIGIN_IPV6_DEST_OPTION => Origin::Ipv6DestOption,
            kind => Origin::TcpOption(kind),
        }
    }

    /// The VIP (virtual address and port the client connected to), when the TOA carried one.
    pub(crate) fn vip(&self) -> Option<Endpoint> {
        if self.flags & FLAG_HAS_VIP != 0 {
            let e: *const Entry = self;
            // SAFETY: an entry with `FLAG_HAS_VIP` was allocated as an `EntryWithVip`, which starts with it.
            Some(unsafe { (*e.cast::<EntryWithVip>()).vip.unpack() })
        } else {
            None
        }
    }

    /// The socket this entry belongs to (only compared or read under RCU; TCP sockets are
    /// `SLAB_TYPESAFE_BY_RCU`, so the memory is a socket for the whole read-side section).
    pub(crate) fn sk(&self) -> *const Sock {
        self.sk
    }
}
