// SPDX-License-Identifier: GPL-2.0

//! How toa's handlers are reached: TCP listeners call toa's copies of the kernel's tables.
//!
//! A TCP listener (IPv4 or IPv6, created by an application) gets two tables from toa (`src/sys/ops.rs`):
//! * a connection table whose `syn_recv_sock` calls the kernel's, then hands the new child to
//!   [`hooks::connection_created`] and gives the child the kernel's table (the child was cloned from
//!   the listener with toa's);
//! * a socket-call table whose `getname` answers a TOA socket from its entry. Sockets `accept()`ed from
//!   the listener inherit it; a socket without an entry gets the kernel's table back on its first
//!   `getname` (usually `accept()`'s own), so that it never costs toa anything again.
//!
//! Listeners get the tables when they start listening (`inet_csk_listen_start`'s return), and at load
//! time for those already listening. They give them back when they stop listening
//! (`inet_csk_listen_stop`), and any TCP socket gives them back when an upper-layer protocol is
//! attached to it (`tcp_set_ulp`): kTLS and ESP in TCP build their own long-lived tables by copying the
//! socket's, and a copy of toa's `getname` there would outlive the module. Sockets made by kernel users
//! (SMC's and MPTCP's inner TCP sockets, in-kernel servers) are left alone: those users save and
//! replace the tables themselves.
//!
//! Around a load: `accept()` gives the new socket its listener's table when the call starts, so an
//! `accept()` already waiting when toa loads returns its connection with the kernel's table (its
//! `getpeername()` answers the load balancer; getsockopt 4096 answers); the next ones have toa's. A
//! handshake completing in the kernel's `syn_recv_sock` while the load gives its listener toa's tables
//! makes a child with toa's connection table that never went through toa's wrapper: no TOA is stored
//! for it, and it keeps that table for life (why the copies outlive the module, see Unload). A
//! `listen()` that is past `inet_csk_listen_start`'s entry when the hook is registered but puts the
//! socket in the listening hash only after the load-time walk passed its bucket is not adopted (that
//! listener answers like the kernel until it listens again); the walk runs right after the hook is
//! registered, so the window is a few instructions wide.
//!
//! What toa answers on a socket whose table the kernel replaced later: after `TCP_ULP` (kTLS, ESP in
//! TCP) or `IPV6_ADDRFORM`, `getpeername()` gives what the kernel knows (the load balancer's address);
//! `accept()` already gave the client, and getsockopt 4096 still does.
//!
//! # Unload
//!
//! No toa address may stay reachable from any socket or table once the module is gone. [`Redirect`]'s
//! `drop` goes, in order:
//! 1. The `listen()` hook goes: no socket gets toa's tables any more.
//! 2. Every listener in TCP's listening hash (shared by all namespaces) gets the kernel's tables back,
//!    under the hash bucket's lock (which keeps the listener and its `struct socket` alive). A listener
//!    that left the hash went through `inet_csk_listen_stop`, whose hook gave them back; a child gets
//!    the kernel's connection table inside toa's `syn_recv_sock`, before it returns.
//! 3. Both copies are neutralized: their toa slot holds the kernel's function again. A call that loads
//!    a slot from now on never reaches toa. Both copies are allocated and left allocated for good (5),
//!    as tables of the kernel's functions from then on: an accepted socket that never called `getname`
//!    (or a socket in a blocked `accept()`) keeps its listener's socket-call table; and a child whose
//!    handshake was completing in the kernel's own `syn_recv_sock` (its listener's table loaded just
//!    before a load gave the listener toa's) was cloned with toa's connection table and never passed
//!    through toa's wrapper, so it keeps that table for life. With the connection table a module
//!    static, such a child crashed the kernel at its next `getsockopt()` or transmit after `rmmod`
//!    (seen under the unload test on the debug kernel: a KASAN page fault in `tcp_getsockopt` on the
//!    freed module's table).
//! 4. The `tcp_set_ulp` and `inet_csk_listen_stop` hooks go; then toa waits for calls in flight: softirqs
//!    in `syn_recv_sock` (RCU), tasks between loading `getname` and leaving toa's (RCU Tasks: a task
//!    preempted there has made no voluntary context switch), and calls toa forwarded to the kernel's
//!    `getname`, which may sleep in `lock_sock` (a counter), then RCU Tasks once more for the
//!    instructions after the counter's decrement.
//! 5. The copies are retired: left allocated, neutralized, marked for kmemleak (see 3).

