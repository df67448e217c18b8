// SPDX-License-Identifier: GPL-2.0

//! The current task: which syscall it is in, and a user word read without faulting.

use crate::ffi;
use core::ffi::{c_int, c_ulong};

/// The socket syscalls toa needs to recognise.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syscall {
    /// `getpeername(2)`.
    Getpeername,
    /// `getsockname(2)`.
    Getsockname,
    /// `accept(2)`.
    Accept,
    /// `accept4(2)`.
    Accept4,
    /// Any other.
    Other,
}

/// The syscall the current task is in, with its raw arguments.
pub(crate) struct SyscallCall {
    /// Which syscall.
    pub(crate) nr: Syscall,
    /// Its six arguments, as the task passed them (user addresses are not checked).
    pub(crate) args: [c_ulong; 6],
}

/// The syscall of the current task, when it is a user task (not a kernel thread) in a native (not
/// compat) syscall, in task context; `None` otherwise.
pub(crate) fn current_syscall() -> Option<SyscallCall> {
    // SAFETY: context checks of the current task, valid in any context.
    let native_user = unsafe {
        ffi::toa_in_task() && !ffi::toa_current_is_kthread() && !ffi::toa_in_compat_syscall()
    };
    if !native_user {
        return None;
    }
    // SAFETY: a user task in task context has saved syscall registers; reading them has no effect.
    let nr = unsafe { ffi::toa_syscall_nr() };
    // SAFETY: the shim's constants (`__NR_*`).
    let nr = unsafe {
        match nr {
            n if n == ffi::toa_nr_getpeername => Syscall::Getpeername,
            n if n == ffi::toa_nr_getsockname => Syscall::Getsockname,
            n if n == ffi::toa_nr_accept => Syscall::Accept,
            n if n == ffi::toa_nr_accept4 => Syscall::Accept4,
            _ => Syscall::Other,
        }
    };
    let mut args: [c_ulong; 6] = [0; 6];
    // SAFETY: as above; `args` has the six slots the shim fills.
    unsafe { ffi::toa_syscall_args(&mut args) };
    Some(SyscallCall { nr, args })
}

/// The `int` at user address `addr` of the current task, read with `copy_from_user_nofault` (never
/// sleeps, never faults: usable with preemption disabled); `None` if it cannot be read.
pub(crate) fn read_user_int_nofault(addr: c_ulong) -> Option<c_int> {
    let mut v: c_int = 0;
    // SAFETY: `v` is a local of the size copied; the source is a user address, checked by the call.
    let ret = unsafe {
        ffi::copy_from_user_nofault(
            core::ptr::from_mut(&mut v).cast(),
            addr as *const core::ffi::c_void,
            core::mem::size_of::<c_int>(),
        )
    };
    (ret == 0).then_some(v)
}
