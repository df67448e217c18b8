// SPDX-License-Identifier: GPL-2.0

//! Network namespaces (`struct net`).

use super::layout;
use super::sync::RcuSection;
use crate::ffi;
use core::ffi::c_void;
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
        unsafe { layout::NET_INUM.read_once(self.as_ptr()) }
    }

    /// The namespace's `struct toa_net` (`src/toa_shim.h`): `net_generic(net, toa_net_id)`, for as long
    /// as the read-side section `_rcu` lasts (`net->gen` is replaced under RCU when a pernet subsystem
    /// registers).
    ///
    /// # Safety
    ///
    /// `toa_stats_net_ops` is registered and its `init` ran for this namespace: its id is set and the
    /// namespace has the storage.
    #[inline(always)]
    pub(crate) unsafe fn toa_net(&self, _rcu: &RcuSection) -> *mut c_void {
        // SAFETY: the namespace is alive (type invariant) and `gen` is read inside an RCU read-side
        // section (`rcu_dereference`), so the array stays allocated while `_rcu` lives; `toa_net_id` is
        // set once at registration, before this can be called (the contract), and indexes the array.
        unsafe {
            let gen = layout::NET_GEN.read_once(self.as_ptr());
            let slots = gen
                .cast::<u8>()
                .add(layout::NET_GENERIC_PTR)
                .cast::<*mut c_void>();
            *slots.add(ffi::toa_net_id as usize)
        }
    }
}
