// SPDX-License-Identifier: GPL-2.0

//! Netfilter: socket-option ranges (`nf_register_sockopt`, how toa answers `getsockopt(IPPROTO_IP, ...)`)
//! and `LOCAL_IN` hooks (`nf_register_net_hooks`, per namespace). The registered objects are the
//! shim's statics (`src/toa_shim.c`), whose callbacks are toa's, named here by [`SockoptRange`] and
//! [`NetHooks`]. Callbacks are written as safe Rust functions; the [`getsockopt_handler!`] and
//! [`nf_hook!`] macros give them the C entry points the shim declares.

use super::layout;
use super::net::Net;
use super::sync::RcuSection;
use crate::ffi;
use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::prelude::*;
use kernel::types::Opaque;
use kernel::uaccess::UserSlice;

/// toa's socket-option ranges at level `IPPROTO_IP` (`struct nf_sockopt_ops` of the shim).
#[derive(Clone, Copy)]
pub(crate) enum SockoptRange {
    /// 4096 (`TOA_SO_GET_LOOKUP`, `include/toa.h`).
    Toa,
    /// 2048..=2049 (`UOA_SO_GET_LOOKUP`, `UOA_SO_GET_LOOKUP1`, `include/uoa.h`).
    Uoa,
}

/// Whether each [`SockoptRange`] is registered, so that none is registered twice.
static SOCKOPT_REGISTERED: [AtomicBool; 2] = [const { AtomicBool::new(false) }; 2];

impl SockoptRange {
    fn as_ptr(self) -> *mut ffi::NfSockoptOps {
        match self {
            SockoptRange::Toa => core::ptr::addr_of_mut!(ffi::toa_sockopt_ops),
            SockoptRange::Uoa => core::ptr::addr_of_mut!(ffi::toa_uoa_sockopt_ops),
        }
    }
}

/// A registered [`SockoptRange`]; unregistered on drop.
///
/// # Invariants
///
/// The range is registered (and marked so in `SOCKOPT_REGISTERED`) while this exists.
pub(crate) struct SockoptRegistration(SockoptRange);

impl SockoptRegistration {
    /// Registers `range`. Fails with `EBUSY` if it is registered already, or with netfilter's error
    /// (`EBUSY` too when another module holds an overlapping range).
    pub(crate) fn register(range: SockoptRange) -> Result<Self> {
        let flag = &SOCKOPT_REGISTERED[range as usize];
        if flag.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        // SAFETY: a static ops of the shim whose callback is toa's, not registered (the flag).
        let ret = unsafe { ffi::nf_register_sockopt(range.as_ptr()) };
        if ret < 0 {
            flag.store(false, Ordering::Release);
            return Err(Error::from_errno(ret));
        }
        Ok(Self(range))
    }
}

impl Drop for SockoptRegistration {
    fn drop(&mut self) {
        // SAFETY: registered, by the type invariant. A handler in progress holds a module reference
        // (`.owner`), so the module cannot be unloading while one runs.
        unsafe { ffi::nf_unregister_sockopt(self.0.as_ptr()) };
        SOCKOPT_REGISTERED[self.0 as usize].store(false, Ordering::Release);
    }
}

/// The caller's length of a `getsockopt` call (`int *optlen`, the kernel's copy of it).
///
/// # Invariants
///
/// Points at the kernel copy of the caller's length for the duration of the handler.
pub(crate) struct OptLen(*mut c_int);

impl OptLen {
    /// The caller's buffer length.
    pub(crate) fn get(&self) -> c_int {
        // SAFETY: by the type invariant.
        unsafe { self.0.read() }
    }

    /// Sets the length returned to the caller (the bytes written).
    pub(crate) fn set(&mut self, len: c_int) {
        // SAFETY: by the type invariant.
        unsafe { self.0.write(len) }
    }
}

/// One `getsockopt` call in a toa range, as `nf_getsockopt` passes it to the handler.
pub(crate) struct GetsockoptCall<'a> {
    /// The caller's socket, referenced by its file for the whole syscall.
    pub(crate) sk: &'a super::sock::Sock,
    /// The option (`optname`).
    pub(crate) optname: c_int,
    /// The caller's buffer (`optval`), a user address.
    pub(crate) user: usize,
    /// The caller's length.
    pub(crate) len: OptLen,
}

impl GetsockoptCall<'_> {
    /// The caller's buffer, `len` bytes of it (the length checked against [`OptLen::get`] by the
    /// handler).
    pub(crate) fn user_slice(&self, len: usize) -> UserSlice {
        #[cfg(toa_user_ptr_newtype)]
        let user = kernel::uaccess::UserPtr::from_addr(self.user);
        #[cfg(not(toa_user_ptr_newtype))]
        let user = self.user;
        UserSlice::new(user, len)
    }
}

/// Defines the C entry point `$c` (declared by the shim) of a getsockopt handler written as the safe
/// function `$f: fn(GetsockoptCall<'_>) -> c_int` (0 or a negative errno).
macro_rules! getsockopt_handler {
    ($c:ident => $f:path) => {
        /// C entry point of a getsockopt handler (see [`crate::sys::netfilter::getsockopt_handler!`]).
        ///
        /// # Safety
        ///
        /// Only called by `nf_getsockopt` with a live socket, a user pointer and the kernel copy of the
        /// caller's length.
        #[no_mangle]
        unsafe extern "C" fn $c(
            sk: *mut $crate::ffi::Sock,
            optname: core::ffi::c_int,
            user: *mut core::ffi::c_void,
            len: *mut core::ffi::c_int,
        ) -> core::ffi::c_int {
            use $crate::sys::netfilter::GetsockoptCall;
            // SAFETY: `nf_getsockopt`'s arguments: the caller's socket, referenced by its file for the
            // whole call, and the kernel copy of its length.
            let call = unsafe { GetsockoptCall::new(sk, optname, user, len) };
            $f(call)
        }
    };
}
pub(crate) use getsockopt_handler;

