// SPDX-License-Identifier: GPL-2.0

//! Per-CPU counter arrays (`__alloc_percpu`), and their RCU publication in a namespace's toa state.

use super::layout;
use super::net::Net;
use super::sync::{RcuReadGuard, RcuSection};
use crate::ffi;
use core::ffi::{c_int, c_uint};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// The index type of a [`PerCpuArray`]: a closed set of counters, each with its slot.
pub(crate) trait CounterIndex: Copy {
    /// The number of counters (of `u64` per CPU).
    const COUNT: usize;
    /// The slot of `self`, below [`CounterIndex::COUNT`] (a slot out of range is neither counted nor
    /// read: the bound is checked, which costs nothing for the constant counters of most calls).
    fn index(self) -> usize;
}

/// A possible CPU's id (`cpu_possible_mask`).
///
/// # Invariants
///
/// The id is in `cpu_possible_mask` (fixed after boot): per-CPU memory exists for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cpu(c_int);

impl Cpu {
    /// The CPU's id, as the kernel numbers it (`CPU<n>` in `/proc`, `smp_processor_id()`).
    pub(crate) fn id(self) -> c_int {
        self.0
    }

    /// Every possible CPU, in increasing order of id (ids may have holes).
    pub(crate) fn possible() -> impl Iterator<Item = Cpu> {
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
            // INVARIANT: `cpumask_next` of `cpu_possible_mask` below `nr_cpu_ids` is a possible CPU.
            Some(Cpu(cpu))
        })
    }
}

/// An array of `I::COUNT` `u64` counters for every possible CPU (`__alloc_percpu`, zeroed); freed on
/// drop. A CPU increments its own copy without a lock or an atomic read-modify-write
/// (`this_cpu_inc`, safe against interrupts on the same CPU); readers read every CPU's copy, each
/// value read once (`READ_ONCE`), so a sum is not a snapshot of all counters at one instant.
///
/// # Invariants
///
/// `base` was returned by `__alloc_percpu` for `I::COUNT` `u64`s, and is owned by this value.
pub(crate) struct PerCpuArray<I: CounterIndex> {
    base: NonNull<u64>,
    _index: PhantomData<I>,
}

// SAFETY: the counters are per-CPU memory that any CPU may increment (its own copy) or read (any copy);
// the owner may free it from any thread.
unsafe impl<I: CounterIndex> Send for PerCpuArray<I> {}
// SAFETY: `&PerCpuArray` only increments the current CPU's copy (`this_cpu_inc`, interrupt-safe) and
// reads copies with `READ_ONCE`.
unsafe impl<I: CounterIndex> Sync for PerCpuArray<I> {}

impl<I: CounterIndex> PerCpuArray<I> {
    /// Allocates zeroed counters for every possible CPU (`GFP_KERNEL`: may sleep). `ENOMEM` on failure.
    pub(crate) fn new() -> Result<Self> {
        let size = I::COUNT * core::mem::size_of::<u64>();
        // SAFETY: plain allocation; `__alloc_percpu` returns zeroed memory or null.
        let base = unsafe { ffi::toa_alloc_percpu(size, core::mem::align_of::<u64>()) };
        // INVARIANT: allocated for `I::COUNT` `u64`s just above.
        NonNull::new(base)
            .map(|base| PerCpuArray {
                base,
                _index: PhantomData,
            })
            .ok_or(ENOMEM)
    }

    /// Adds 1 to counter `i` of the current CPU.
    #[inline]
    pub(crate) fn inc(&self, i: I) {
        let idx = i.index();
        if idx < I::COUNT {
            // SAFETY: by the type invariant `base` holds `I::COUNT` counters per CPU; `idx` is below.
            unsafe { ffi::toa_percpu_inc(self.base.as_ptr(), idx as c_uint) }
        }
    }

    /// Counter `i` of `cpu` (0 for a slot out of range).
    pub(crate) fn read(&self, i: I, cpu: Cpu) -> u64 {
        let idx = i.index();
        if idx >= I::COUNT {
            return 0;
        }
        // SAFETY: as in `inc`; `cpu` is a possible CPU (`Cpu`'s invariant), which has a copy.
        unsafe { ffi::toa_percpu_read(self.base.as_ptr(), idx as c_uint, cpu.id()) }
    }

    /// Gives up ownership: the pointer to hand to [`PerCpuArray::from_raw`].
    fn into_raw(self) -> NonNull<u64> {
        ManuallyDrop::new(self).base
    }

    /// Takes back the counters given up by [`PerCpuArray::into_raw`].
    ///
    /// # Safety
    ///
    /// `base` was returned by `into_raw` of a `PerCpuArray<I>`, and its ownership goes to the result
    /// (or, for a result the caller does not drop, stays with the one who owns it).
    unsafe fn from_raw(base: NonNull<u64>) -> Self {
        // INVARIANT: per the function's contract.
        PerCpuArray {
            base,
            _index: PhantomData,
        }
    }
}

impl<I: CounterIndex> Drop for PerCpuArray<I> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant, allocated by `__alloc_percpu` and owned here.
        unsafe { ffi::free_percpu(self.base.as_ptr()) };
    }
}

