// SPDX-License-Identifier: GPL-2.0

//! Registrations of the kretprobes toa hooks through (`register_kretprobe`): a supported API that patches
//! no kernel data. Each registration unregisters on drop; `unregister_kretprobe` waits until no handler
//! of the probe runs any more.

use crate::ffi::{self, Kretprobe};
use core::ffi::CStr;
use kernel::prelude::*;

/// A registered kretprobe (one of the shim's static `struct kretprobe`).
pub(crate) struct KretprobeRegistration(*mut Kretprobe);

// SAFETY: the registration only holds the address of a static object; (un)registering is thread-safe.
unsafe impl Send for KretprobeRegistration {}
// SAFETY: as above; `&KretprobeRegistration` allows nothing.
unsafe impl Sync for KretprobeRegistration {}

impl KretprobeRegistration {
    /// Registers `rp`, probing the function `symbol` (used for the error message).
    ///
    /// # Safety
    ///
    /// `rp` is one of the shim's static kretprobes, not registered yet, whose handlers are toa's.
    pub(crate) unsafe fn register(rp: *mut Kretprobe, symbol: &CStr) -> Result<Self> {
        // SAFETY: per the function's contract.
        let ret = unsafe { ffi::register_kretprobe(rp) };
        if ret < 0 {
            pr_err!(
                "cannot probe {} (error {}): is it built in and not blacklisted?\n",
                symbol.to_str().unwrap_or("?"),
                ret
            );
            return Err(Error::from_errno(ret));
        }
        Ok(Self(rp))
    }
}

impl Drop for KretprobeRegistration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`.
        unsafe { ffi::unregister_kretprobe(self.0) };
    }
}
