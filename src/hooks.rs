// SPDX-License-Identifier: GPL-2.0

//! The hook handlers: where toa sees connections being born, named and destroyed.
//!
//! * `tcp_v4_syn_recv_sock` / `tcp_v6_syn_recv_sock` (return): the kernel created a child socket from the
//!   packet that completes the handshake (final ACK, SYN-cookie ACK, or TCP Fast Open SYN). When the
//!   kernel keeps it (`*own_req`), its TCP options are scanned and a TOA is stored for the child. An
//!   IPv4 packet reaching an IPv6 listener (v4-mapped) goes through `tcp_v6_syn_recv_sock`, which calls
//!   `tcp_v4_syn_recv_sock`: only the inner (v4) probe handles it, so no connection is processed twice.
//! * `inet_getname` / `inet6_getname` (return, for sockets with an entry): `accept()` and `getpeername()`
//!   pass here; the peer address the kernel just wrote is replaced by the stored client address.
//! * `inet_sock_destruct` (an ftrace callback at its entry, not a kprobe, see `src/toa_shim.c`): every
//!   inet socket ends here before its memory is freed; its entry is removed.
//!
//! Handlers run with preemption disabled (softirq for `syn_recv_sock`), never sleep, and never fail the
//! probed call: toa only ever adds information.

use crate::ffi::{self, AF_INET, AF_INET6, ETH_P_IP};
use crate::sockaddr::{SockaddrIn, SockaddrIn6};
use crate::stats::{self, Counter};
use crate::store;
use crate::sys::params;
use crate::sys::probes::{ftrace_callback, kretprobe_handler, FtraceCall, KretprobeCall};
use crate::sys::skb::{SkBuff, TcpSkBuff};
use crate::sys::sock::{Sock, Socket};
use crate::sys::task;
use crate::trust::TrustList;
use crate::wire::{self, Addr, Endpoint, Scan, Toa};
use core::ffi::c_int;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use kernel::alloc::flags::GFP_KERNEL;
use kernel::prelude::*;

/// Prints a debug line when the `debug` parameter is on, rate-limited.
macro_rules! toa_debug {
    ($($arg:tt)*) => {
        if $crate::sys::params::debug_line_allowed() {
            pr_info!($($arg)*);
        }
    };
}

/// What the `syn_recv_sock` entry handler keeps for the return handler.
#[derive(Clone, Copy)]
struct SynRecvCall {
    /// The packet that completes the handshake.
    skb: *const ffi::SkBuff,
    /// The caller's `own_req` (`bool *`), written by the probed function before it returns.
    own_req: *const bool,
}

/// What the getname entry handler keeps for the return handler: the endpoint to report, copied from the
/// socket's entry at entry (it cannot change during the call: an entry goes only when its socket is
/// destroyed, and the caller holds a reference to the socket).
#[derive(Clone, Copy)]
struct GetnameCall {
    /// The socket's `sk`.
    sk: *const ffi::Sock,
    /// The kernel buffer the probed call fills (`struct sockaddr *`).
    uaddr: *mut u8,
    /// The client (`getpeername`, `accept`) or the VIP (`getsockname`).
    ep: Endpoint,
    /// Whether the call asks for the peer (`peer != 0`).
    peer: bool,
}

kretprobe_handler!(toa_syn_recv_sock_entry => syn_recv_sock_entry);
kretprobe_handler!(toa_tcp_v4_syn_recv_sock_ret => tcp_v4_syn_recv_sock_ret);
kretprobe_handler!(toa_tcp_v6_syn_recv_sock_ret => tcp_v6_syn_recv_sock_ret);
kretprobe_handler!(toa_getname_entry => getname_entry);
kretprobe_handler!(toa_getname_ret => getname_ret);
ftrace_callback!(toa_sock_destruct_ftrace => sock_destruct, missed: destruct_was_missed);

/// Entry handler of both `syn_recv_sock` kretprobes, at the entry of
/// `tcp_v{4,6}_syn_recv_sock(sk, skb, req, dst, req_unhash, own_req)`: saves the skb and `own_req` of the
/// call.
fn syn_recv_sock_entry(call: &KretprobeCall) -> c_int {
    call.put(SynRecvCall {
        skb: call.arg(1) as *const ffi::SkBuff,
        own_req: call.arg(5) as *const bool,
    });
    0
}

