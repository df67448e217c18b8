// SPDX-License-Identifier: GPL-2.0

//! Registrations of toa's hooks: kretprobes (`register_kretprobe`) and one function-entry ftrace callback
//! (`register_ftrace_function`, filtered on one function), supported APIs that patch no kernel data.
//! Each registration unregisters on drop, and both unregistrations wait until no handler of the hook
//! runs any more.

use crate::ffi::{self, FtraceOps, Kretprobe};
use core::ffi::CStr;
use kernel::prelude::*;

/// Logs that hooking `symbol` failed with `ret` (`cannot <verb> <symbol> (error <ret>): <hint>`) and
/// returns the error.
fn failed(verb: &str, symbol: &CStr, ret: i32, hint: &str) -> Error {
    pr_err!(
        "cannot {} {} (error {}): {}\n",
        verb,
        symbol.to_str().unwrap_or("?"),
        ret,
        hint
    );
    Error::from_errno(ret)
}

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
            return Err(failed(
                "probe",
                symbol,
                ret,
                "is it built in and not blacklisted?",
            ));
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

/// A registered function-entry ftrace callback (one of the shim's static `struct ftrace_ops`), called at
/// the entry of one function only.
pub(crate) struct FtraceRegistration(*mut FtraceOps);

// SAFETY: the registration only holds the address of a static object; (un)registering is thread-safe.
unsafe impl Send for FtraceRegistration {}
// SAFETY: as above; `&FtraceRegistration` allows nothing.
unsafe impl Sync for FtraceRegistration {}

impl FtraceRegistration {
    /// Filters `ops` on the function `symbol`, then registers it.
    ///
    /// # Safety
    ///
    /// `ops` is one of the shim's static `ftrace_ops`, not registered yet, whose callback is toa's.
    pub(crate) unsafe fn register(ops: *mut FtraceOps, symbol: &CStr) -> Result<Self> {
        // `ftrace_set_filter` parses its buffer in place: hand it a copy.
        let mut name = [0u8; 64];
        let bytes = symbol.to_bytes();
        if bytes.len() >= name.len() {
            return Err(EINVAL);
        }
        name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: `ops` per the function's contract; `name` holds `bytes.len()` bytes and a NUL.
        let mut ret =
            unsafe { ffi::ftrace_set_filter(ops, name.as_mut_ptr(), bytes.len() as i32, 1) };
        if ret == 0 {
            // SAFETY: as above; filtered on `symbol` only.
            ret = unsafe { ffi::register_ftrace_function(ops) };
            if ret < 0 {
                // SAFETY: not registered; frees the filter set above.
                unsafe { ffi::ftrace_free_filter(ops) };
            }
        }
        if ret < 0 {
            return Err(failed(
                "trace",
                symbol,
                ret,
                "is it built in and traceable?",
            ));
        }
        Ok(Self(ops))
    }
}

impl Drop for FtraceRegistration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`; `unregister_ftrace_function` waits for callbacks in flight
        // (a module's ops is dynamic: ftrace synchronizes before returning), then the filter goes.
        unsafe {
            ffi::unregister_ftrace_function(self.0);
            ffi::ftrace_free_filter(self.0);
        }
    }
}
