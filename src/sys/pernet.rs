// SPDX-License-Identifier: GPL-2.0

//! Per-namespace operations (`struct pernet_operations`, `register_pernet_subsys`): their `init` runs
//! for every network namespace, existing and future, their `pre_exit` and `exit` when a namespace goes
//! away, or for every namespace when they are unregistered.
//!
//! The `struct pernet_operations` objects are statics of the shim (`src/toa_shim.c`) that name toa's
//! callbacks; [`pernet_callbacks!`] defines those callbacks for a [`PernetOps`] implementation, with a
//! [`Net`] instead of a raw pointer.

use super::net::Net;
use crate::ffi::{self, PernetOperations};
use kernel::prelude::*;

/// The callbacks of one of the shim's `pernet_operations`.
///
/// The pernet core serialises them (`pernet_ops_rwsem`): for a namespace, `init`, then once it goes
/// away `pre_exit`, an RCU grace period, then `exit`. They may sleep.
pub(crate) trait PernetOps {
    /// Sets up the namespace, being created (or existing, at registration). An error fails the
    /// namespace's creation (or the registration), and `exit` is not called for it.
    fn init(net: &Net) -> Result;

    /// First step of the namespace's dismantling; an RCU grace period follows before `exit`.
    fn pre_exit(_net: &Net) {}

    /// Last step of the namespace's dismantling (or of the registration's).
    fn exit(net: &Net);
}

/// Defines the `extern "C"` callbacks a static `pernet_operations` of the shim names
/// (`src/toa_shim.h`), each turning its `struct net *` into a [`Net`] and calling the [`PernetOps`]
/// implementation of `$ops`:
///
/// ```ignore
/// pernet_callbacks!(StatsOps { init: toa_stats_net_init, pre_exit: toa_stats_net_pre_exit, exit: toa_stats_net_exit });
/// ```
macro_rules! pernet_callbacks {
    ($ops:ty { init: $init:ident, $(pre_exit: $pre_exit:ident,)? exit: $exit:ident $(,)? }) => {
        /// `pernet_operations::init`: [`PernetOps::init`](crate::sys::pernet::PernetOps::init).
        ///
        /// # Safety
        ///
        /// Only called by the pernet core, with a namespace it is setting up.
        #[no_mangle]
        unsafe extern "C" fn $init(net: *mut $crate::ffi::Net) -> core::ffi::c_int {
            // SAFETY: the pernet core passes a namespace that lives at least until its `exit` returns.
            let net = unsafe { $crate::sys::net::Net::from_raw(net) };
            match <$ops as $crate::sys::pernet::PernetOps>::init(net) {
                Ok(()) => 0,
                Err(e) => e.to_errno(),
            }
        }

        $(
            /// `pernet_operations::pre_exit`:
            /// [`PernetOps::pre_exit`](crate::sys::pernet::PernetOps::pre_exit).
            ///
            /// # Safety
            ///
            /// Only called by the pernet core, with a namespace `init` set up.
            #[no_mangle]
            unsafe extern "C" fn $pre_exit(net: *mut $crate::ffi::Net) {
                // SAFETY: as in `init`.
                let net = unsafe { $crate::sys::net::Net::from_raw(net) };
                <$ops as $crate::sys::pernet::PernetOps>::pre_exit(net)
            }
        )?

        /// `pernet_operations::exit`: [`PernetOps::exit`](crate::sys::pernet::PernetOps::exit).
        ///
        /// # Safety
        ///
        /// Only called by the pernet core, with a namespace `init` set up, after `pre_exit` and an RCU
        /// grace period.
        #[no_mangle]
        unsafe extern "C" fn $exit(net: *mut $crate::ffi::Net) {
            // SAFETY: as in `init`.
            let net = unsafe { $crate::sys::net::Net::from_raw(net) };
            <$ops as $crate::sys::pernet::PernetOps>::exit(net)
        }
    };
}
pub(crate) use pernet_callbacks;

/// A registered `struct pernet_operations`; unregistered on drop (which runs `pre_exit` and `exit` for
/// every namespace).
///
/// # Invariants
///
/// `self.0` is a static `pernet_operations` of the shim, registered by [`PernetRegistration::register`].
pub(crate) struct PernetRegistration(*mut PernetOperations);

// SAFETY: the registration only holds the address of a static object; (un)registering is thread-safe.
unsafe impl Send for PernetRegistration {}
// SAFETY: as above; `&PernetRegistration` allows nothing.
unsafe impl Sync for PernetRegistration {}

impl PernetRegistration {
    /// Registers `ops`: runs its `init` for every existing namespace (undone if one fails: the error is
    /// returned), then for every new one.
    ///
    /// # Safety
    ///
    /// `ops` is one of the shim's static `pernet_operations`, not registered yet, whose callbacks are
    /// toa's; what they use outlives the registration.
    pub(crate) unsafe fn register(ops: *mut PernetOperations) -> Result<Self> {
        // SAFETY: per the function's contract.
        let ret = unsafe { ffi::register_pernet_subsys(ops) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: registered just above.
        Ok(Self(ops))
    }
}

impl Drop for PernetRegistration {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant).
        unsafe { ffi::unregister_pernet_subsys(self.0) };
    }
}