use crate::ffi::{AF_INET, AF_INET6, TCP_LISTEN};
use crate::hooks;
use crate::sys::ops::{
    self, getname_wrapper, syn_recv_sock_wrapper, AfOpsCopy, GetnameCall, KernelTables,
    ProtoOpsCopy, SynRecvSockCall,
};
use crate::sys::probes::{
    ftrace_callback, kretprobe_handler, FtraceCall, FtraceHook, FtraceRegistration, Kretprobe,
    KretprobeCall, KretprobeRegistration,
};
use crate::sys::sock::{Sock, SockLock, Socket};
use crate::sys::sync::Published;
use core::ffi::c_int;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// `IPPROTO_TCP`.
const IPPROTO_TCP: u8 = 6;

/// A family's kernel tables and toa's copies of them.
struct Family {
    kernel: KernelTables,
    af_ops: AfOpsCopy,
    proto_ops: ProtoOpsCopy,
}

/// Both families'.
struct Tables {
    v4: Family,
    v6: Family,
}

/// The tables, published for the wrappers and hooks while a [`Redirect`] exists.
static TABLES: Published<Tables> = Published::new();

/// The published tables.
#[inline(always)]
fn tables() -> &'static Tables {
    // SAFETY: the wrappers and hooks, the only callers, are reachable only while a `Redirect` exists,
    // which publishes the tables before making them reachable and takes them back after waiting for
    // every call (see the unload protocol above).
    unsafe { TABLES.get() }
}

syn_recv_sock_wrapper!(toa_syn_recv_sock_v4, kernel: tables().v4.kernel, then: child_created_v4);
syn_recv_sock_wrapper!(toa_syn_recv_sock_v6, kernel: tables().v6.kernel, then: child_created_v6);
getname_wrapper!(toa_getname_v4, kernel: &tables().v4.kernel, then: getname_v4);
getname_wrapper!(toa_getname_v6, kernel: &tables().v6.kernel, then: getname_v6);
kretprobe_handler!(toa_listen_start_entry => listen_start_entry);
kretprobe_handler!(toa_listen_start_ret => listen_start_ret);
ftrace_callback!(toa_listen_stop_ftrace => listen_stop, missed: listen_stop_was_missed);
ftrace_callback!(toa_tcp_set_ulp_ftrace => tcp_set_ulp, missed: tcp_set_ulp_was_missed);

impl Family {
    /// Copies `kernel`'s tables with toa's `syn_recv_sock` and `getname`.
    fn new(
        kernel: KernelTables,
        syn_recv_sock: crate::ffi::SynRecvSockFn,
        getname: crate::ffi::GetnameFn,
    ) -> Result<Self> {
        Ok(Family {
            kernel,
            af_ops: AfOpsCopy::new(kernel, syn_recv_sock)?,
            proto_ops: ProtoOpsCopy::new(kernel, getname)?,
        })
    }

    /// Gives the listener `lock` holds toa's tables, if it is an application's TCP listener of this
    /// family with the kernel's tables.
    fn adopt(&self, lock: &SockLock<'_>) {
        let sk = lock.sk();
        if sk.state() != TCP_LISTEN || sk.is_kernel_socket() {
            return;
        }
        let Some(sock) = lock.socket() else {
            return;
        };
        // Both must be the kernel's TCP tables: a socket with any other has an owner that swaps them.
        if sk.af_ops() != self.kernel.af_ops() || sock.ops() != self.kernel.proto_ops() {
            return;
        }
        // SAFETY: full copies of the socket's family's tables, valid as long as any socket can call
        // them: both stay allocated for good (unload steps 3 and 5).
        unsafe {
            sk.replace_af_ops(self.kernel.af_ops(), self.af_ops.as_ptr());
            sock.replace_ops(self.kernel.proto_ops(), self.proto_ops.as_ptr());
        }
    }

    /// Gives `sk` (and its `struct socket`, if any) the kernel's tables back where they are toa's.
    fn give_back(&self, sk: &Sock, sock: Option<&Socket>) {
        // SAFETY: the kernel's own tables, static.
        unsafe {
            sk.replace_af_ops(self.af_ops.as_ptr(), self.kernel.af_ops());
            if let Some(sock) = sock {
                sock.replace_ops(self.proto_ops.as_ptr(), self.kernel.proto_ops());
            }
        }
    }
}

