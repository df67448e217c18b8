// SPDX-License-Identifier: GPL-2.0

//! The per-socket store: which TOA each connection arrived with (Tencent calls it the `toa_nat64_peer`
//! store).
//!
//! An rhashtable (the kernel's resizable RCU hash table, so lookups stay flat at any size) keyed by the
//! `struct sock` address. Lookups take no lock, only `rcu_read_lock`; inserts and removals use the
//! table's per-bucket locks. An entry is inserted when the kernel keeps a new child socket
//! (`syn_recv_sock`) and removed in `inet_sock_destruct`, before the socket's memory can be reused; it is
//! freed after an RCU grace period. Should a destruct ever be missed (a probe that could not run), the
//! entry also records the connection's identity ([`SkTag`]: ports and peer address) and a lookup only
//! answers for a socket with that identity, so a later socket at the same address never gets it.
//!
//! Every entry allocated counts `ip6_address_alloc`, every entry freed `ip6_address_free`.

use crate::ffi::{self, RcuHead, RhashHead, Sock};
use crate::stats::{self, Counter};
use crate::wire::{Endpoint, Origin, Toa};
use core::ffi::c_void;
use kernel::alloc::flags::GFP_ATOMIC;
use kernel::prelude::*;

/// `-EEXIST`, as returned by `rhashtable_lookup_insert_fast`.
const EEXIST_RET: i32 = -17;

/// The identity of a connected socket, fixed at its creation: local port, peer port and the last 32 bits
/// of the peer address (the whole address for IPv4).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SkTag {
    ports: u32,
    peer: [u8; 4],
}

impl SkTag {
    /// The tag of `sk`.
    ///
    /// # Safety
    ///
    /// `sk` is a live socket (or, under RCU, a TCP socket's memory).
    unsafe fn of(sk: *const Sock) -> SkTag {
        // SAFETY: per the function's contract; plain field reads.
        unsafe {
            let ports = (u32::from(ffi::toa_sk_num(sk)) << 16) | u32::from(ffi::toa_sk_dport(sk));
            let peer = if ffi::toa_sk_family(sk) == ffi::AF_INET {
                ffi::toa_sk_daddr(sk).to_ne_bytes()
            } else {
                let a = &*ffi::toa_sk_v6_daddr(sk);
                [a[12], a[13], a[14], a[15]]
            };
            SkTag { ports, peer }
        }
    }
}

/// What toa keeps per socket: 64 bytes on 64-bit (a `kmalloc-64` object); an entry whose TOA carries a
/// VIP is allocated as an [`EntryWithVip`] (88 bytes, `kmalloc-96`) and says so in `has_vip`.
///
/// Layout contract with `toa_store_params` in `src/toa_shim.c`: the `rhash_head` at offset 0, the key
/// (the `struct sock *`) right after it.
#[repr(C)]
pub(crate) struct Entry {
    node: RhashHead,
    sk: *const Sock,
    rcu: RcuHead,
    tag: SkTag,
    /// The real client (CIP, cport).
    pub(crate) client: Endpoint,
    /// The format that carried it.
    pub(crate) origin: Origin,
    has_vip: bool,
}

/// An [`Entry`] followed by the VIP the TOA carried (IP-option TOA of seed 004, ByteDance's 254/16).
#[repr(C)]
struct EntryWithVip {
    entry: Entry,
    vip: Endpoint,
}

const _: () = assert!(core::mem::offset_of!(Entry, node) == 0);
const _: () = assert!(core::mem::offset_of!(Entry, sk) == core::mem::size_of::<*mut RhashHead>());
const _: () = assert!(core::mem::size_of::<Entry>() <= 64);

/// Owner of the table: initialised by [`Store::new`]; on drop, every remaining entry is freed.
pub(crate) struct Store(());

impl Store {
    /// Initialises the (global) table.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: initialises the shim's static table once; the module owns it until `drop`.
        let ret = unsafe { ffi::toa_store_init() };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(Store(()))
    }
}

/// Frees `e` at once, without touching its socket.
///
/// # Safety
///
/// `e` was allocated by [`insert`] and nothing references it any more.
unsafe fn drop_entry(e: *mut Entry) {
    // SAFETY: per the function's contract, `e` is a leaked `KBox` of the type `has_vip` tells.
    unsafe {
        if (*e).has_vip {
            drop(KBox::from_raw(e.cast::<EntryWithVip>()));
        } else {
            drop(KBox::from_raw(e));
        }
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
    }
}

/// Frees `e` after a grace period (readers may still hold it).
///
/// # Safety
///
/// `e` was allocated by [`insert`] and has just been unlinked from the table by the caller.
unsafe fn free_after_grace_period(e: *mut Entry) {
    // SAFETY: `e` is a live `kmalloc` object (a `KBox`) no longer reachable from the table; its `rcu`
    // field is unused until now. `kvfree_call_rcu` only calls `kfree`, never module code.
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
        client: toa.client,
        origin: toa.origin,
        has_vip: toa.vip.is_some(),
    };
    let allocated = match toa.vip {
        Some(vip) => KBox::new(EntryWithVip { entry, vip }, GFP_ATOMIC)
            .map(|b| KBox::into_raw(b).cast::<Entry>()),
        None => KBox::new(entry, GFP_ATOMIC).map(KBox::into_raw),
    };
    let e = allocated.inspect_err(|_| stats::inc(sk, Counter::StoreInsertFailed))?;
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
    /// The VIP (virtual address and port the client connected to), when the TOA carried one.
    pub(crate) fn vip(&self) -> Option<Endpoint> {
        if self.has_vip {
            let e: *const Entry = self;
            // SAFETY: an entry with `has_vip` was allocated as an `EntryWithVip`, which starts with it.
            Some(unsafe { (*e.cast::<EntryWithVip>()).vip })
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
