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
use crate::ffi::{IPPROTO_UDP, NF_ACCEPT};
use crate::hooks::trusted;
use crate::stats::{self, Counter};
use crate::sys::net::Net;
use crate::sys::netfilter::{nf_hook, NetHooks, NfHookState};
use crate::sys::pernet::{pernet_callbacks, PernetOps};
use crate::sys::skb::{Ipv4SkBuff, Ipv6SkBuff};
use crate::sys::sync::RcuSection;
use crate::sys::xarray::UoaNets;
use crate::wire::{self, Addr, Scan, UdpDatagram};
use core::mem::MaybeUninit;
use kernel::prelude::*;

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

/// What a UDP datagram brings to namespace `net`'s map: a new mapping, a refresh, or a count (in the
/// hook's read-side section `rcu`).
fn handle(net: &Net, packet: &[u8], d: Option<UdpDatagram>, rcu: &RcuSection) {
    let Some(d) = d else {
        return;
    };
    let Some(key) = flow_key(packet, &d) else {
        return;
    };
    match d.scan {
        Scan::Found(toa) => {
            if !trusted(packet) {
                stats::inc_net_in(net, Counter::UoaUntrustedSource, rcu);
                return;
            }
            let m = Mapping {
                client: toa.client,
                vip: toa.vip,
            };
            let counter = match flows::update(net, &key, &m, rcu) {
                Ok(()) => Counter::UoaOptionFound,
                Err(NotStored::Full) => Counter::UoaMapFull,
                Err(NotStored::NoMemory) => Counter::StoreInsertFailed,
            };
            stats::inc_net_in(net, counter, rcu);
        }
        Scan::Malformed(_) => {
            stats::inc_net_in(net, Counter::UoaOptionMalformed, rcu);
            refresh(net, &key, rcu);
        }
        Scan::NoToa => refresh(net, &key, rcu),
    }
}

/// Restarts the idle time of the flow's mapping, if the namespace has any mapping.
fn refresh(net: &Net, key: &FlowKey, rcu: &RcuSection) {
    if !flows::net_is_empty(net, rcu) {
        flows::refresh_in(net, key, rcu);
    }
}

nf_hook!(ipv4, toa_uoa_hook_v4 => hook_v4);
nf_hook!(ipv6, toa_uoa_hook_v6 => hook_v6);

/// The IPv4 `LOCAL_IN` hook: a packet of another protocol costs one test (the UDP work is out of line,
/// so that its stack frame is not set up for every TCP segment).
#[inline(always)]
fn hook_v4(skb: &Ipv4SkBuff, state: &NfHookState) -> u32 {
    if skb.header()[9] == IPPROTO_UDP {
        udp_v4(skb, state);
    }
    NF_ACCEPT
}

/// The IPv6 `LOCAL_IN` hook (see [`hook_v4`]).
#[inline(always)]
fn hook_v6(skb: &Ipv6SkBuff, state: &NfHookState) -> u32 {
    let next = skb.header()[6];
    if next == IPPROTO_UDP || IPV6_EXTENSIONS.contains(&next) {
        udp_v6(skb, state, next);
    }
    NF_ACCEPT
}

/// An IPv4 UDP datagram.
#[inline(never)]
fn udp_v4(skb: &Ipv4SkBuff, state: &NfHookState) {
    let h = skb.header();
    let net = state.net();
    if h[0] & 0x0f == 5 && flows::net_is_empty(net, state.rcu()) {
        return;
    }
    let mut buf = [MaybeUninit::uninit(); COPY_MAX];
    // The IPv4 header, its options and the UDP header.
    let want = usize::from(h[0] & 0x0f) * 4 + UDP_HEADER_LEN;
    let packet = skb.headers(&mut buf[..want]);
    handle(net, packet, wire::scan_udp_ipv4(packet), state.rcu());
}

/// An IPv6 packet that is UDP, or whose next header is an extension header (`next`).
#[inline(never)]
fn udp_v6(skb: &Ipv6SkBuff, state: &NfHookState, next: u8) {
    let net = state.net();
    if next == IPPROTO_UDP && flows::net_is_empty(net, state.rcu()) {
        return;
    }
    let mut buf = [MaybeUninit::uninit(); COPY_MAX];
    // The IPv6 header and the UDP header, or as much of the extension headers as the parser may walk.
    let want = if next == IPPROTO_UDP {
        40 + UDP_HEADER_LEN
    } else {
        COPY_MAX
    };
    let packet = skb.headers(&mut buf[..want]);
    handle(net, packet, wire::scan_udp_ipv6(packet), state.rcu());
}

/// UOA's per-namespace setup (`toa_uoa_net_ops` of the shim): the namespace's index entry, its
/// `/proc/net/uoa_table` and its hooks.
pub(crate) struct UoaNetOps;

pernet_callbacks!(UoaNetOps {
    init: toa_uoa_net_init,
    pre_exit: toa_uoa_net_pre_exit,
    exit: toa_uoa_net_exit,
});

impl PernetOps for UoaNetOps {
    /// Records the namespace, creates its `/proc/net/uoa_table` and registers its hooks.
    fn init(net: &Net) -> Result {
        UoaNets::insert(net)?;
        let undo = |e| {
            UoaNets::lock().remove(net);
            e
        };
        super::procfs::create_in(net).map_err(undo)?;
        match NetHooks::register(net) {
            // Registered in `net` until its pre_exit.
            Ok(hooks) => hooks.keep(),
            Err(e) => {
                // SAFETY: created just above, and nothing else removes it.
                unsafe { super::procfs::remove_from(net) };
                return Err(undo(e));
            }
        }
        Ok(())
    }

    /// Unregisters the namespace's hooks. The pernet core then waits for an RCU grace period (hooks run
    /// inside one) before `exit`.
    fn pre_exit(net: &Net) {
        // SAFETY: registered and kept by `init` in this namespace.
        unsafe { NetHooks::unregister(net) };
    }

    /// Removes `/proc/net/uoa_table` (waiting for its readers), frees the namespace's mappings, and
    /// forgets the namespace (under the index's mutex, so the sweeper no longer holds it when this
    /// returns).
    fn exit(net: &Net) {
        // SAFETY: created by `init`, removed only here.
        unsafe { super::procfs::remove_from(net) };
        flows::flush_net(net);
        UoaNets::lock().remove(net);
    }
}
