// SPDX-License-Identifier: GPL-2.0

//! The handlers: where toa sees connections being born, named and destroyed.
//!
//! * [`connection_created`]: the kernel created a child socket from the packet that completes the
//!   handshake (final ACK, SYN-cookie ACK, or TCP Fast Open SYN) and keeps it. Its TCP options are
//!   scanned and a TOA is stored for the child. Reached through the listener's `syn_recv_sock`
//!   (`src/redirect.rs`), in softirq context.
//! * [`getname`]: `accept()` and `getpeername()` on a TOA socket get the stored client address, and
//!   `getsockname()` the VIP the TOA carried. Reached through the socket's `getname`.
//! * `inet_sock_destruct` (an ftrace callback at its entry, not a kprobe, see `src/toa_shim.c`): every
//!   inet socket ends here before its memory is freed; its entry is removed.
//!
//! Handlers never sleep and never fail the call they are in: toa only ever adds information.

use crate::ffi::{self, AF_INET, AF_INET6, TCP_CLOSE, TCP_SYN_SENT};
use crate::sockaddr::{SockaddrIn, SockaddrIn6};
use crate::stats::{self, Counter};
use crate::store;
use crate::sys::ops::GetnameCall;
use crate::sys::params;
use crate::sys::probes::{ftrace_callback, FtraceCall};
use crate::sys::skb::TcpSkBuff;
use crate::sys::sock::Sock;
use crate::sys::sync::{self, RcuReadGuard, RcuSection};
use crate::sys::task;
use crate::trust::TrustList;
use crate::wire::{self, Addr, Endpoint, Scan, Toa};
use core::ffi::c_int;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use kernel::alloc::flags::GFP_KERNEL;
use kernel::prelude::*;

/// Prints a debug line when the `debug` parameter is on, rate-limited.
///
/// An [`Endpoint`](crate::wire::Endpoint) is printed as `format_args!("{}", e)`: from some version on
/// (7.2 does), `pr_*!` format `{}` with `kernel::fmt::Display`, which `core::fmt::Arguments` implements in
/// every version and `Endpoint`, a type of the host crate `toa-wire`, does not.
macro_rules! toa_debug {
    ($($arg:tt)*) => {
        if $crate::sys::params::debug_line_allowed() {
            pr_info!($($arg)*);
        }
    };
}

ftrace_callback!(toa_sock_destruct_ftrace => sock_destruct, missed: destruct_was_missed);

/// The kernel created `child` from `skb`, the packet that completes the handshake, and keeps it: its
/// TOA, if any, is stored.
pub(crate) fn connection_created(skb: &TcpSkBuff, child: &Sock) {
    // One read-side section for the counters: usually the softirq's own.
    sync::with_rcu(|rcu| connection_created_in(skb, child, rcu))
}

/// [`connection_created`] in the read-side section `rcu`.
fn connection_created_in(skb: &TcpSkBuff, child: &Sock, rcu: &RcuSection) {
    let Some(toa) = find_toa(skb, child, rcu) else {
        stats::inc_in(child, Counter::SynRecvSockNoToa, rcu);
        return;
    };
    stats::inc_in(child, Counter::SynRecvSockToa, rcu);
    if store::insert(child, &toa, rcu).is_ok() {
        toa_debug!(
            "TOA {:?}: client {} stored for sk {:p}\n",
            toa.origin,
            format_args!("{}", toa.client),
            child.as_ptr()
        );
    }
}

/// The trusted load-balancer sources, published for the hooks while a [`Trust`] owns them; null when
/// every source is trusted.
static TRUST: AtomicPtr<TrustList> = AtomicPtr::new(core::ptr::null_mut());

/// Owner of the `trusted_sources` list parsed at load.
pub(crate) struct Trust(());

impl Trust {
    /// Parses the `trusted_sources` parameter; an invalid value fails the load with a line saying which
    /// entry is wrong.
    pub(crate) fn new() -> Result<Self> {
        let Ok(text) = params::trusted_sources().to_str() else {
            pr_err!("trusted_sources is not valid UTF-8\n");
            return Err(EINVAL);
        };
        let list = TrustList::parse(text).map_err(|(i, why)| {
            pr_err!(
                "invalid trusted_sources entry {} ({:?}) in \"{}\"\n",
                i + 1,
                why,
                text
            );
            EINVAL
        })?;
        if !list.is_empty() {
            TRUST.store(
                KBox::into_raw(KBox::new(list, GFP_KERNEL)?),
                Ordering::Release,
            );
        }
        Ok(Trust(()))
    }
}

impl Drop for Trust {
    fn drop(&mut self) {
        // The probes, the only readers, are unregistered before this drops.
        let p = TRUST.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: `p` came from `KBox::into_raw` in `new`, and no one reads it any more.
            drop(unsafe { KBox::from_raw(p) });
        }
    }
}

