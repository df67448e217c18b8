// SPDX-License-Identifier: GPL-2.0

//! toa's hooks on kernel functions: kretprobes (`register_kretprobe`) and one function-entry ftrace
//! callbacks (`register_ftrace_function`, each filtered on one function), supported APIs that patch no kernel
//! data. The probe objects are the shim's statics (`src/toa_shim.c`), whose handlers are toa's, named
//! here by [`Kretprobe`] and [`FtraceHook`]; each registration unregisters on drop, and both
//! unregistrations wait until no handler of the hook runs any more.
//!
//! Handlers are written as safe Rust functions over a [`KretprobeCall`] or an [`FtraceCall`]; the
//! [`kretprobe_handler!`] and [`ftrace_callback!`] macros give them the C entry points the shim
//! declares.

use super::sync::RcuSection;
use crate::ffi;
use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, Ordering};
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

/// toa's kretprobes: the shim's static `struct kretprobe`s, one per probed function.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kretprobe {
    /// `inet_csk_listen_start`: a socket starts listening (and is in its listening hash on return).
    ListenStart,
}

/// Whether each [`Kretprobe`] is registered, so that none is registered twice.
static REGISTERED: [AtomicBool; 1] = [const { AtomicBool::new(false) }; 1];

impl Kretprobe {
    /// The probed function.
    pub(crate) fn symbol(self) -> &'static CStr {
        match self {
            Kretprobe::ListenStart => c"inet_csk_listen_start",
        }
    }

    fn as_ptr(self) -> *mut ffi::Kretprobe {
        match self {
            Kretprobe::ListenStart => core::ptr::addr_of_mut!(ffi::toa_krp_listen_start),
        }
    }

    /// Calls the probe missed so far: no free instance (`nmissed`) or a kprobe that could not run
    /// (`kp.nmissed`, e.g. re-entered). 0 before the first registration.
    pub(crate) fn nmissed(self) -> core::ffi::c_ulong {
        // SAFETY: reads two counters of a static object, written by the kprobes core; a torn or stale
        // value is harmless for a statistic.
        unsafe { ffi::toa_kretprobe_nmissed(self.as_ptr()) }
    }
}

/// A registered [`Kretprobe`]; unregistered on drop.
///
/// # Invariants
///
/// The probe is registered (and marked so in `REGISTERED`) while this exists.
pub(crate) struct KretprobeRegistration(Kretprobe);

impl KretprobeRegistration {
    /// Registers `probe`. Fails with `EBUSY` if it is registered already, or with the kprobes core's
    /// error (logged: the function may be inlined, not built in, or blacklisted).
    pub(crate) fn register(probe: Kretprobe) -> Result<Self> {
        let flag = &REGISTERED[probe as usize];
        if flag.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        // SAFETY: a static kretprobe of the shim whose handlers are toa's, not registered (the flag).
        let ret = unsafe { ffi::register_kretprobe(probe.as_ptr()) };
        if ret < 0 {
            flag.store(false, Ordering::Release);
            return Err(failed(
                "probe",
                probe.symbol(),
                ret,
                "is it built in and not blacklisted?",
            ));
        }
        Ok(Self(probe))
    }
}

impl Drop for KretprobeRegistration {
    fn drop(&mut self) {
        // SAFETY: registered, by the type invariant. `unregister_kretprobe` waits for handlers in flight;
        // return handlers of calls still in flight are disarmed by the kprobes core.
        unsafe { ffi::unregister_kretprobe(self.0.as_ptr()) };
        REGISTERED[self.0 as usize].store(false, Ordering::Release);
    }
}

/// Bytes of per-call data the shim reserves in each `kretprobe_instance` (`TOA_KRP_DATA_SIZE`), pointer
/// aligned.
pub(crate) const KRP_DATA_SIZE: usize = 8 * core::mem::size_of::<usize>();

/// One probed call in flight, as a kretprobe handler sees it: the call's registers and the per-call data
/// area that carries what the entry handler saw to the return handler.
///
/// # Invariants
///
/// `ri` and `regs` are those the kprobes core passed to a handler of one of toa's kretprobes, valid
/// until the handler returns; the data area has [`KRP_DATA_SIZE`] pointer-aligned bytes.
pub(crate) struct KretprobeCall {
    ri: *mut ffi::KretprobeInstance,
    regs: *mut ffi::PtRegs,
}

impl KretprobeCall {
    /// The call passed to a handler.
    ///
    /// # Safety
    ///
    /// `ri` and `regs` are the arguments of a handler of one of toa's kretprobes, and the value is used
    /// only during that handler.
    pub(crate) unsafe fn new(ri: *mut ffi::KretprobeInstance, regs: *mut ffi::PtRegs) -> Self {
        // INVARIANT: per the function's contract.
        Self { ri, regs }
    }

