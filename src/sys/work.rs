// SPDX-License-Identifier: GPL-2.0

//! Delayed work items, and the clock they count in (jiffies).

use crate::ffi;
use core::ffi::c_ulong;
use kernel::types::Opaque;

/// `jiffies`: the tick count since boot (wraps).
#[inline(always)]
pub(crate) fn jiffies() -> c_ulong {
    // SAFETY: a read of the kernel's tick counter.
    unsafe { ffi::toa_jiffies() }
}

/// `HZ`: jiffies per second (never 0).
#[inline(always)]
pub(crate) fn hz() -> c_ulong {
    // SAFETY: a constant of the shim, never written.
    c_ulong::from(unsafe { ffi::toa_hz })
}

/// A delayed work item (`struct delayed_work`) declared by the shim with `DECLARE_DELAYED_WORK`: its
/// function is fixed there, and it runs on the system workqueue.
///
/// # Invariants
///
/// The work is a static object of the shim, initialised at compile time: it lives as long as the module.
#[repr(transparent)]
pub(crate) struct DelayedWork(Opaque<ffi::DelayedWork>);

// SAFETY: the workqueue API (`schedule_delayed_work`, `cancel_delayed_work_sync`) may be called on a
// work from any thread; it has its own locking.
unsafe impl Sync for DelayedWork {}
// SAFETY: as above; a `DelayedWork` is only ever borrowed (it is a static of the shim).
unsafe impl Send for DelayedWork {}

impl DelayedWork {
    /// The UOA sweeper's work (`toa_uoa_sweep_work`), whose function is `toa_uoa_sweep`.
    pub(crate) fn uoa_sweep() -> &'static DelayedWork {
        // SAFETY: a static of the shim (the type invariant), only accessed through the workqueue API;
        // `DelayedWork` is a transparent wrapper of it.
        unsafe { &*core::ptr::addr_of_mut!(ffi::toa_uoa_sweep_work).cast::<DelayedWork>() }
    }

    /// Queues the work to run in `delay` jiffies, unless it is already queued (`schedule_delayed_work`).
    /// Returns whether it was queued by this call.
    ///
    /// # Safety
    ///
    /// The work is cancelled ([`DelayedWork::cancel_sync`], for instance by dropping a
    /// [`Scheduled`]) before the module's code and whatever its function uses go away.
    pub(crate) unsafe fn schedule(&self, delay: c_ulong) -> bool {
        // SAFETY: a live work (the type invariant); per the function's contract, it will not run after
        // its function's code is gone.
        unsafe { ffi::toa_schedule_delayed_work(self.0.get(), delay) }
    }

    /// Cancels the work and waits for a running instance to finish (`cancel_delayed_work_sync`), even
    /// one that queues the work again: once it returns, the work is neither pending nor running.
    /// Sleeps: process context only. Returns whether it was pending.
    pub(crate) fn cancel_sync(&self) -> bool {
        // SAFETY: a live work (the type invariant).
        unsafe { ffi::cancel_delayed_work_sync(self.0.get()) }
    }
}

/// A work queued by [`Scheduled::start`], cancelled (and waited for) when dropped.
pub(crate) struct Scheduled(&'static DelayedWork);

impl Scheduled {
    /// Queues `work` to run in `delay` jiffies; its function may queue it again
    /// ([`DelayedWork::schedule`]) as long as this value exists.
    pub(crate) fn start(work: &'static DelayedWork, delay: c_ulong) -> Self {
        // SAFETY: the drop of the returned value cancels the work.
        unsafe { work.schedule(delay) };
        Scheduled(work)
    }
}

impl Drop for Scheduled {
    fn drop(&mut self) {
        self.0.cancel_sync();
    }
}
