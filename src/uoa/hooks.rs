// SPDX-License-Identifier: GPL-2.0

//! The receive path of UOA: netfilter `LOCAL_IN` hooks for IPv4 and IPv6, registered in every network
//! namespace (`toa_uoa_net_ops` in the shim), at priority `NF_IP_PRI_NAT_SRC + 1`, after conntrack and
//! NAT: the addresses seen are the ones the receiving socket will see.
//!
//! TCP and every other protocol pass through these hooks too, so what a datagram costs is decided by its
//! first bytes, which the IP layer has already made linear:
//! * not UDP (IPv4 protocol, or IPv6 next header that is neither UDP nor an extension header): nothing
//!   more;
//! * UDP without IP options (IPv4 `ihl == 5`, IPv6 next header UDP): nothing more unless the namespace
//!   has mappings; if it has, the flow's mapping (if any) has its idle time restarted, a lockless lookup;
//! * otherwise up to [`COPY_MAX`] bytes from the IP header on are copied out of the skb and parsed by the
//!   pure parsers of [`crate::wire`] (`scan_udp_ipv4`, `scan_udp_ipv6`), the ones toa's TCP path and the
//!   host tests and fuzzers use. A UOA from a trusted source is stored for the flow; a malformed option
//!   area is counted.
//!
//! The hooks always return `NF_ACCEPT`: a datagram is never dropped, changed or stripped.

use super::flows::{self, FlowKey, Mapping, NotStored};
use crate::ffi::{self, Net, NfHookState, SkBuff, IPPROTO_UDP, NF_ACCEPT};
use crate::hooks::trusted;
use crate::stats::{self, Counter};
use crate::wire::{self, Addr, Scan, UdpDatagram};
use core::ffi::{c_int, c_uint, c_void};
use core::mem::MaybeUninit;

/// The most bytes copied for parsing: an IPv6 header with up to 272 bytes of extension headers (a
/// UOA destination-options header takes 48) and the UDP header. Longer chains are not parsed.
const COPY_MAX: usize = 320;
/// Bytes of a UDP header (RFC 768): source port, destination port, length, checksum.
const UDP_HEADER_LEN: usize = 8;

/// IPv6 next-header values of the extension headers the parser walks (hop-by-hop, routing, fragment,
/// destination options).
const IPV6_EXTENSIONS: [u8; 4] = [
    wire::NEXTHDR_HOP,
    wire::NEXTHDR_ROUTING,
    wire::NEXTHDR_FRAGMENT,
    wire::NEXTHDR_DEST,
];

/// Up to `want` (at most [`COPY_MAX`]) bytes from the network header on: in place when the linear area
/// holds them (the common case: the IP layer pulled the IP header, and small datagrams are linear),
/// else copied into `buf` (not zeroed first: only the bytes copied are ever read).
///
/// # Safety
///
/// `skb` is a live packet whose network header is set, which stays unchanged while the returned bytes
/// are used (netfilter holds it for the hook).
unsafe fn headers<'a>(
    skb: *const SkBuff,
    nh: *const u8,
    buf: &'a mut MaybeUninit<[u8; COPY_MAX]>,
    want: usize,
) -> &'a [u8] {
    // SAFETY: per the function's contract.
    let linear = unsafe { ffi::toa_skb_headlen_from_network(skb) } as usize;
    if linear >= want {
        // SAFETY: `want` bytes from the network header on are in the linear area.
        return unsafe { core::slice::from_raw_parts(nh, want) };
    }
    // SAFETY: per the function's contract.
    let avail = unsafe { ffi::toa_skb_len_from_network(skb) } as usize;
    let n = avail.min(want).min(COPY_MAX);
    let p = buf.as_mut_ptr().cast::<u8>();
    // SAFETY: `n` bytes exist from the network header on (paged data included: `skb_copy_bits`), and
    // `buf` has room for them.
    if unsafe { ffi::toa_skb_copy_from_network(skb, p.cast(), n as c_uint) } < 0 {
        return &[];
    }
    // SAFETY: the first `n` bytes of `buf` were just written.
    unsafe { core::slice::from_raw_parts(p, n) }
}