    /// Argument `n` (0-based) of the probed function: meaningful in an entry handler.
    #[inline(always)]
    pub(crate) fn arg(&self, n: u32) -> usize {
        // SAFETY: by the type invariant `regs` are the call's registers.
        unsafe { ffi::toa_regs_arg(self.regs, n) as usize }
    }

    /// The probed function's return value: meaningful in a return handler.
    #[inline(always)]
    pub(crate) fn ret(&self) -> usize {
        // SAFETY: as in `arg`.
        unsafe { ffi::toa_regs_ret(self.regs) as usize }
    }

    /// Stores `v` in the call's data area, for the return handler.
    #[inline(always)]
    pub(crate) fn put<T: Copy>(&self, v: T) {
        const { assert!(core::mem::size_of::<T>() <= KRP_DATA_SIZE) };
        const { assert!(core::mem::align_of::<T>() <= core::mem::align_of::<usize>()) };
        // SAFETY: by the type invariant the area has room for a `T` (the assertions above), is ours
        // for the call, and `T: Copy` has no drop to skip.
        unsafe { ffi::toa_kri_data(self.ri).cast::<T>().write(v) }
    }

    /// The value the entry handler stored with [`KretprobeCall::put`].
    ///
    /// # Safety
    ///
    /// The probe's entry handler stored a `T` for this call (a return handler runs only after its
    /// entry handler returned 0).
    #[inline(always)]
    pub(crate) unsafe fn get<T: Copy>(&self) -> &T {
        // SAFETY: per the function's contract the area holds a `T`, which stays there, unchanged,
        // while the handler (the borrow of `self`) runs.
        unsafe { &*ffi::toa_kri_data(self.ri).cast::<T>() }
    }
}

/// Defines the C entry point `$c` (declared by the shim) of a kretprobe handler written as the safe
/// function `$f: fn(&KretprobeCall) -> c_int` (an entry handler returning non-zero asks for no return
/// handler for this call).
macro_rules! kretprobe_handler {
    ($c:ident => $f:path) => {
        /// C entry point of a kretprobe handler (see [`crate::sys::probes::kretprobe_handler!`]).
        ///
        /// # Safety
        ///
        /// Only called by the kprobes core, for the probe the shim attaches it to.
        #[no_mangle]
        unsafe extern "C" fn $c(
            ri: *mut $crate::ffi::KretprobeInstance,
            regs: *mut $crate::ffi::PtRegs,
        ) -> core::ffi::c_int {
            // SAFETY: the kprobes core's arguments, used only during this call.
            $f(&unsafe { $crate::sys::probes::KretprobeCall::new(ri, regs) })
        }
    };
}
pub(crate) use kretprobe_handler;

/// toa's ftrace callbacks: the shim's static `struct ftrace_ops`.
#[derive(Clone, Copy)]
pub(crate) enum FtraceHook {
    /// `inet_sock_destruct`: every inet socket, on every close path, before its memory is freed.
    InetSockDestruct,
    /// `inet_csk_listen_stop`: a listener stops listening (close, shutdown, disconnect).
    ListenStop,
    /// `tcp_set_ulp`: an upper-layer protocol (kTLS, ESP in TCP...) is about to be attached to a socket.
    TcpSetUlp,
}

/// Whether each [`FtraceHook`] is registered, so that none is registered twice.
static FTRACE_REGISTERED: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

impl FtraceHook {
    /// The traced function.
    pub(crate) fn symbol(self) -> &'static CStr {
        match self {
            FtraceHook::InetSockDestruct => c"inet_sock_destruct",
            FtraceHook::ListenStop => c"inet_csk_listen_stop",
            FtraceHook::TcpSetUlp => c"tcp_set_ulp",
        }
    }

    fn as_ptr(self) -> *mut ffi::FtraceOps {
        match self {
            FtraceHook::InetSockDestruct => core::ptr::addr_of_mut!(ffi::toa_ftrace_sock_destruct),
            FtraceHook::ListenStop => core::ptr::addr_of_mut!(ffi::toa_ftrace_listen_stop),
            FtraceHook::TcpSetUlp => core::ptr::addr_of_mut!(ffi::toa_ftrace_tcp_set_ulp),
        }
    }
}

/// A registered [`FtraceHook`], called at the entry of its function only; unregistered on drop.
///
/// # Invariants
///
/// The ops is filtered on its function and registered while this exists.
pub(crate) struct FtraceRegistration(FtraceHook);

