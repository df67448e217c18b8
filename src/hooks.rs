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

use crate::ffi::{
    self, KretprobeInstance, PtRegs, SkBuff, Sock, Socket, AF_INET, AF_INET6, ETH_P_IP,
};
use crate::sockaddr::{SockaddrIn, SockaddrIn6};
use crate::stats::{self, Counter};
use crate::store;
use crate::trust::TrustList;
use crate::wire::{self, Addr, Endpoint, Scan, Toa};
use core::ffi::CStr;
use core::ffi::{c_int, c_ulong, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use kernel::alloc::flags::GFP_KERNEL;
use kernel::prelude::*;

/// Prints a debug line when the `debug` parameter is on, rate-limited.
macro_rules! toa_debug {
    ($($arg:tt)*) => {
        // SAFETY: `__ratelimit` on the shim's static state is safe in any context.
        if ffi::param_debug() && unsafe { ffi::toa_debug_ratelimit() } {
            pr_info!($($arg)*);
        }
    };
}

/// Bytes of per-call data the shim reserves in each `kretprobe_instance` (`TOA_KRP_DATA_SIZE`).
const KRP_DATA_SIZE: usize = 8 * core::mem::size_of::<usize>();

/// What the `syn_recv_sock` entry handler keeps for the return handler.
#[repr(C)]
struct SynRecvCall {
    /// The packet that completes the handshake.
    skb: *const SkBuff,
    /// The caller's `own_req` (`bool *`), written by the probed function before it returns.
    own_req: *const bool,
}

/// What the getname entry handler keeps for the return handler: the endpoint to report, copied from the
/// socket's entry at entry (it cannot change during the call: an entry goes only when its socket is
/// destroyed, and the caller holds a reference to the socket).
#[repr(C)]
struct GetnameCall {
    /// The socket's `sk`.
    sk: *const Sock,
    /// The kernel buffer the probed call fills (`struct sockaddr *`).
    uaddr: *mut u8,
    /// The client (`getpeername`, `accept`) or the VIP (`getsockname`).
    ep: Endpoint,
    /// Whether the call asks for the peer (`peer != 0`).
    peer: bool,
}

const _: () = assert!(
    core::mem::size_of::<SynRecvCall>() <= KRP_DATA_SIZE
        && core::mem::size_of::<GetnameCall>() <= KRP_DATA_SIZE
        && core::mem::align_of::<GetnameCall>() <= core::mem::align_of::<usize>()
);

/// The per-call data area of `ri`, as a `T`: the entry handler writes it, the return handler reads it.
///
/// # Safety
///
/// `ri` is the instance passed to a handler of one of toa's kretprobes (whose `data_size` is
/// [`KRP_DATA_SIZE`], pointer-aligned), and `T` is that probe's call-data type ([`SynRecvCall`] or
/// [`GetnameCall`]). The area is uninitialized until the entry handler writes it.
unsafe fn call_data<T>(ri: *mut KretprobeInstance) -> *mut T {
    // SAFETY: per the function's contract.
    unsafe { ffi::toa_kri_data(ri).cast::<T>() }
}

/// Argument `n` (0-based) of the probed call.
///
/// # Safety
///
/// `regs` are the registers of a probed function entry.
unsafe fn arg(regs: *mut PtRegs, n: u32) -> usize {
    // SAFETY: per the function's contract.
    unsafe { ffi::toa_regs_arg(regs, n) as usize }
}

/// The TCP header of `skb` as a slice: from the transport header, at most 60 bytes (the largest TCP
/// header), never past the linear data.
///
/// # Safety
///
/// `skb` is a live skb whose transport header is set (a packet in TCP receive processing).
unsafe fn tcp_header<'a>(skb: *const SkBuff) -> &'a [u8] {
    // SAFETY: per the function's contract; the bytes from the transport header to the tail of the linear
    // area are readable, and the slice stays inside them.
    unsafe {
        let th = ffi::toa_skb_transport_header(skb);
        let avail = ffi::toa_skb_headlen_from_transport(skb) as usize;
        core::slice::from_raw_parts(th, avail.min(60))
    }
}

/// Entry handler of both `syn_recv_sock` kretprobes: saves the skb and `own_req` of the call.
///
/// # Safety
///
/// Only called by the kprobes core, for the probe the shim (`src/toa_shim.c`) attaches it to.
#[no_mangle]
unsafe extern "C" fn toa_syn_recv_sock_entry(
    ri: *mut KretprobeInstance,
    regs: *mut PtRegs,
) -> c_int {
    // SAFETY: called by the kprobes core for our kretprobes at the entry of
    // `tcp_v{4,6}_syn_recv_sock(sk, skb, req, dst, req_unhash, own_req)`.
    unsafe {
        call_data::<SynRecvCall>(ri).write(SynRecvCall {
            skb: arg(regs, 1) as *const SkBuff,
            own_req: arg(regs, 5) as *const bool,
        });
    }
    0
}

/// Common return path of both `syn_recv_sock` probes.
///
/// # Safety
///
/// Called from a `syn_recv_sock` return handler with its instance and registers.
unsafe fn syn_recv_sock_ret(ri: *mut KretprobeInstance, regs: *mut PtRegs) {
    // SAFETY: per the function's contract, the data was filled by `toa_syn_recv_sock_entry`, and the
    // skb and `own_req` stay valid until the probed function's caller is done with them.
    let (child, skb, own_req) = unsafe {
        let d = &*call_data::<SynRecvCall>(ri);
        (ffi::toa_regs_ret(regs) as *const Sock, d.skb, d.own_req)
    };
    // SAFETY: `own_req` points at the caller's `bool`, written by the probed function before returning.
    if child.is_null() || own_req.is_null() || !unsafe { own_req.read() } {
        return;
    }
    // SAFETY: `skb` is the packet being processed by the TCP receive path.
    let Some(toa) = (unsafe { find_toa(skb, child) }) else {
        stats::inc(child, Counter::SynRecvSockNoToa);
        return;
    };
    stats::inc(child, Counter::SynRecvSockToa);
    // SAFETY: `child` is the new socket, locked and referenced by the caller.
    if store::insert(unsafe { crate::sys::sock::Sock::from_raw(child) }, &toa).is_ok() {
        toa_debug!(
            "TOA {:?}: client {} stored for sk {:p}\n",
            toa.origin,
            toa.client,
            child
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
        // SAFETY: a `charp` parameter (0444: fixed after load) is a NUL-terminated string or null.
        let text = unsafe {
            let p = core::ptr::read_volatile(core::ptr::addr_of!(ffi::toa_param_trusted_sources));
            if p.is_null() {
                c""
            } else {
                CStr::from_ptr(p)
            }
        };
        let Ok(text) = text.to_str() else {
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
/// so `getpeername()` and `getsockname()` then answer from one and the same option. A malformed IP-option block is ignored (and
/// counted) and the TCP options are still looked at.
///
/// # Safety
///
/// `skb` is the packet being processed by the TCP receive path (network and transport headers set).
unsafe fn find_toa(skb: *const SkBuff, child: *const Sock) -> Option<Toa> {
    // SAFETY: per the function's contract.
    let ip_header = unsafe { ip_header(skb) };
    let toa = ip_or_tcp_toa(skb, child, ip_header)?;
    if !trusted(ip_header) {
        stats::inc(child, Counter::UntrustedSource);
        toa_debug!("TOA from an untrusted source ignored for sk {:p}\n", child);
        return None;
    }
    Some(toa)
}

/// The IP-option TOA of the packet, else its TCP-option TOA (see [`find_toa`]).
fn ip_or_tcp_toa(skb: *const SkBuff, child: *const Sock, ip_header: &[u8]) -> Option<Toa> {
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
                child
            );
        }
        Scan::NoToa => {}
    }
    // SAFETY: per the function's contract.
    match wire::scan_tcp_header(unsafe { tcp_header(skb) }) {
        Scan::Found(toa) => Some(toa),
        Scan::NoToa => None,
        Scan::Malformed(why) => {
            stats::inc(child, Counter::TcpOptionMalformed);
            toa_debug!(
                "malformed TCP options ({:?}) ignored for sk {:p}\n",
                why,
                child
            );
            None
        }
    }
}

/// The IP header of `skb` with its options or extension headers: from the network header to the
/// transport header.
///
/// # Safety
///
/// As for [`find_toa`]. Those bytes are linear: the IP layer pulled them (options, extension headers)
/// before handing the packet to TCP.
unsafe fn ip_header<'a>(skb: *const SkBuff) -> &'a [u8] {
    // SAFETY: per the function's contract.
    unsafe {
        let nh = ffi::toa_skb_network_header(skb);
        let len = ffi::toa_skb_network_header_len(skb) as usize;
        core::slice::from_raw_parts(nh, len)
    }
}

/// Return handler of the `tcp_v4_syn_recv_sock` kretprobe.
///
/// # Safety
///
/// Only called by the kprobes core, for the probe the shim (`src/toa_shim.c`) attaches it to.
#[no_mangle]
unsafe extern "C" fn toa_tcp_v4_syn_recv_sock_ret(
    ri: *mut KretprobeInstance,
    regs: *mut PtRegs,
) -> c_int {
    // SAFETY: the return handler of the `tcp_v4_syn_recv_sock` kretprobe.
    unsafe { syn_recv_sock_ret(ri, regs) };
    0
}

/// Return handler of the `tcp_v6_syn_recv_sock` kretprobe (native IPv6 packets only).
///
/// # Safety
///
/// Only called by the kprobes core, for the probe the shim (`src/toa_shim.c`) attaches it to.
#[no_mangle]
unsafe extern "C" fn toa_tcp_v6_syn_recv_sock_ret(
    ri: *mut KretprobeInstance,
    regs: *mut PtRegs,
) -> c_int {
    // SAFETY: the return handler of the `tcp_v6_syn_recv_sock` kretprobe; the skb is the one saved at
    // entry, still owned by the caller.
    unsafe {
        let skb = (*call_data::<SynRecvCall>(ri)).skb;
        // A v4-mapped connection: `tcp_v6_syn_recv_sock` called `tcp_v4_syn_recv_sock`, whose probe
        // already handled it.
        if ffi::toa_skb_protocol(skb) == ETH_P_IP.to_be() {
            return 0;
        }
        syn_recv_sock_ret(ri, regs);
    }
    0
}

/// Entry handler of the `inet_getname`/`inet6_getname` kretprobes: when the socket has an entry with
/// something to report (the client for `peer != 0`, else the VIP when there is one and `getsockname_vip`
/// is on), copies it for the return handler; on any other socket (most of them), returns 1 so that the
/// kprobes core installs no return hook (the call then costs no return probe).
///
/// # Safety
///
/// Only called by the kprobes core, for the probe the shim (`src/toa_shim.c`) attaches it to.
#[no_mangle]
unsafe extern "C" fn toa_getname_entry(ri: *mut KretprobeInstance, regs: *mut PtRegs) -> c_int {
    // SAFETY: the entry of `inet_getname` / `inet6_getname(sock, uaddr, peer)`; the caller holds a
    // reference to `sock`, whose socket is live; `lookup` is safe in a breakpoint's context (RCU and
    // plain loads only).
    unsafe {
        let peer = arg(regs, 2) as c_int != 0;
        if !peer && !ffi::param_getsockname_vip() {
            return 1;
        }
        let sk = ffi::toa_socket_sk(arg(regs, 0) as *const Socket);
        let Some(toa) = store::lookup(crate::sys::sock::Sock::from_raw(sk)) else {
            return 1;
        };
        let Some(ep) = (if peer { Some(toa.client) } else { toa.vip }) else {
            return 1;
        };
        call_data::<GetnameCall>(ri).write(GetnameCall {
            sk,
            uaddr: arg(regs, 1) as *mut u8,
            ep,
            peer,
        });
    }
    0
}

/// `sizeof(struct sockaddr_in6)`, the return value of a getname that wrote one.
const SOCKADDR_IN6_LEN: usize = core::mem::size_of::<SockaddrIn6>();

/// Whether the task's current syscall is `getpeername`/`getsockname`/`accept`/`accept4` and its user buffer holds a
/// `sockaddr_in6` (the IP-option TOA/UOA design's condition to return an IPv6 address on an `AF_INET` socket). Only a native
/// syscall of a user task qualifies: there the kernel buffer is a `sockaddr_storage`.
fn caller_buffer_holds_sockaddr_in6() -> bool {
    // SAFETY: task-context checks and reads of the current task's saved syscall registers; the user
    // pointer is read with `copy_from_user_nofault`, which never sleeps.
    unsafe {
        if !ffi::toa_in_task() || ffi::toa_current_is_kthread() || ffi::toa_in_compat_syscall() {
            return false;
        }
        let nr = ffi::toa_syscall_nr();
        let calls = [
            ffi::toa_nr_getpeername,
            ffi::toa_nr_getsockname,
            ffi::toa_nr_accept,
            ffi::toa_nr_accept4,
        ];
        if !calls.contains(&nr) {
            return false;
        }
        let mut args: [c_ulong; 6] = [0; 6];
        ffi::toa_syscall_args(&mut args);
        let mut ulen: c_int = 0;
        let ok = ffi::copy_from_user_nofault(
            (&mut ulen as *mut c_int).cast(),
            args[2] as *const c_void,
            core::mem::size_of::<c_int>(),
        ) == 0;
        ok && usize::try_from(ulen).is_ok_and(|l| l >= SOCKADDR_IN6_LEN)
    }
}

/// Writes `ep` over the address a getname call of a socket of `family` just wrote at `uaddr`, by the
/// family rules of the README: the socket's own family, IPv4 as `::ffff:a.b.c.d` on `AF_INET6`, and an
/// IPv6 address on an `AF_INET` socket only in the IP-option TOA/UOA design's mode when the caller's
/// buffer holds it.
/// Returns whether it wrote.
///
/// # Safety
///
/// `uaddr` holds the `sockaddr_in` (`AF_INET`) or `sockaddr_in6` (`AF_INET6`) the probed
/// `inet_getname`/`inet6_getname` just wrote; `regs` are its return registers.
unsafe fn rewrite(uaddr: *mut u8, family: u16, ep: &Endpoint, regs: *mut PtRegs) -> bool {
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
            if ffi::param_nat64_getpeername() && caller_buffer_holds_sockaddr_in6() =>
        {
            // SAFETY: the caller is one of the getname/accept syscalls, whose kernel buffer is a
            // `sockaddr_storage` (128 bytes), and whose user buffer holds the 28 bytes returned.
            unsafe {
                uaddr
                    .cast::<SockaddrIn6>()
                    .write_unaligned(SockaddrIn6::new(a, ep.port));
                ffi::toa_regs_set_ret(regs, SOCKADDR_IN6_LEN as c_ulong);
            }
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
/// was copied from the entry by [`toa_getname_entry`], which installs this handler only then.
///
/// # Safety
///
/// Only called by the kprobes core, for the probe the shim (`src/toa_shim.c`) attaches it to.
#[no_mangle]
unsafe extern "C" fn toa_getname_ret(ri: *mut KretprobeInstance, regs: *mut PtRegs) -> c_int {
    // SAFETY: the return of `inet_getname` / `inet6_getname`, data written by `toa_getname_entry`.
    let (call, ret) = unsafe {
        (
            &*call_data::<GetnameCall>(ri),
            ffi::toa_regs_ret(regs) as c_int,
        )
    };
    if ret < 0 {
        return 0;
    }
    // SAFETY: `sk` is the socket the caller holds a reference to for the whole call; its family never
    // changes; `uaddr` and `regs` are the call's.
    if unsafe { rewrite(call.uaddr, ffi::toa_sk_family(call.sk), &call.ep, regs) } {
        if call.peer {
            stats::inc(call.sk, Counter::GetnameToaOk);
        }
        toa_debug!(
            "{} on sk {:p}: {}\n",
            if call.peer { "getname" } else { "getsockname" },
            call.sk,
            call.ep
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

/// The ftrace callback at the entry of `inet_sock_destruct(sk)`: drops the socket's entry, if it has one.
/// `sk` is being destroyed (no one can look it up any more); its memory is freed only after
/// `inet_sock_destruct` returns. Runs in the context of the destruction (process or softirq).
///
/// # Safety
///
/// Only called by ftrace, for the ops the shim (`src/toa_shim.c`) defines, filtered on
/// `inet_sock_destruct`.
#[no_mangle]
unsafe extern "C" fn toa_sock_destruct_ftrace(
    ip: c_ulong,
    parent_ip: c_ulong,
    _op: *mut ffi::FtraceOps,
    fregs: *mut ffi::FtraceRegs,
) {
    // SAFETY: an ftrace callback whose ops leaves the recursion check to it (no `FTRACE_OPS_FL_RECURSION`);
    // the check also disables preemption until the unlock.
    let bit = unsafe { ffi::toa_ftrace_recursion_trylock(ip, parent_ip) };
    if bit < 0 {
        DESTRUCT_MISSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: the first argument of `inet_sock_destruct(sk)`, whose memory is live; `contains` first:
    // most sockets have no entry, and a lockless look is cheaper than the bucket lock.
    unsafe {
        let sk = ffi::toa_fregs_arg(fregs, 0) as *const Sock;
        let sock = crate::sys::sock::Sock::from_raw(sk);
        if store::contains(sock) {
            store::remove(sock);
        }
        ffi::toa_ftrace_recursion_unlock(bit);
    }
}
