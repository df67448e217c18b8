// SPDX-License-Identifier: GPL-2.0

//! Synchronisation: RCU read-side sections, bucket spinlock arrays, data copied by lockless readers,
//! and a value published once for the module's hooks.
//!
//! The 6.12 `kernel` crate has no RCU abstraction (`kernel::sync::rcu` came later) and no bucket lock
//! array, so these wrap the shim's one-line functions.

use crate::ffi;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use kernel::prelude::*;

/// An RCU read-side critical section (`rcu_read_lock()` ... `rcu_read_unlock()`), ended when dropped.
///
/// Objects that RCU keeps alive (or, in a `SLAB_TYPESAFE_BY_RCU` cache, keeps of their type) for the
/// section are lent out for the lifetime of a `&RcuReadGuard`. Taking one is allowed in any context,
/// NMI-like ones (a kprobe's breakpoint handler) included. Not `Send`: the section ends on the CPU and
/// task it began in.
pub(crate) struct RcuReadGuard(PhantomData<*mut ()>);

impl RcuReadGuard {
    /// Begins a read-side section (`rcu_read_lock`).
    #[inline(always)]
    pub(crate) fn new() -> Self {
        // SAFETY: `rcu_read_lock` has no precondition; the section is ended by `drop`, on this task.
        unsafe { ffi::toa_rcu_read_lock() };
        RcuReadGuard(PhantomData)
    }
}

impl Drop for RcuReadGuard {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the section begun by `new`, whose guard is not `Send`: same task.
        unsafe { ffi::toa_rcu_read_unlock() };
    }
}

impl core::ops::Deref for RcuReadGuard {
    type Target = RcuSection;

    #[inline(always)]
    fn deref(&self) -> &RcuSection {
        &RcuSection(PhantomData)
    }
}

/// Proof that the caller is in an RCU read-side critical section for as long as a `&RcuSection` lives,
/// however it was entered: an [`RcuReadGuard`] (`rcu_read_lock`, which derefs to one), or a region with
/// preemption disabled, which RCU waits for as it waits for `rcu_read_lock` (its flavours are one since
/// Linux 4.20): an ftrace callback's, for one. What RCU protects may be borrowed for the lifetime of a
/// `&RcuSection`.
pub(crate) struct RcuSection(PhantomData<*mut ()>);

/// Runs `f` in an RCU read-side section: the region the caller is in when it cannot be preempted
/// (softirq, BHs, interrupts or preemption disabled: regions RCU waits for as it waits for
/// `rcu_read_lock`), else a new [`RcuReadGuard`] section, for callers that run in both (TCP's receive
/// path runs in softirq, and in process context from a socket's backlog). `f` must leave the region as
/// it found it: the locks it takes it releases. On a kernel without preemption (`preemptible()` is then
/// always false) any region that does not sleep is a read-side section: `f` must not sleep.
#[inline(always)]
pub(crate) fn with_rcu<R>(f: impl FnOnce(&RcuSection) -> R) -> R {
    // SAFETY: no precondition.
    if unsafe { ffi::toa_preemptible() } {
        f(&RcuReadGuard::new())
    } else {
        // SAFETY: the caller cannot be preempted until `f` returns (see above): a read-side section.
        f(&unsafe { RcuSection::assume() })
    }
}

impl RcuSection {
    /// The section the caller is in.
    ///
    /// # Safety
    ///
    /// The caller is in an RCU read-side critical section, or has preemption disabled, for as long as
    /// the returned value (and any reference to it) lives.
    #[inline(always)]
    pub(crate) unsafe fn assume() -> Self {
        RcuSection(PhantomData)
    }

    /// [`RcuSection::assume`], borrowed for `'a`.
    ///
    /// # Safety
    ///
    /// The caller is in an RCU read-side critical section, or has preemption disabled, for `'a`.
    #[inline(always)]
    pub(crate) unsafe fn assume_ref<'a>() -> &'a RcuSection {
        &RcuSection(PhantomData)
    }
}

/// Waits for every RCU read-side section that began before the call to end (`synchronize_rcu`).
///
/// Sleeps: process context only (module load and unload, pernet callbacks).
pub(crate) fn synchronize_rcu() {
    // SAFETY: no precondition beyond the sleeping context, which the callers' (documented above) is.
    unsafe { ffi::synchronize_rcu() };
}

/// An array of spinlocks for the buckets of a hash table, as TCP's `ehash_locks`
/// (`alloc_bucket_spinlocks`: 32 per possible CPU, at most one per bucket, a power of two): bucket `b`
/// takes lock `b & mask`. Freed (`free_bucket_spinlocks`) on drop.
///
/// # Invariants
///
/// `locks` points to `mask + 1` initialised spinlocks, owned by this value.
pub(crate) struct BucketLocks {
    locks: NonNull<ffi::SpinLock>,
    mask: u32,
}