/// The flow of a UDP datagram whose IP header starts `packet`.
fn flow_key(packet: &[u8], d: &UdpDatagram) -> Option<FlowKey> {
    let (src, dst): (Addr, Addr) = match packet.first()? >> 4 {
        4 => (
            Addr::V4(packet.get(12..16)?.try_into().ok()?),
            Addr::V4(packet.get(16..20)?.try_into().ok()?),
        ),
        _ => (
            Addr::V6(packet.get(8..24)?.try_into().ok()?),
            Addr::V6(packet.get(24..40)?.try_into().ok()?),
        ),
    };
    Some(FlowKey {
        lb: flows::addr16(src),
        lb_port: d.sport,
        local: flows::addr16(dst),
        local_port: d.dport,
    })
}

/// What a UDP datagram brings to namespace `net`'s map: a new mapping, a refresh, or a count.
fn handle(net: *const Net, packet: &[u8], d: Option<UdpDatagram>) {
    let Some(d) = d else {
        return;
    };
    let Some(key) = flow_key(packet, &d) else {
        return;
    };
    match d.scan {
        Scan::Found(toa) => {
            if !trusted(packet) {
                stats::inc_net(net, Counter::UoaUntrustedSource);
                return;
            }
            let m = Mapping {
                client: toa.client,
                vip: toa.vip,
            };
            // SAFETY: `net` is the namespace of the packet being delivered (every caller's).
            match flows::update(unsafe { crate::sys::net::Net::from_raw(net) }, &key, &m) {
                Ok(()) => stats::inc_net(net, Counter::UoaOptionFound),
                Err(NotStored::Full) => stats::inc_net(net, Counter::UoaMapFull),
                Err(NotStored::NoMemory) => stats::inc_net(net, Counter::StoreInsertFailed),
            }
        }
        Scan::Malformed(_) => {
            stats::inc_net(net, Counter::UoaOptionMalformed);
            refresh(net, &key);
        }
        Scan::NoToa => refresh(net, &key),
    }
}

/// Restarts the idle time of the flow's mapping, if the namespace has any mapping.
fn refresh(net: *const Net, key: &FlowKey) {
    // SAFETY: `net` is the namespace of the packet being delivered (every caller's).
    let net = unsafe { crate::sys::net::Net::from_raw(net) };
    if !flows::net_is_empty(net) {
        flows::lookup(net, key, true);
    }
}

/// The IPv4 `LOCAL_IN` hook.
///
/// # Safety
///
/// Only called by netfilter, for an IPv4 packet being delivered locally, in its namespace's RCU section.
#[no_mangle]
unsafe extern "C" fn toa_uoa_hook_v4(
    _priv: *mut c_void,
    skb: *mut SkBuff,
    state: *const NfHookState,
) -> c_uint {
    // SAFETY: the IPv4 receive path pulled the whole IPv4 header (`ihl * 4` >= 20 bytes) into the linear
    // area before the hook.
    let nh = unsafe { ffi::toa_skb_network_header(skb) };
    // SAFETY: as above.
    let h = unsafe { core::slice::from_raw_parts(nh, 20) };
    if h[9] != IPPROTO_UDP {
        return NF_ACCEPT;
    }
    // SAFETY: netfilter's state for this packet.
    let net = unsafe { ffi::toa_nf_state_net(state) };
    // SAFETY: as above; the packet's namespace outlives the hook's call.
    if h[0] & 0x0f == 5 && flows::net_is_empty(unsafe { crate::sys::net::Net::from_raw(net) }) {
        return NF_ACCEPT;
    }
    let mut buf = MaybeUninit::uninit();
    // The IPv4 header, its options and the UDP header.
    let want = usize::from(h[0] & 0x0f) * 4 + UDP_HEADER_LEN;
    // SAFETY: a live packet with its network header set.
    let packet = unsafe { headers(skb, nh, &mut buf, want) };
    handle(net, packet, wire::scan_udp_ipv4(packet));
    NF_ACCEPT
}

