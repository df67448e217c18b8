// SPDX-License-Identifier: GPL-2.0

//! Network namespaces (`struct net`).

use crate::ffi;
use kernel::types::Opaque;

/// A network namespace (`struct net`).
///
/// # Invariants
///
/// A `&Net` refers to a namespace that stays alive for the lifetime of the reference (the caller holds
/// a reference to it, or to a socket, packet or file of it, or runs in one of its pernet callbacks).
#[repr(transparent)]
pub(crate) struct Net(Opaque<ffi::Net>);

impl Net {
    /// The namespace at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points at a namespace that stays alive for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *const ffi::Net) -> &'a Net {
        // SAFETY: `Net` is a transparent wrapper of `ffi::Net`; per the function's contract the object
        // lives for `'a`, which satisfies the type invariant.
        unsafe { &*ptr.cast::<Net>() }
    }

    /// The C object, for the shim's functions.
    pub(crate) fn as_ptr(&self) -> *mut ffi::Net {
        self.0.get()
    }

    /// The namespace's number (`ns.inum`, what `/proc/PID/ns/net` shows): unique among live
    /// namespaces, reused only after the namespace is gone.
    pub(crate) fn inum(&self) -> u32 {
        // SAFETY: by the type invariant the namespace is alive; `ns.inum` never changes.
        unsafe { ffi::toa_net_inum(self.as_ptr()) }
    }
}