// SAFETY: the locks are plain memory owned by the array; spinlocks are taken and released from any CPU.
unsafe impl Send for BucketLocks {}
// SAFETY: `&self` methods only take and release the locks, which is what spinlocks are for.
unsafe impl Sync for BucketLocks {}

impl BucketLocks {
    /// Locks for a table of `buckets` buckets (not 0). Sleeps (`GFP_KERNEL`).
    ///
    /// # Errors
    ///
    /// `ENOMEM` when the array cannot be allocated.
    pub(crate) fn new(buckets: u32) -> Result<Self> {
        let mut locks = core::ptr::null_mut();
        let mut mask = 0;
        // SAFETY: out-pointers to locals; the shim's wrapper of `alloc_bucket_spinlocks`.
        let ret = unsafe { ffi::toa_alloc_bucket_locks(&mut locks, &mut mask, buckets) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: on success, `alloc_bucket_spinlocks` set `locks` to `mask + 1` initialised locks.
        let locks = NonNull::new(locks).ok_or(ENOMEM)?;
        Ok(BucketLocks { locks, mask })
    }

    /// Takes the lock of bucket `b` (any number: it is masked), with BHs off (`spin_lock_bh`), until
    /// the guard is dropped. Do not take a second bucket lock while holding one.
    #[inline(always)]
    pub(crate) fn lock(&self, b: u32) -> BucketGuard<'_> {
        // SAFETY: `b & mask` is an index of the array (the type invariant).
        let lock = unsafe { ffi::toa_bucket_lock(self.locks.as_ptr(), b & self.mask) };
        // SAFETY: an initialised lock of the array, which outlives the guard (its lifetime); released by
        // the guard's drop.
        unsafe { ffi::toa_spin_lock_bh(lock) };
        // SAFETY: the address of an element of a non-null array is not null.
        BucketGuard(unsafe { NonNull::new_unchecked(lock) }, PhantomData)
    }
}

impl Drop for BucketLocks {
    fn drop(&mut self) {
        // SAFETY: allocated by `new`; no guard is left (a guard borrows the array).
        unsafe { ffi::free_bucket_spinlocks(self.locks.as_ptr()) };
    }
}

/// A bucket lock held with BHs off ([`BucketLocks::lock`]), released when dropped.
/// `Option<BucketGuard>` is one pointer, null for `None`.
///
/// Holding it also keeps the CPU in an RCU read-side section (BHs are off): the tables rely on that only
/// for an object they unlink and free while holding the lock (it stays of its type until released).
#[repr(transparent)]
pub(crate) struct BucketGuard<'a>(NonNull<ffi::SpinLock>, PhantomData<&'a BucketLocks>);

impl Drop for BucketGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: taken by `BucketLocks::lock`, whose array outlives the guard.
        unsafe { ffi::toa_spin_unlock_bh(self.0.as_ptr()) };
    }
}

/// Data that RCU readers copy while a writer may be recycling the object that holds it: a multiple of 8
/// bytes, 8-aligned, no padding, every bit pattern valid. Kept in a [`RacyCell`].
///
/// # Safety
///
/// Implemented only for types with exactly that layout.
pub(crate) unsafe trait Words: Copy {}

/// A [`Words`] value that lockless readers copy while a writer may rewrite it, as a seqcount reader
/// does: every access is a volatile 8-byte access (`READ_ONCE`/`WRITE_ONCE` of each word), so a racy
/// copy is a mix of two values, never undefined; readers validate their copy afterwards (the tables
/// check a pointer or a generation around it). Same layout as `T`.
#[repr(transparent)]
pub(crate) struct RacyCell<T: Words>(UnsafeCell<T>);

// SAFETY: every access to the value is a word-sized volatile access, and any mix of words is a valid `T`.
unsafe impl<T: Words + Send> Sync for RacyCell<T> {}

impl<T: Words> RacyCell<T> {
    /// Copies the value (possibly a mix of an old and a new value, when a writer races with the copy).
    #[inline(always)]
    pub(crate) fn load(&self) -> T {
        let src = self.0.get().cast_const();
        let mut out = MaybeUninit::<T>::uninit();
        for i in 0..core::mem::size_of::<T>() / 8 {
            // SAFETY: `T` is 8-aligned and a multiple of 8 bytes long (the `Words` contract), so word `i`
            // is inside both `*src` (borrowed) and `out`.
            unsafe {
                let word = src.cast::<u64>().add(i).read_volatile();
                out.as_mut_ptr().cast::<u64>().add(i).write(word);
            }
        }
        // SAFETY: every word was written, and every bit pattern is a valid `T` (the `Words` contract).
        unsafe { out.assume_init() }
    }

