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
use crate::ffi::{self, Net, IPPROTO_UDP, NF_ACCEPT};
use crate::hooks::trusted;
use crate::stats::{self, Counter};
use crate::sys::netfilter::{nf_hook, NetHooks, NfHookState};
use crate::sys::skb::SkBuff;
use crate::wire::{self, Addr, Scan, UdpDatagram};
use core::ffi::c_int;
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
            match flows::update(net, &key, &m) {
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
    if !flows::net_is_empty(net) {
        flows::lookup(net, key, true);
    }
}

nf_hook!(toa_uoa_hook_v4 => hook_v4);
nf_hook!(toa_uoa_hook_v6 => hook_v6);

/// The IPv4 `LOCAL_IN` hook.
fn hook_v4(skb: &SkBuff, state: &NfHookState) -> u32 {
    let h = skb.ip_fixed_header();
    if h.len() != 20 {
        return NF_ACCEPT;
    }
    if h[9] != IPPROTO_UDP {
        return NF_ACCEPT;
    }
    let net = state.net();
    if h[0] & 0x0f == 5 && flows::net_is_empty(net.as_ptr()) {
        return NF_ACCEPT;
    }
    let mut buf = [MaybeUninit::uninit(); COPY_MAX];
    // The IPv4 header, its options and the UDP header.
    let want = usize::from(h[0] & 0x0f) * 4 + UDP_HEADER_LEN;
    let packet = skb.headers(&mut buf[..want]);
    handle(net.as_ptr(), packet, wire::scan_udp_ipv4(packet));
    NF_ACCEPT
}

/// The IPv6 `LOCAL_IN` hook.
fn hook_v6(skb: &SkBuff, state: &NfHookState) -> u32 {
    let h = skb.ip_fixed_header();
    if h.len() != 40 {
        return NF_ACCEPT;
    }
    let next = h[6];
    if next != IPPROTO_UDP && !IPV6_EXTENSIONS.contains(&next) {
        return NF_ACCEPT;
    }
    let net = state.net();
    if next == IPPROTO_UDP && flows::net_is_empty(net.as_ptr()) {
        return NF_ACCEPT;
    }
    let mut buf = [MaybeUninit::uninit(); COPY_MAX];
    // The IPv6 header and the UDP header, or as much of the extension headers as the parser may walk.
    let want = if next == IPPROTO_UDP {
        40 + UDP_HEADER_LEN
    } else {
        COPY_MAX
    };
    let packet = skb.headers(&mut buf[..want]);
    handle(net.as_ptr(), packet, wire::scan_udp_ipv6(packet));
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
    let inum = flows::inum_of(net);
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
    // SAFETY: the pernet core passes a namespace being set up, alive until its exit.
    match NetHooks::register(unsafe { crate::sys::net::Net::from_raw(net) }) {
        // Registered in `net` until its pre_exit.
        Ok(hooks) => hooks.keep(),
        Err(e) => {
            super::procfs::remove(net);
            // SAFETY: stored above.
            unsafe { ffi::xa_erase(core::ptr::addr_of_mut!(ffi::toa_uoa_nets), inum.into()) };
            return e.to_errno();
        }
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
    // SAFETY: registered and kept by `toa_uoa_net_init` in this namespace, alive until its exit.
    unsafe { NetHooks::unregister(crate::sys::net::Net::from_raw(net)) };
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
    flows::flush_net(net);
    let inum = flows::inum_of(net);
    // SAFETY: the shim's static mutex and xarray.
    unsafe {
        ffi::toa_mutex_lock(core::ptr::addr_of_mut!(ffi::toa_uoa_nets_mutex));
        ffi::xa_erase(core::ptr::addr_of_mut!(ffi::toa_uoa_nets), inum.into());
        ffi::mutex_unlock(core::ptr::addr_of_mut!(ffi::toa_uoa_nets_mutex));
    }
}
