// SPDX-License-Identifier: GPL-2.0

//! The index of the namespaces with UOA state: the shim's `toa_uoa_nets` xarray and its mutex.

use super::net::Net;
use crate::ffi;

/// The namespaces with UOA state, by `ns.inum` (`toa_uoa_nets`, an xarray), and the mutex
/// (`toa_uoa_nets_mutex`) that keeps the namespaces found in it alive.
///
/// # Invariants
///
/// A namespace is stored in the index by its UOA init (`src/uoa/hooks.rs`) and erased by its UOA exit
/// under the mutex (or by a failed init, before the namespace has any mapping), so a namespace found
/// while holding the mutex is alive until the mutex is released.
pub(crate) struct UoaNets;

impl UoaNets {
    /// Records `net` (by its number) with UOA state: from its UOA init, which
    /// [`UoaNetsGuard::remove`] undoes in its exit. Sleeps (`GFP_KERNEL`); `ENOMEM` on failure.
    pub(crate) fn insert(net: &Net) -> kernel::error::Result {
        // SAFETY: the shim's static xarray; `net` is alive until its exit removes it (the type
        // invariant).
        let ret = unsafe { ffi::toa_uoa_nets_store(net.inum().into(), net.as_ptr()) };
        if ret < 0 {
            return Err(kernel::error::Error::from_errno(ret));
        }
        Ok(())
    }

    /// Takes the index's mutex (`mutex_lock`) until the guard is dropped. Sleeps: process context only.
    pub(crate) fn lock() -> UoaNetsGuard {
        // SAFETY: the shim's static mutex, released by the guard's drop.
        unsafe { ffi::toa_mutex_lock(core::ptr::addr_of_mut!(ffi::toa_uoa_nets_mutex)) };
        UoaNetsGuard(core::marker::PhantomData)
    }
}

/// The index's mutex, held: see [`UoaNets`]. Not `Send`: a mutex is released by its owner.
pub(crate) struct UoaNetsGuard(core::marker::PhantomData<*mut ()>);

impl UoaNetsGuard {
    /// The namespace whose number is `inum`, if it has UOA state; alive while the guard is held.
    pub(crate) fn get(&self, inum: u32) -> Option<&Net> {
        // SAFETY: the shim's static xarray (`xa_load` takes the RCU lock it needs).
        let net = unsafe { ffi::xa_load(core::ptr::addr_of_mut!(ffi::toa_uoa_nets), inum.into()) };
        // SAFETY: a namespace found under the mutex stays alive until it is released (the type
        // invariant of `UoaNets`), which outlives the borrow of the guard.
        (!net.is_null()).then(|| unsafe { Net::from_raw(net.cast()) })
    }
}

impl UoaNetsGuard {
    /// Forgets `net`: from its UOA exit (or a failed init), so that no one finds it once the guard
    /// is released.
    pub(crate) fn remove(&self, net: &Net) {
        // SAFETY: the shim's static xarray; erasing an absent index does nothing.
        unsafe {
            ffi::xa_erase(
                core::ptr::addr_of_mut!(ffi::toa_uoa_nets),
                net.inum().into(),
            )
        };
    }
}

impl Drop for UoaNetsGuard {
    fn drop(&mut self) {
        // SAFETY: taken by `UoaNets::lock`, on this task (the guard is not `Send`).
        unsafe { ffi::mutex_unlock(core::ptr::addr_of_mut!(ffi::toa_uoa_nets_mutex)) };
    }
}