impl GetsockoptCall<'_> {
    /// The call `nf_getsockopt` passes.
    ///
    /// # Safety
    ///
    /// `sk` is the caller's socket, referenced for the whole call; `len` points at the kernel copy of
    /// the caller's length; the value is used only during the handler.
    pub(crate) unsafe fn new(
        sk: *mut ffi::Sock,
        optname: c_int,
        user: *mut core::ffi::c_void,
        len: *mut c_int,
    ) -> Self {
        Self {
            // SAFETY: per the function's contract.
            sk: unsafe { super::sock::Sock::from_raw(sk) },
            optname,
            user: user as usize,
            // INVARIANT: per the function's contract.
            len: OptLen(len),
        }
    }
}

/// Where a packet is in netfilter (`struct nf_hook_state`): hook, devices, namespace.
///
/// # Invariants
///
/// A `&NfHookState` refers to the state netfilter passed to a hook, valid while the hook runs.
#[repr(transparent)]
pub(crate) struct NfHookState(Opaque<ffi::NfHookState>);

impl NfHookState {
    /// The state passed to a hook.
    ///
    /// # Safety
    ///
    /// `ptr` is the state argument of a netfilter hook, and the reference is used only during it.
    pub(crate) unsafe fn from_raw<'a>(ptr: *const ffi::NfHookState) -> &'a NfHookState {
        // SAFETY: a transparent wrapper; per the function's contract.
        unsafe { &*ptr.cast::<NfHookState>() }
    }

    /// The namespace the packet is in.
    #[inline(always)]
    pub(crate) fn net(&self) -> &Net {
        // SAFETY: by the type invariant the state is valid; hooks run inside an RCU read-side section
        // of a namespace that cannot exit before they return (its hooks are unregistered, then a
        // grace period, first).
        unsafe { Net::from_raw(layout::NF_HOOK_STATE_NET.read_once(self.0.get())) }
    }

    /// The RCU read-side section the hook runs in (`nf_hook` calls the hooks inside one).
    pub(crate) fn rcu(&self) -> &RcuSection {
        // SAFETY: as above; the section lasts as long as the hook, which `self` does not outlive.
        unsafe { RcuSection::assume_ref() }
    }
}

/// Defines the C entry point `$c` (declared by the shim) of a netfilter hook of family `$af` (`ipv4`
/// or `ipv6`) written as the safe function `$f: fn(&Ipv4SkBuff or &Ipv6SkBuff, &NfHookState) -> u32`
/// (a verdict, `NF_ACCEPT`).
macro_rules! nf_hook {
    (ipv4, $c:ident => $f:path) => {
        $crate::sys::netfilter::nf_hook!(@ $c => $f, as_ipv4, "IPv4");
    };
    (ipv6, $c:ident => $f:path) => {
        $crate::sys::netfilter::nf_hook!(@ $c => $f, as_ipv6, "IPv6");
    };
    (@ $c:ident => $f:path, $as:ident, $family:literal) => {
        /// C entry point of a netfilter hook (see [`crate::sys::netfilter::nf_hook!`]).
        ///
        /// # Safety
        ///
        /// Only called by netfilter, for a packet it holds, at a hook of the family the shim registers
        /// it for, after `PRE_ROUTING` (a hook at `LOCAL_IN`).
        #[no_mangle]
        unsafe extern "C" fn $c(
            _priv: *mut core::ffi::c_void,
            skb: *mut $crate::ffi::SkBuff,
            state: *const $crate::ffi::NfHookState,
        ) -> core::ffi::c_uint {
            // SAFETY: netfilter's arguments for this packet, used only during this call: at `LOCAL_IN`
            // the IP layer has checked the packet's version, set the network header and pulled the fixed
            // IP header into the linear area.
            unsafe {
                $f(
                    $crate::sys::skb::SkBuff::from_raw(skb).$as(),
                    $crate::sys::netfilter::NfHookState::from_raw(state),
                )
            }
        }
    };
}
pub(crate) use nf_hook;

/// toa's `LOCAL_IN` hooks (`toa_uoa_nf_ops` of the shim: IPv4 and IPv6), registered per namespace.
///
/// # Invariants
///
/// Registered in `net` while this exists; dropping it unregisters them.
pub(crate) struct NetHooks<'a> {
    net: &'a Net,
}

impl<'a> NetHooks<'a> {
    /// Registers the UOA hooks in `net`.
    pub(crate) fn register(net: &'a Net) -> Result<Self> {
        // SAFETY: the shim's static hook array (2 entries), whose hooks are toa's.
        let ret =
            unsafe { ffi::nf_register_net_hooks(net.as_ptr(), ffi::toa_uoa_nf_ops.as_ptr(), 2) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(Self { net })
    }

    /// Leaves the hooks registered until [`NetHooks::unregister`] is called for the namespace (from a
    /// pernet callback that outlives this value).
    pub(crate) fn keep(self) {
        core::mem::forget(self);
    }

    /// Unregisters the UOA hooks of `net`.
    ///
    /// # Safety
    ///
    /// They were registered in `net` by [`NetHooks::register`] and kept with [`NetHooks::keep`].
    pub(crate) unsafe fn unregister(net: &Net) {
        // SAFETY: per the function's contract.
        unsafe { ffi::nf_unregister_net_hooks(net.as_ptr(), ffi::toa_uoa_nf_ops.as_ptr(), 2) };
    }
}

impl Drop for NetHooks<'_> {
    fn drop(&mut self) {
        // SAFETY: registered, by the type invariant.
        unsafe { NetHooks::unregister(self.net) };
    }
}