    /// Writes `v` (readers racing with it see a mix, which they discard).
    #[inline(always)]
    pub(crate) fn store(&self, v: T) {
        let src: *const T = &v;
        let dst = self.0.get();
        for i in 0..core::mem::size_of::<T>() / 8 {
            // SAFETY: as in `load`; `T` has no padding, so every word read from `v` is initialised.
            unsafe {
                let word = src.cast::<u64>().add(i).read();
                dst.cast::<u64>().add(i).write_volatile(word);
            }
        }
    }

    /// The value, read in place.
    ///
    /// # Safety
    ///
    /// No one writes it while the reference lives (the tables: the object is linked, and the caller
    /// holds its bucket's lock; a linked object's data never changes).
    #[inline(always)]
    pub(crate) unsafe fn get(&self) -> &T {
        // SAFETY: per the function's contract, no write overlaps the shared borrow.
        unsafe { &*self.0.get() }
    }
}

/// A value published for the module's hooks, callbacks and files: set once, by the owner that
/// registers them, before any of them exists, and taken back by that owner after all of them are gone.
/// Reading it costs what reading a plain static does (no pointer to follow, no flag to test).
pub(crate) struct Published<T>(UnsafeCell<MaybeUninit<T>>);

// SAFETY: readers only get `&T` (hence `T: Sync`); the value moves in and out on the owner's thread
// (`T: Send`), at times when no reader exists (`set` and `take`'s contracts).
unsafe impl<T: Send + Sync> Sync for Published<T> {}

impl<T> Published<T> {
    /// Nothing published yet.
    pub(crate) const fn new() -> Self {
        Published(UnsafeCell::new(MaybeUninit::uninit()))
    }

    /// Publishes `v`.
    ///
    /// # Safety
    ///
    /// Nothing is published, and no reader exists: the readers are registered afterwards (registering a
    /// probe, hook or file orders this write before any of its calls).
    pub(crate) unsafe fn set(&self, v: T) {
        // SAFETY: per the function's contract, no one else accesses the cell.
        unsafe { (*self.0.get()).write(v) };
    }

    /// The published value.
    ///
    /// # Safety
    ///
    /// A value is published, and stays so for `'a`: the caller is one of the readers registered after
    /// [`Published::set`] and unregistered (and waited for) before [`Published::take`].
    #[inline(always)]
    pub(crate) unsafe fn get<'a>(&'a self) -> &'a T {
        // SAFETY: per the function's contract the value is initialised and not moved out for `'a`.
        unsafe { (*self.0.get()).assume_init_ref() }
    }

    /// Takes the value back.
    ///
    /// # Safety
    ///
    /// A value is published, and no reader is left (every one is unregistered and waited for).
    pub(crate) unsafe fn take(&self) -> T {
        // SAFETY: per the function's contract, the value is initialised and no one else accesses it;
        // the cell is uninitialised again afterwards.
        unsafe { (*self.0.get()).assume_init_read() }
    }
}

/// A link of an RCU hash chain, as one word (`include/linux/list_nulls.h`): the address of the next `T`
/// (at least 2-aligned, so bit 0 is clear), or, at the end of a chain, its nulls marker
/// `(bucket << 1) | 1`, which tells a lockless reader which bucket's chain it has walked (an object
/// reused under it may have carried it to another chain).
///
/// # Invariants
///
/// The word was made by [`NullsLink::nulls`] or [`NullsLink::to`] (directly, or stored in a chain and
/// loaded back): an even word is the address of a `T`, never null.
pub(crate) struct NullsLink<T>(usize, PhantomData<*const T>);

impl<T> Clone for NullsLink<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for NullsLink<T> {}

impl<T> PartialEq for NullsLink<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<T> NullsLink<T> {
    /// The end of bucket `bucket`'s chain.
    #[inline(always)]
    pub(crate) fn nulls(bucket: u32) -> Self {
        const { assert!(core::mem::align_of::<T>() >= 2) };
        NullsLink(((bucket as usize) << 1) | 1, PhantomData)
    }

    /// A link to `e`.
    #[inline(always)]
    pub(crate) fn to(e: NonNull<T>) -> Self {
        NullsLink(e.as_ptr() as usize, PhantomData)
    }

    /// The link stored as `word` in a bucket head or a `next` field of the chain.
    ///
    /// The type invariant holds if only words from [`NullsLink::word`] are stored there.
    #[inline(always)]
    pub(crate) fn from_word(word: usize) -> Self {
        NullsLink(word, PhantomData)
    }

    /// The word to store in a bucket head or a `next` field.
    #[inline(always)]
    pub(crate) fn word(self) -> usize {
        self.0
    }

    /// The object this link points to, or `None` at the end of a chain.
    #[inline(always)]
    pub(crate) fn entry(self) -> Option<NonNull<T>> {
        if self.0 & 1 == 0 {
            // SAFETY: an even link is the address of a `T` (the type invariant), never null.
            Some(unsafe { NonNull::new_unchecked(self.0 as *mut T) })
        } else {
            None
        }
    }
}