impl Tables {
    /// The family of `sk`'s tables, for a TCP socket of `AF_INET` or `AF_INET6`.
    fn of(&self, sk: &Sock) -> Option<&Family> {
        if sk.protocol() != u16::from(IPPROTO_TCP) {
            return None;
        }
        match sk.family() {
            AF_INET => Some(&self.v4),
            AF_INET6 => Some(&self.v6),
            _ => None,
        }
    }
}

/// `syn_recv_sock` through toa's IPv4 table: see [`child_created`].
fn child_created_v4(call: &SynRecvSockCall, child: &Sock, own_req: bool) {
    child_created(&tables().v4, call, child, own_req);
}

/// `syn_recv_sock` through toa's IPv6 table (IPv4 clients of a dual-stack listener included).
fn child_created_v6(call: &SynRecvSockCall, child: &Sock, own_req: bool) {
    child_created(&tables().v6, call, child, own_req);
}

/// The kernel created `child` from the listener's handshake: the child, cloned from the listener,
/// gets the kernel's connection table (an IPv4 child of an IPv6 listener has `ipv6_mapped` already,
/// left as is); if the kernel keeps it (`own_req`), toa looks for its TOA.
fn child_created(family: &Family, call: &SynRecvSockCall, child: &Sock, own_req: bool) {
    family.give_back(child, None);
    if own_req {
        hooks::connection_created(call.skb(), child);
    }
}

/// `getname` through toa's IPv4 table: see [`getname`].
fn getname_v4(call: &GetnameCall<'_>) -> c_int {
    getname(&tables().v4, call)
}

/// `getname` through toa's IPv6 table.
fn getname_v6(call: &GetnameCall<'_>) -> c_int {
    getname(&tables().v6, call)
}

/// A TOA socket is answered from its entry ([`hooks::getname`]); any other socket but a listener gets
/// the kernel's table back, then the kernel's answer.
#[inline(always)]
fn getname(family: &Family, call: &GetnameCall<'_>) -> c_int {
    let sock = call.socket();
    let Some(sk) = sock.sk() else {
        return call.forward();
    };
    if let Some(ret) = hooks::getname(call, sk) {
        return ret;
    }
    if sk.state() != TCP_LISTEN {
        // SAFETY: the kernel's own table, static.
        unsafe { sock.replace_ops(family.proto_ops.as_ptr(), family.kernel.proto_ops()) };
    }
    call.forward()
}

/// Entry of `inet_csk_listen_start(sk)`: keeps `sk` for the return handler.
fn listen_start_entry(call: &KretprobeCall) -> c_int {
    call.put(call.arg(0));
    0
}

/// Return of `inet_csk_listen_start`: a socket that now listens (0) gets toa's tables. The caller
/// (`listen()`) holds the socket's lock, and the socket is in the listening hash already, where the
/// unload finds it.
fn listen_start_ret(call: &KretprobeCall) -> c_int {
    if call.ret() as c_int != 0 {
        return 0;
    }
    // SAFETY: the entry handler stored the socket.
    let sk = *unsafe { call.get::<usize>() } as *const crate::ffi::Sock;
    // SAFETY: cannot be avoided, an untyped register: the socket `listen()` holds, referenced and
    // locked for the whole call.
    let sk = unsafe { Sock::from_raw(sk) };
    if let Some(family) = tables().of(sk) {
        // SAFETY: `listen()` holds the lock (`inet_csk_listen_start` is called with it).
        family.adopt(&*unsafe { SockLock::assume_held(sk) });
    }
    0
}

/// `inet_csk_listen_stop(sk)` (close, shutdown or disconnect of a listener, with its lock held):
/// the kernel's tables back.
fn listen_stop(call: &FtraceCall) {
    // SAFETY: cannot be avoided, an untyped register: the listener, referenced and locked by the
    // caller for the whole call.
    let sk = unsafe { Sock::from_raw(call.arg(0) as *const crate::ffi::Sock) };
    give_back_locked(sk);
}

/// `tcp_set_ulp(sk, name)`, before the upper-layer protocol copies the socket's tables: the kernel's
/// tables back.
fn tcp_set_ulp(call: &FtraceCall) {
    // SAFETY: cannot be avoided, an untyped register: the socket of the `TCP_ULP` setsockopt,
    // referenced and locked by the caller for the whole call.
    let sk = unsafe { Sock::from_raw(call.arg(0) as *const crate::ffi::Sock) };
    give_back_locked(sk);
}