/// Whether a TOA in a packet from the source address in `ip_header` may be used.
pub(crate) fn trusted(ip_header: &[u8]) -> bool {
    let list = TRUST.load(Ordering::Acquire);
    if list.is_null() {
        return true;
    }
    // SAFETY: a non-null list stays allocated while the probes (our callers) are registered.
    let list = unsafe { &*list };
    wire::ip_source(ip_header).is_some_and(|src| list.trusts(&src))
}

/// The TOA of the packet that created `child`, counting what was found or malformed.
///
/// An IP-level TOA (the IP-option TOA/UOA design) wins over a TCP-option TOA in the same packet: it
/// is the carrier the load balancers of that design use for both TOA and UOA, and it brings the VIP,
/// so `getpeername()` and `getsockname()` then answer from one and the same option. A malformed
/// IP-option block is ignored (and counted) and the TCP options are still looked at.
fn find_toa(skb: &TcpSkBuff, child: &Sock, rcu: &RcuSection) -> Option<Toa> {
    let ip_header = skb.ip_header();
    let toa = ip_or_tcp_toa(skb, child, ip_header, rcu)?;
    if !trusted(ip_header) {
        stats::inc_in(child, Counter::UntrustedSource, rcu);
        toa_debug!(
            "TOA from an untrusted source ignored for sk {:p}\n",
            child.as_ptr()
        );
        return None;
    }
    Some(toa)
}

/// The IP-option TOA of the packet, else its TCP-option TOA (see [`find_toa`]).
fn ip_or_tcp_toa(skb: &TcpSkBuff, child: &Sock, ip_header: &[u8], rcu: &RcuSection) -> Option<Toa> {
    match wire::scan_ip_header(ip_header) {
        Scan::Found(toa) => {
            stats::inc_in(child, Counter::IpOptionToa, rcu);
            return Some(toa);
        }
        Scan::Malformed(why) => {
            stats::inc_in(child, Counter::IpOptionMalformed, rcu);
            toa_debug!(
                "malformed IP options ({:?}) ignored for sk {:p}\n",
                why,
                child.as_ptr()
            );
        }
        Scan::NoToa => {}
    }
    match wire::scan_tcp_header(skb.tcp_header()) {
        Scan::Found(toa) => Some(toa),
        Scan::NoToa => None,
        Scan::Malformed(why) => {
            stats::inc_in(child, Counter::TcpOptionMalformed, rcu);
            toa_debug!(
                "malformed TCP options ({:?}) ignored for sk {:p}\n",
                why,
                child.as_ptr()
            );
            None
        }
    }
}

/// `sizeof(struct sockaddr_in6)`, the return value of a getname that wrote one.
const SOCKADDR_IN6_LEN: usize = core::mem::size_of::<SockaddrIn6>();

/// Whether the task's current syscall is `getpeername`/`getsockname`/`accept`/`accept4` and its user
/// buffer holds a `sockaddr_in6` (the IP-option TOA/UOA design's condition to return an IPv6 address
/// on an `AF_INET` socket). Only a native syscall of a user task qualifies: there the kernel buffer is
/// a `sockaddr_storage`.
#[cold]
fn caller_buffer_holds_sockaddr_in6() -> bool {
    let Some(call) = task::current_syscall() else {
        return false;
    };
    [
        task::Syscall::Getpeername,
        task::Syscall::Getsockname,
        task::Syscall::Accept,
        task::Syscall::Accept4,
    ]
    .contains(&call.nr)
        && task::read_user_int_nofault(call.args[2])
            .is_some_and(|l| usize::try_from(l).is_ok_and(|l| l >= SOCKADDR_IN6_LEN))
}

/// Writes `ep` as the answer of a getname call, by the family rules of the README: the socket's own
/// family, IPv4 as `::ffff:a.b.c.d` on `AF_INET6`, and an IPv6 address on an `AF_INET` socket only in
/// the IP-option TOA/UOA design's mode (`nat64_getpeername`) when the caller's buffer holds it. Returns
/// the answer's length, or `None` when `ep` cannot be given on this socket.
#[inline(always)]
fn answer(call: &GetnameCall<'_>, ep: &Endpoint) -> Option<c_int> {
    match (call.kernel().family(), ep.addr) {
        (AF_INET, Addr::V4(a)) => call.write_in(SockaddrIn::new(a, ep.port)),
        (AF_INET, Addr::V6(a))
            if params::nat64_getpeername() && caller_buffer_holds_sockaddr_in6() =>
        {
            // SAFETY: the caller is one of the getname/accept syscalls, whose kernel buffer is a
            // `sockaddr_storage` (128 bytes), and whose user buffer holds the 28 bytes returned.
            unsafe { call.write_in6_unchecked(SockaddrIn6::new(a, ep.port)) }
        }
        (AF_INET6, _) => call.write_in6(SockaddrIn6::mapped(ep)),
        _ => None,
    }
}

