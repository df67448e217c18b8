// SPDX-License-Identifier: GPL-2.0

//! Registration of the shim's `pernet_operations` (`register_pernet_subsys`): their `init` runs for every
//! network namespace, existing and future, their `exit` when a namespace goes or on drop.

use crate::ffi::{self, PernetOperations};
use kernel::prelude::*;

/// A registered `struct pernet_operations`; unregistered on drop (which runs `exit` for every namespace).
pub(crate) struct PernetRegistration(*mut PernetOperations);

// SAFETY: the registration only holds the address of a static object; (un)registering is thread-safe.
unsafe impl Send for PernetRegistration {}
// SAFETY: as above; `&PernetRegistration` allows nothing.
unsafe impl Sync for PernetRegistration {}

impl PernetRegistration {
    /// Registers `ops`.
    ///
    /// # Safety
    ///
    /// `ops` is one of the shim's static `pernet_operations`, not registered yet, whose callbacks are toa's.
    pub(crate) unsafe fn register(ops: *mut PernetOperations) -> Result<Self> {
        // SAFETY: per the function's contract.
        let ret = unsafe { ffi::register_pernet_subsys(ops) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(Self(ops))
    }
}

impl Drop for PernetRegistration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`.
        unsafe { ffi::unregister_pernet_subsys(self.0) };
    }
}