/// The IPv6 `LOCAL_IN` hook.
///
/// # Safety
///
/// Only called by netfilter, for an IPv6 packet being delivered locally, in its namespace's RCU section.
#[no_mangle]
unsafe extern "C" fn toa_uoa_hook_v6(
    _priv: *mut c_void,
    skb: *mut SkBuff,
    state: *const NfHookState,
) -> c_uint {
    // SAFETY: the IPv6 receive path pulled the fixed 40-byte header into the linear area.
    let nh = unsafe { ffi::toa_skb_network_header(skb) };
    // SAFETY: as above.
    let h = unsafe { core::slice::from_raw_parts(nh, 40) };
    let next = h[6];
    if next != IPPROTO_UDP && !IPV6_EXTENSIONS.contains(&next) {
        return NF_ACCEPT;
    }
    // SAFETY: netfilter's state for this packet.
    let net = unsafe { ffi::toa_nf_state_net(state) };
    // SAFETY: as above; the packet's namespace outlives the hook's call.
    if next == IPPROTO_UDP && flows::net_is_empty(unsafe { crate::sys::net::Net::from_raw(net) }) {
        return NF_ACCEPT;
    }
    let mut buf = MaybeUninit::uninit();
    // The IPv6 header and the UDP header, or as much of the extension headers as the parser may walk.
    let want = if next == IPPROTO_UDP {
        40 + UDP_HEADER_LEN
    } else {
        COPY_MAX
    };
    // SAFETY: a live packet with its network header set.
    let packet = unsafe { headers(skb, nh, &mut buf, want) };
    handle(net, packet, wire::scan_udp_ipv6(packet));
    NF_ACCEPT
}

/// `pernet_operations::init` of UOA: records the namespace, creates its `/proc/net/uoa_table` and
/// registers its hooks.
///
/// # Safety
///
/// Only called by the pernet core, for a namespace being set up (or every existing one at registration).
#[no_mangle]
unsafe extern "C" fn toa_uoa_net_init(net: *mut Net) -> c_int {
    // SAFETY: the namespace being set up, alive until its exit.
    let inum = flows::inum_of(unsafe { crate::sys::net::Net::from_raw(net) });
    // SAFETY: the shim's xarray; `net` lives until its exit removes it.
    let ret = unsafe { ffi::toa_uoa_nets_store(inum.into(), net) };
    if ret < 0 {
        return ret;
    }
    let ret = super::procfs::create(net);
    if ret < 0 {
        // SAFETY: stored above.
        unsafe { ffi::xa_erase(core::ptr::addr_of_mut!(ffi::toa_uoa_nets), inum.into()) };
        return ret;
    }
    // SAFETY: the shim's static hooks, registered in `net` until its pre_exit.
    let ret = unsafe { ffi::nf_register_net_hooks(net, ffi::toa_uoa_nf_ops.as_ptr(), 2) };
    if ret < 0 {
        super::procfs::remove(net);
        // SAFETY: stored above.
        unsafe { ffi::xa_erase(core::ptr::addr_of_mut!(ffi::toa_uoa_nets), inum.into()) };
        return ret;
    }
    0
}

/// `pernet_operations::pre_exit`: unregisters the namespace's hooks. The pernet core then waits for an
/// RCU grace period (hooks run inside one) before `exit`.
///
/// # Safety
///
/// Only called by the pernet core, for a namespace `toa_uoa_net_init` set up.
#[no_mangle]
unsafe extern "C" fn toa_uoa_net_pre_exit(net: *mut Net) {
    // SAFETY: registered by `toa_uoa_net_init`.
    unsafe { ffi::nf_unregister_net_hooks(net, ffi::toa_uoa_nf_ops.as_ptr(), 2) };
}

/// `pernet_operations::exit`: removes `/proc/net/uoa_table` (waiting for its readers), frees the
/// namespace's mappings, and forgets the namespace (under the sweeper's mutex, so the sweeper no longer
/// holds it when this returns).
///
/// # Safety
///
/// Only called by the pernet core, after `toa_uoa_net_pre_exit` and a grace period.
#[no_mangle]
unsafe extern "C" fn toa_uoa_net_exit(net: *mut Net) {
    super::procfs::remove(net);
    // SAFETY: the namespace being torn down, alive until this returns.
    let sys_net = unsafe { crate::sys::net::Net::from_raw(net) };
    flows::flush_net(sys_net);
    let inum = flows::inum_of(sys_net);
    // SAFETY: the shim's static mutex and xarray.
    unsafe {
        ffi::toa_mutex_lock(core::ptr::addr_of_mut!(ffi::toa_uoa_nets_mutex));
        ffi::xa_erase(core::ptr::addr_of_mut!(ffi::toa_uoa_nets), inum.into());
        ffi::mutex_unlock(core::ptr::addr_of_mut!(ffi::toa_uoa_nets_mutex));
    }
}