/// Common return path of both `syn_recv_sock` probes: the new child (or null) and the call's data.
fn syn_recv_sock_ret(call: &KretprobeCall, d: &SynRecvCall) {
    let child = call.ret() as *const ffi::Sock;
    // SAFETY: `own_req` points at the caller's `bool`, written by the probed function before returning.
    if child.is_null() || d.own_req.is_null() || !unsafe { d.own_req.read() } {
        return;
    }
    // SAFETY: cannot be avoided, the probed function's arguments and return value are untyped
    // registers: `child` is the new socket, locked and referenced by the caller; `skb` is the packet in
    // TCP's receive path that created it, held by the caller.
    let (child, skb) = unsafe { (Sock::from_raw(child), SkBuff::from_raw(d.skb).as_tcp()) };
    let Some(toa) = find_toa(skb, child) else {
        stats::inc(child, Counter::SynRecvSockNoToa);
        return;
    };
    stats::inc(child, Counter::SynRecvSockToa);
    if store::insert(child, &toa).is_ok() {
        toa_debug!(
            "TOA {:?}: client {} stored for sk {:p}\n",
            toa.origin,
            toa.client,
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
fn find_toa(skb: &TcpSkBuff, child: &Sock) -> Option<Toa> {
    let ip_header = skb.ip_header();
    let toa = ip_or_tcp_toa(skb, child, ip_header)?;
    if !trusted(ip_header) {
        stats::inc(child, Counter::UntrustedSource);
        toa_debug!(
            "TOA from an untrusted source ignored for sk {:p}\n",
            child.as_ptr()
        );
        return None;
    }
    Some(toa)
}

/// The IP-option TOA of the packet, else its TCP-option TOA (see [`find_toa`]).
fn ip_or_tcp_toa(skb: &TcpSkBuff, child: &Sock, ip_header: &[u8]) -> Option<Toa> {
    match wire::scan_ip_header(ip_header) {
        Scan::Found(toa) => {
            stats::inc(child, Counter::IpOptionToa);
            return Some(toa);
        }
        Scan::Malformed(why) => {
            stats::inc(child, Counter::IpOptionMalformed);
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
            stats::inc(child, Counter::TcpOptionMalformed);
            toa_debug!(
                "malformed TCP options ({:?}) ignored for sk {:p}\n",
                why,
                child.as_ptr()
            );
            None
        }
    }
}

/// Return handler of the `tcp_v4_syn_recv_sock` kretprobe.
fn tcp_v4_syn_recv_sock_ret(call: &KretprobeCall) -> c_int {
    // SAFETY: the entry handler of this probe, `syn_recv_sock_entry`, stored a `SynRecvCall`.
    syn_recv_sock_ret(call, unsafe { call.get::<SynRecvCall>() });
    0
}

/// Return handler of the `tcp_v6_syn_recv_sock` kretprobe (native IPv6 packets only).
fn tcp_v6_syn_recv_sock_ret(call: &KretprobeCall) -> c_int {
    // SAFETY: the entry handler of this probe, `syn_recv_sock_entry`, stored a `SynRecvCall`.
    let d = unsafe { call.get::<SynRecvCall>() };
    // SAFETY: the skb saved at entry, still held by the probed function's caller, in TCP's receive
    // path.
    let skb = unsafe { SkBuff::from_raw(d.skb) };
    // A v4-mapped connection: `tcp_v6_syn_recv_sock` called `tcp_v4_syn_recv_sock`, whose probe
    // already handled it.
    if skb.protocol_be() != ETH_P_IP.to_be() {
        syn_recv_sock_ret(call, d);
    }
    0
}

/// Entry handler of the `inet_getname`/`inet6_getname(sock, uaddr, peer)` kretprobes: when the socket
/// has an entry with something to report (the client for `peer != 0`, else the VIP when there is one
/// and `getsockname_vip` is on), copies it for the return handler; on any other socket (most of them),
/// returns 1 so that the kprobes core installs no return hook (the call then costs no return probe).
fn getname_entry(call: &KretprobeCall) -> c_int {
    let peer = call.arg(2) as c_int != 0;
    if !peer && !params::getsockname_vip() {
        return 1;
    }
    // SAFETY: cannot be avoided, an untyped register: the first argument, the `struct socket` the
    // caller holds a reference to for the whole call.
    let sock = unsafe { Socket::from_raw(call.arg(0) as *const ffi::Socket) };
    let Some(sk) = sock.sk() else {
        return 1;
    };
    // `lookup` is safe in a breakpoint's context (RCU and plain loads only).
    let Some(toa) = store::lookup(sk) else {
        return 1;
    };
    let Some(ep) = (if peer { Some(toa.client) } else { toa.vip }) else {
        return 1;
    };
    call.put(GetnameCall {
        sk: sk.as_ptr(),
        uaddr: call.arg(1) as *mut u8,
        ep,
        peer,
    });
    0
}

/// `sizeof(struct sockaddr_in6)`, the return value of a getname that wrote one.
const SOCKADDR_IN6_LEN: usize = core::mem::size_of::<SockaddrIn6>();

/// Whether the task's current syscall is `getpeername`/`getsockname`/`accept`/`accept4` and its user
/// buffer holds a `sockaddr_in6` (the IP-option TOA/UOA design's condition to return an IPv6 address
/// on an `AF_INET` socket). Only a native syscall of a user task qualifies: there the kernel buffer is
/// a `sockaddr_storage`.
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

/// Writes `ep` over the address a getname call of a socket of `family` just wrote at `uaddr`, by the
/// family rules of the README: the socket's own family, IPv4 as `::ffff:a.b.c.d` on `AF_INET6`, and an
/// IPv6 address on an `AF_INET` socket only in the IP-option TOA/UOA design's mode when the caller's
/// buffer holds it. Returns whether it wrote.
///
/// # Safety
///
/// `uaddr` holds the `sockaddr_in` (`AF_INET`) or `sockaddr_in6` (`AF_INET6`) the probed
/// `inet_getname`/`inet6_getname` just wrote; `call` is its return.
unsafe fn rewrite(uaddr: *mut u8, family: u16, ep: &Endpoint, call: &KretprobeCall) -> bool {
    match (family, ep.addr) {
        (AF_INET, Addr::V4(a)) => {
            // SAFETY: `inet_getname` just wrote a `sockaddr_in` (16 bytes) at `uaddr`.
            unsafe {
                uaddr
                    .cast::<SockaddrIn>()
                    .write_unaligned(SockaddrIn::new(a, ep.port))
            };
            true
        }
        (AF_INET, Addr::V6(a))
            if params::nat64_getpeername() && caller_buffer_holds_sockaddr_in6() =>
        {
            // SAFETY: the caller is one of the getname/accept syscalls, whose kernel buffer is a
            // `sockaddr_storage` (128 bytes), and whose user buffer holds the 28 bytes returned.
            unsafe {
                uaddr
                    .cast::<SockaddrIn6>()
                    .write_unaligned(SockaddrIn6::new(a, ep.port))
            };
            call.set_ret(SOCKADDR_IN6_LEN);
            true
        }
        (AF_INET6, _) => {
            // SAFETY: `inet6_getname` just wrote a `sockaddr_in6` (28 bytes) at `uaddr`.
            unsafe {
                uaddr
                    .cast::<SockaddrIn6>()
                    .write_unaligned(SockaddrIn6::mapped(ep))
            };
            true
        }
        _ => false,
    }
}

/// Return handler of the getname kretprobes: for a TOA connection, `accept()`/`getpeername()` get the
/// client, `getsockname()` the VIP when the TOA carried one (and `getsockname_vip` is on). The endpoint
/// was copied from the entry by [`getname_entry`], which installs this handler only then.
fn getname_ret(call: &KretprobeCall) -> c_int {
    // SAFETY: the entry handler of this probe, `getname_entry`, stored a `GetnameCall` (it returns 0
    // only then).
    let d = unsafe { call.get::<GetnameCall>() };
    if (call.ret() as c_int) < 0 {
        return 0;
    }
    // SAFETY: `sk` is the socket the caller holds a reference to for the whole call.
    let sk = unsafe { Sock::from_raw(d.sk) };
    // SAFETY: `uaddr` is the call's buffer, just filled by the probed function; `call` is its return.
    if unsafe { rewrite(d.uaddr, sk.family(), &d.ep, call) } {
        if d.peer {
            stats::inc(sk, Counter::GetnameToaOk);
        }
        toa_debug!(
            "{} on sk {:p}: {}\n",
            if d.peer { "getname" } else { "getsockname" },
            sk.as_ptr(),
            d.ep
        );
    }
    0
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
    if store::contains(sk) {
        store::remove(sk);
    }
}