impl FtraceRegistration {
    /// Filters `hook`'s ops on its function, then registers it. Fails with `EBUSY` if it is registered
    /// already, or with ftrace's error (logged).
    pub(crate) fn register(hook: FtraceHook) -> Result<Self> {
        let flag = &FTRACE_REGISTERED[hook as usize];
        if flag.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        let ops = hook.as_ptr();
        // `ftrace_set_filter` parses its buffer in place: hand it a copy.
        let mut name = [0u8; 64];
        let bytes = hook.symbol().to_bytes();
        name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: the shim's ops, not registered (the flag); `name` holds `bytes.len()` bytes and a NUL.
        let mut ret =
            unsafe { ffi::ftrace_set_filter(ops, name.as_mut_ptr(), bytes.len() as i32, 1) };
        if ret == 0 {
            // SAFETY: as above; filtered on one function, whose callback is toa's.
            ret = unsafe { ffi::register_ftrace_function(ops) };
            if ret < 0 {
                // SAFETY: not registered; frees the filter set above.
                unsafe { ffi::ftrace_free_filter(ops) };
            }
        }
        if ret < 0 {
            flag.store(false, Ordering::Release);
            return Err(failed(
                "trace",
                hook.symbol(),
                ret,
                "is it built in and traceable?",
            ));
        }
        Ok(Self(hook))
    }
}

impl Drop for FtraceRegistration {
    fn drop(&mut self) {
        let ops = self.0.as_ptr();
        // SAFETY: registered, by the type invariant; `unregister_ftrace_function` waits for callbacks in
        // flight (a module's ops is dynamic: ftrace synchronizes before returning), then the filter
        // goes.
        unsafe {
            ffi::unregister_ftrace_function(ops);
            ffi::ftrace_free_filter(ops);
        }
        FTRACE_REGISTERED[self.0 as usize].store(false, Ordering::Release);
    }
}

/// One traced call, as an ftrace callback at the function's entry sees it.
///
/// # Invariants
///
/// `fregs` are the registers ftrace passed to one of toa's callbacks, valid until it returns; the
/// callback runs with preemption disabled (the recursion check of [`ftrace_callback!`] disables it).
pub(crate) struct FtraceCall {
    fregs: *mut ffi::FtraceRegs,
    rcu: RcuSection,
}

impl FtraceCall {
    /// The call passed to a callback.
    ///
    /// # Safety
    ///
    /// `fregs` is the argument of one of toa's ftrace callbacks, which holds the recursion lock
    /// (preemption is disabled) while the value is used, and only during the callback.
    pub(crate) unsafe fn new(fregs: *mut ffi::FtraceRegs) -> Self {
        // INVARIANT: per the function's contract.
        Self {
            fregs,
            // SAFETY: preemption is disabled while the value lives (the contract): an RCU read-side
            // section.
            rcu: unsafe { RcuSection::assume() },
        }
    }

    /// The RCU read-side section the callback is in (preemption is disabled during it).
    #[inline(always)]
    pub(crate) fn rcu(&self) -> &RcuSection {
        &self.rcu
    }

    /// Argument `n` (0-based) of the traced function.
    #[inline(always)]
    pub(crate) fn arg(&self, n: u32) -> usize {
        // SAFETY: by the type invariant `fregs` are the call's registers.
        unsafe { ffi::toa_fregs_arg(self.fregs, n) as usize }
    }
}

/// Defines the C entry point `$c` (declared by the shim) of an ftrace callback written as the safe
/// function `$f: fn(&FtraceCall)`. The ops leaves the recursion check to its callback (no
/// `FTRACE_OPS_FL_RECURSION`: ftrace would drop a refused call silently): a call the check refuses is
/// not handled and `$missed()` is called instead. The check also disables preemption until `$f`
/// returns.
macro_rules! ftrace_callback {
    ($c:ident => $f:path, missed: $missed:path) => {
        /// C entry point of an ftrace callback (see [`crate::sys::probes::ftrace_callback!`]).
        ///
        /// # Safety
        ///
        /// Only called by ftrace, for the ops the shim defines with it.
        #[no_mangle]
        unsafe extern "C" fn $c(
            ip: core::ffi::c_ulong,
            parent_ip: core::ffi::c_ulong,
            _op: *mut $crate::ffi::FtraceOps,
            fregs: *mut $crate::ffi::FtraceRegs,
        ) {
            // SAFETY: ftrace's arguments; the lock is released below, in the same context.
            let bit = unsafe { $crate::ffi::toa_ftrace_recursion_trylock(ip, parent_ip) };
            if bit < 0 {
                $missed();
                return;
            }
            // SAFETY: ftrace's registers, used only during this call, under the recursion lock.
            $f(&unsafe { $crate::sys::probes::FtraceCall::new(fregs) });
            // SAFETY: taken above.
            unsafe { $crate::ffi::toa_ftrace_recursion_unlock(bit) };
        }
    };
}
pub(crate) use ftrace_callback;