/// `getname` on a socket with a TOA: `accept()`/`getpeername()` get the client, `getsockname()` the
/// VIP when the TOA carried one (and `getsockname_vip` is on). `None` when `sk` has no TOA: the caller
/// lets the kernel answer.
///
/// A peer answer needs no socket lock: it comes from the entry, which lives as long as the socket. The
/// kernel's own `-ENOTCONN` cases hold: `getpeername()` in `CLOSE` or `SYN_SENT` gets it here, and a
/// socket whose peer port went to 0 (disconnected) no longer matches its entry's port tag, so the
/// kernel answers it. The cgroup BPF `getpeername` hook does not run (its answer would be replaced
/// anyway).
///
/// Inlined, with the `getsockname()` path, into toa's `getname` (`src/redirect.rs`), and the common
/// answer (an IPv4 client on an IPv4 socket) written from the entry's words in registers: with these,
/// a `getpeername()` on a TOA socket went from 51 instructions more than the kernel's own answer to 2
/// fewer on Linux 7.2 (`make bench`, row 2).
#[inline(always)]
pub(crate) fn getname(call: &GetnameCall<'_>, sk: &Sock) -> Option<c_int> {
    let peer = call.peer();
    if peer == 0 {
        return sock_name(call, sk);
    }
    // The lookup, the answer and its counter in one read-side section.
    let rcu = RcuReadGuard::new();
    let stored = store::client(sk, &rcu)?;
    // No need to test `sk_dport == 0` as the kernel does: the entry answered for the socket's ports
    // (its tag), which were those of a connected child.
    if peer == 1 && matches!(sk.state(), TCP_CLOSE | TCP_SYN_SENT) {
        return Some(-(kernel::bindings::ENOTCONN as c_int));
    }
    let answered = match stored.v4() {
        // The common case, straight from the entry's words: an IPv4 client on an IPv4 socket.
        Some((addr, port)) if call.kernel().family() == AF_INET => {
            call.write_in(SockaddrIn::new(addr, port))
        }
        _ => answer(call, &stored.endpoint()),
    };
    let Some(len) = answered else {
        // The kernel's answer may sleep (`lock_sock`): out of the section first.
        drop(rcu);
        return Some(call.forward());
    };
    if params::debug() {
        log_answer(sk, stored.endpoint());
    }
    stats::inc_in(sk, Counter::GetnameToaOk, &rcu);
    Some(len)
}

/// The debug line of a `getpeername()`/`accept()` answer (rate-limited).
#[cold]
#[inline(never)]
fn log_answer(sk: &Sock, client: Endpoint) {
    toa_debug!(
        "getname on sk {:p}: {}\n",
        sk.as_ptr(),
        format_args!("{}", client)
    );
}

/// `getsockname()` on a socket with a TOA: the kernel's answer, with the VIP as the address when the
/// TOA carried one and `getsockname_vip` is on; `None` when `sk` has no TOA.
#[inline(always)]
fn sock_name(call: &GetnameCall<'_>, sk: &Sock) -> Option<c_int> {
    let toa = store::lookup(sk)?;
    let ret = call.forward();
    if ret >= 0 && params::getsockname_vip() {
        if let Some(len) = toa.vip.as_ref().and_then(|vip| answer(call, vip)) {
            toa_debug!(
                "getsockname on sk {:p}: {}\n",
                sk.as_ptr(),
                format_args!("{}", toa.vip.as_ref().unwrap_or(&toa.client))
            );
            return Some(len);
        }
    }
    Some(ret)
}

/// Socket destructions the destructor callback could not handle (ftrace's recursion check refused it);
/// each may have left an entry behind. Shown as `missed_sock_destruct`.
static DESTRUCT_MISSED: AtomicU64 = AtomicU64::new(0);

/// How many socket destructions were missed (see [`DESTRUCT_MISSED`]).
pub(crate) fn destruct_missed() -> u64 {
    DESTRUCT_MISSED.load(Ordering::Relaxed)
}

/// Counts a destruction the callback could not handle.
fn destruct_was_missed() {
    DESTRUCT_MISSED.fetch_add(1, Ordering::Relaxed);
}

/// The ftrace callback at the entry of `inet_sock_destruct(sk)`: drops the socket's entry, if it has one.
/// `sk` is being destroyed (no one can look it up any more); its memory is freed only after
/// `inet_sock_destruct` returns. Runs in the context of the destruction (process or softirq).
fn sock_destruct(call: &FtraceCall) {
    // SAFETY: cannot be avoided, an untyped register: the first argument of `inet_sock_destruct(sk)`,
    // whose memory is live until it returns.
    let sk = unsafe { Sock::from_raw(call.arg(0) as *const ffi::Sock) };
    // `contains` first: most sockets have no entry, and a lockless look is cheaper than the bucket lock.
    if store::contains(sk, call.rcu()) {
        store::remove(sk, call.rcu());
    }
}