/// Gives a socket whose lock the caller holds the kernel's tables back.
fn give_back_locked(sk: &Sock) {
    if let Some(family) = tables().of(sk) {
        // SAFETY: the hooked functions' callers hold the socket's lock.
        let lock = unsafe { SockLock::assume_held(sk) };
        family.give_back(sk, lock.socket());
    }
}

/// Hook calls refused by ftrace's recursion check (`missed_listen_stop`, `missed_tcp_set_ulp`).
static STOP_MISSED: AtomicU64 = AtomicU64::new(0);
static ULP_MISSED: AtomicU64 = AtomicU64::new(0);

fn listen_stop_was_missed() {
    STOP_MISSED.fetch_add(1, Ordering::Relaxed);
}

fn tcp_set_ulp_was_missed() {
    ULP_MISSED.fetch_add(1, Ordering::Relaxed);
}

/// Hook misses, for `/proc/net/toa_stats`: (`missed_listen_start`, `missed_listen_stop`,
/// `missed_tcp_set_ulp`).
pub(crate) fn missed() -> (u64, u64, u64) {
    (
        Kretprobe::ListenStart.nmissed(),
        STOP_MISSED.load(Ordering::Relaxed),
        ULP_MISSED.load(Ordering::Relaxed),
    )
}

/// toa's tables on TCP listeners, from load to unload (see the module's documentation).
pub(crate) struct Redirect {
    ulp: Option<FtraceRegistration>,
    listen_stop: Option<FtraceRegistration>,
    listen_start: Option<KretprobeRegistration>,
}

impl Redirect {
    /// Makes the copies, hooks `tcp_set_ulp`, `inet_csk_listen_stop` and `inet_csk_listen_start`, then
    /// gives the tables to the listeners already there.
    pub(crate) fn new() -> Result<Self> {
        let v4 = KernelTables::ipv4()?;
        let v6 = KernelTables::ipv6()?;
        let copies = Tables {
            v4: Family::new(v4, toa_syn_recv_sock_v4, toa_getname_v4)?,
            v6: Family::new(v6, toa_syn_recv_sock_v6, toa_getname_v6)?,
        };
        // SAFETY: nothing is published, and the readers (the hooks and the tables' wrappers) are made
        // reachable below.
        unsafe { TABLES.set(copies) };
        // From here on, dropping `this` undoes whatever was done.
        let mut this = Redirect {
            ulp: None,
            listen_stop: None,
            listen_start: None,
        };
        this.ulp = Some(FtraceRegistration::register(FtraceHook::TcpSetUlp)?);
        this.listen_stop = Some(FtraceRegistration::register(FtraceHook::ListenStop)?);
        this.listen_start = Some(KretprobeRegistration::register(Kretprobe::ListenStart)?);
        // Listeners already there. Each under its lock, as `listen()` would: a `TCP_ULP` setsockopt
        // cannot slip between the test and the swap.
        for sk in ops::tcp_listeners()? {
            if let Some(family) = tables().of(&sk) {
                family.adopt(&sk.lock());
            }
        }
        Ok(this)
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        // 1. No new listener gets the tables.
        self.listen_start = None;
        let t = tables();
        // 2. Listeners give them back.
        // Cannot fail: the closure does not.
        let _ = ops::for_each_tcp_listener(|sk, sock| {
            if let Some(family) = t.of(sk) {
                family.give_back(sk, sock);
            }
            Ok(())
        });
        // 3. Whatever still reaches the copies calls the kernel's functions.
        for family in [&t.v4, &t.v6] {
            family.af_ops.neutralize();
            family.proto_ops.neutralize();
        }
        // 4. The hooks that only give back go, then the calls in flight end.
        self.ulp = None;
        self.listen_stop = None;
        ops::synchronize_table_calls();
        ops::wait_forwarded_getname();
        ops::synchronize_table_calls();
        // SAFETY: every reader is gone (above).
        let tables = unsafe { TABLES.take() };
        // 5. The copies stay allocated, neutralized, for the sockets that may still point at them.
        for family in [tables.v4, tables.v6] {
            family.af_ops.retire();
            family.proto_ops.retire();
        }
    }
}