/// A namespace's counters as toa publishes them to lockless readers: the `stats` and `retired` slots of
/// the namespace's `struct toa_net` (`src/toa_shim.h`, `net_generic` storage of `toa_stats_net_ops`).
///
/// `stats` holds the counters the hooks increment, from the namespace's `init` (or toa's load) to its
/// `pre_exit` (or toa's unload). Readers load it inside an RCU read-side section and use the counters
/// only inside it. [`NetCounters::retire`] (`pre_exit`) moves the pointer to `retired`; the pernet core
/// then waits for a grace period, after which [`NetCounters::take_retired`] (`exit`) gets the counters
/// back to free them: no reader can still see them.
///
/// # Invariants
///
/// `net`'s `struct toa_net` exists (`toa_stats_net_ops` is registered and its `init` ran for `net`)
/// for `'a`. `stats` is null or the `into_raw` of a `PerCpuArray<I>`, owned by the slot; so is
/// `retired`.
pub(crate) struct NetCounters<'a, I: CounterIndex> {
    net: &'a Net,
    _index: PhantomData<I>,
}

// A handle of one pointer, passed in a register (`derive` would want `I: Clone`).
impl<I: CounterIndex> Clone for NetCounters<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I: CounterIndex> Copy for NetCounters<'_, I> {}

impl<'a, I: CounterIndex> NetCounters<'a, I> {
    /// The counter slots of `net`.
    ///
    /// # Safety
    ///
    /// `toa_stats_net_ops` is registered and its `init` ran for `net`; it stays registered for `'a`.
    /// Every slot of every namespace holds counters of `I` only (one index type per `struct toa_net`).
    #[inline]
    pub(crate) unsafe fn of(net: &'a Net) -> Self {
        // INVARIANT: per the function's contract.
        NetCounters {
            net,
            _index: PhantomData,
        }
    }

    /// The `stats` slot, for as long as the read-side section `rcu` lasts.
    #[inline(always)]
    fn published<'r>(self, rcu: &'r RcuSection) -> &'r AtomicPtr<u64> {
        // SAFETY: by the type invariant the slot exists (the registration the contract of
        // `Net::toa_net` asks for); it is only accessed atomically.
        unsafe { AtomicPtr::from_ptr(layout::TOA_NET_STATS.ptr(self.net.toa_net(rcu))) }
    }

    /// The `retired` slot, for as long as the read-side section `rcu` lasts.
    fn retired<'r>(self, rcu: &'r RcuSection) -> &'r AtomicPtr<u64> {
        // SAFETY: as in `published`.
        unsafe { AtomicPtr::from_ptr(layout::TOA_NET_RETIRED.ptr(self.net.toa_net(rcu))) }
    }

    /// Adds 1 to counter `i` of the current CPU, if the namespace's counters are published.
    #[inline]
    pub(crate) fn inc(self, i: I) {
        self.inc_in(i, &RcuReadGuard::new());
    }

    /// [`NetCounters::inc`] for a caller already inside a read-side section.
    #[inline]
    pub(crate) fn inc_in(self, i: I, rcu: &RcuSection) {
        if let Some(base) = NonNull::new(self.published(rcu).load(Ordering::Acquire)) {
            // SAFETY: published counters (type invariant), not freed before a grace period after they
            // are retired, which the read-side section holds off. Not dropped (`ManuallyDrop`).
            let counters = ManuallyDrop::new(unsafe { PerCpuArray::<I>::from_raw(base) });
            counters.inc(i);
        }
    }

    /// Calls `f` with the published counters (`None` once retired), inside an RCU read-side section:
    /// `f` must not sleep (an atomic-context rule, as under a spinlock: checked by the kernel's
    /// `might_sleep` debugging, not by the type system).
    pub(crate) fn with<R>(self, f: impl FnOnce(Option<&PerCpuArray<I>>) -> R) -> R {
        let rcu = RcuReadGuard::new();
        let base = NonNull::new(self.published(&rcu).load(Ordering::Acquire));
        // SAFETY: as in `inc_in`; the borrow given to `f` ends before the section does.
        let counters = base.map(|b| ManuallyDrop::new(unsafe { PerCpuArray::<I>::from_raw(b) }));
        f(counters.as_deref())
    }

    /// Publishes `counters` (the namespace's `init`, which the pernet core runs once: counters published
    /// already would be leaked, never freed under a reader).
    pub(crate) fn publish(self, counters: PerCpuArray<I>) {
        self.published(&RcuReadGuard::new())
            .store(counters.into_raw().as_ptr(), Ordering::Release);
    }

    /// Unpublishes the counters (the namespace's `pre_exit`): readers that start after this see none;
    /// the counters wait in the `retired` slot for [`NetCounters::take_retired`].
    pub(crate) fn retire(self) {
        let rcu = RcuReadGuard::new();
        let base = self
            .published(&rcu)
            .swap(core::ptr::null_mut(), Ordering::AcqRel);
        // Owned by `retired` now (`exit` runs once after each `pre_exit`: the slot is empty).
        self.retired(&rcu).store(base, Ordering::Relaxed);
    }

    /// Takes the counters [`NetCounters::retire`] unpublished (the namespace's `exit`), to free them.
    ///
    /// # Safety
    ///
    /// An RCU grace period has elapsed since `retire` (the pernet core waits for one between `pre_exit`
    /// and `exit`): no reader still uses the counters.
    pub(crate) unsafe fn take_retired(self) -> Option<PerCpuArray<I>> {
        let base = self
            .retired(&RcuReadGuard::new())
            .swap(core::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: owned by the slot (type invariant), taken out of it; per the function's contract
        // nothing reads them any more.
        NonNull::new(base).map(|b| unsafe { PerCpuArray::from_raw(b) })
    }
}
