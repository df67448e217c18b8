//! IP-option TOA (the IP-option TOA/UOA design): option 31 in an IPv4 option or an IPv6 destination
//! option, every outer/payload family and listener family, the VIP in `getsockname()`, the NAT64 and
//! `getsockname_vip` parameters, malformed options, and precedence over a TCP-option TOA.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use lbemu::packet::Family;
use lbemu::{Options, LB_V4, LB_V6, SERVER_V4};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Outer IPv4/IPv6 x payload IPv4/IPv6 x AF_INET/AF_INET6 listener (an AF_INET listener only hears
/// IPv4): accept, getpeername, getsockname (the VIP), getsockopt 4096, toa_table and counters.
pub(crate) fn ip_option_matrix(ctx: &mut Ctx) -> TestResult {
    let cases = [
        (Family::V4, false, Af::Inet),
        (Family::V4, true, Af::Inet),
        (Family::V4, false, Af::Inet6),
        (Family::V4, true, Af::Inet6),
        (Family::V6, false, Af::Inet6),
        (Family::V6, true, Af::Inet6),
    ];
    for (wire, v6, af) in cases {
        let what = format!(
            "outer {wire:?}, payload {}, {af:?}",
            if v6 { "IPv6" } else { "IPv4" }
        );
        let (cip, vip) = if v6 {
            (IpAddr::V6(CIP6), IpAddr::V6(VIP6))
        } else {
            (IpAddr::V4(CIP4), IpAddr::V4(VIP4))
        };
        let before = Stats::read()?;
        let s = serve(ctx, af, wire, ip_toa(wire, cip, vip))?;
        let lb = SocketAddr::new(
            if af == Af::Inet6 && wire == Family::V4 {
                v4mapped(LB_V4)
            } else {
                lb_addr(wire)
            },
            s.conn.sport,
        );
        let server = SocketAddr::new(server_addr(af, wire), s.local.port());
        let as_seen = |a: IpAddr| match (af, a) {
            (Af::Inet6, IpAddr::V4(v4)) => v4mapped(v4),
            _ => a,
        };
        let (want_peer, want_local) = if af == Af::Inet && v6 {
            (lb, server) // NAT64 on an AF_INET socket: getsockopt 4096 only
        } else {
            (
                SocketAddr::new(as_seen(cip), CPORT),
                SocketAddr::new(as_seen(vip), VPORT),
            )
        };
        check!(
            s.accepted == want_peer,
            "{what}: accept() {} want {want_peer}",
            s.accepted
        );
        check!(
            s.peer == want_peer,
            "{what}: getpeername() {} want {want_peer}",
            s.peer
        );
        check!(
            s.local == want_local,
            "{what}: getsockname() {} want {want_local}",
            s.local
        );
        if v6 {
            let want = SocketAddr::new(cip, CPORT);
            check!(
                matches!(&s.lookup, Ok((a, 20)) if *a == want),
                "{what}: getsockopt 4096 {:?} want {want}",
                s.lookup
            );
        } else {
            check!(
                errno(&s.lookup) == Some(libc::EAFNOSUPPORT),
                "{what}: getsockopt 4096 {:?}",
                s.lookup
            );
        }
        let origin = if wire == Family::V4 {
            "ip4opt31"
        } else {
            "ip6opt31"
        };
        let fmt = |a: SocketAddr| {
            if a.is_ipv6() {
                format!("[{}]:{}", a.ip(), a.port())
            } else {
                a.to_string()
            }
        };
        let want_line = format!(
            "{} {} {origin}",
            fmt(SocketAddr::new(cip, CPORT)),
            fmt(SocketAddr::new(vip, VPORT))
        );
        let table = env::toa_table()?;
        check!(
            table.iter().any(|l| l.ends_with(&want_line)),
            "{what}: no toa_table line ending {want_line:?}: {table:?}"
        );
        let d = delta(&before)?;
        check!(
            d["ip_option_toa"] == 1 && d["syn_recv_sock_toa"] == 1,
            "{what}: counters {d:?}"
        );
        close(ctx, s)?;
    }
    Ok(())
}

/// The IP-option TOA/UOA design's NAT64 mode: an AF_INET socket gets the IPv6 client and VIP as sockaddr_in6; and with
/// getsockname_vip=0, getsockname() is left alone.
pub(crate) fn ip_option_parameters(ctx: &mut Ctx) -> TestResult {
    env::load(&["nat64_getpeername=1"])?;
    let r = (|| {
        let s = serve(
            ctx,
            Af::Inet,
            Family::V4,
            ip_toa(Family::V4, IpAddr::V6(CIP6), IpAddr::V6(VIP6)),
        )?;
        check!(
            s.peer == SocketAddr::from((CIP6, CPORT)),
            "nat64 mode: getpeername() {}",
            s.peer
        );
        check!(
            s.local == SocketAddr::from((VIP6, VPORT)),
            "nat64 mode: getsockname() {}",
            s.local
        );
        close(ctx, s)
    })();
    env::load(&["getsockname_vip=0"])?;
    let r = r.and_then(|_| {
        let s = serve(
            ctx,
            Af::Inet,
            Family::V4,
            ip_toa(Family::V4, IpAddr::V4(CIP4), IpAddr::V4(VIP4)),
        )?;
        check!(
            s.peer == SocketAddr::from((CIP4, CPORT)),
            "getsockname_vip=0: getpeername() {}",
            s.peer
        );
        check!(
            s.local.ip() == IpAddr::V4(SERVER_V4),
            "getsockname_vip=0: getsockname() {}",
            s.local
        );
        close(ctx, s)
    });
    env::load(&[])?;
    r
}

/// Malformed IP-option TOAs are ignored and counted (the TCP option of the same packet still counts);
/// DPVS's UOA layout on the same type is not a TOA and not malformed.
pub(crate) fn ip_option_malformed(ctx: &mut Ctx) -> TestResult {
    let good = ip4opt(IpAddr::V4(CIP4), CPORT, IpAddr::V4(VIP4), VPORT);
    let mut bad_bit = good.clone();
    bad_bit[2] = 1;
    let mut bad_len = good[..12].to_vec();
    bad_len[1] = 12;
    let v4cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("family bit disagrees with the length", bad_bit, 1),
        ("type 31 of length 12", bad_len, 1),
        (
            "DPVS UOA (len 8)",
            vec![31, 8, 0x9c, 0x41, 198, 51, 100, 7],
            0,
        ),
    ];
    let tcp = toa4(200, Ipv4Addr::new(192, 0, 2, 77), 1234);
    for (what, ipv4, malformed) in v4cases {
        let before = Stats::read()?;
        let opts = Options {
            ipv4,
            ack: tcp.clone(),
            ..Options::default()
        };
        let s = serve(ctx, Af::Inet, Family::V4, opts)?;
        check!(
            s.peer == SocketAddr::from((Ipv4Addr::new(192, 0, 2, 77), 1234)),
            "{what}: getpeername() {} (the TCP option should count)",
            s.peer
        );
        check!(
            s.local.ip() == IpAddr::V4(SERVER_V4),
            "{what}: getsockname() {}",
            s.local
        );
        let d = delta(&before)?;
        check!(
            d["ip_option_malformed"] == malformed as i64 && d["ip_option_toa"] == 0,
            "{what}: counters {d:?}"
        );
        close(ctx, s)?;
    }
    let v6cases: Vec<(&str, Vec<u8>, u64)> = vec![
        (
            "option 31 of length 4",
            dstopts(&[], &[31, 4, 0, 0, 0, 0]),
            1,
        ),
        (
            "DPVS UOA (optlen 6)",
            dstopts(&[], &[31, 6, 0x9c, 0x41, 198, 51, 100, 7]),
            0,
        ),
    ];
    for (what, ipv6_dstopts, malformed) in v6cases {
        let before = Stats::read()?;
        let s = serve(
            ctx,
            Af::Inet6,
            Family::V6,
            Options {
                ipv6_dstopts,
                ..Options::default()
            },
        )?;
        check!(
            s.peer.ip() == IpAddr::V6(LB_V6),
            "{what}: getpeername() {}",
            s.peer
        );
        let d = delta(&before)?;
        check!(
            d["ip_option_malformed"] == malformed as i64,
            "{what}: counters {d:?}"
        );
        close(ctx, s)?;
    }
    Ok(())
}

/// A packet with an IP-option TOA and a TCP-option TOA: the IP option wins (README, "Both present").
pub(crate) fn ip_option_wins_over_tcp_option(ctx: &mut Ctx) -> TestResult {
    for wire in [Family::V4, Family::V6] {
        let mut opts = ip_toa(wire, IpAddr::V4(CIP4), IpAddr::V4(VIP4));
        opts.ack = toa4(254, Ipv4Addr::new(192, 0, 2, 77), 1234);
        let af = if wire == Family::V4 {
            Af::Inet
        } else {
            Af::Inet6
        };
        let s = serve(ctx, af, wire, opts)?;
        let want = if af == Af::Inet {
            IpAddr::V4(CIP4)
        } else {
            v4mapped(CIP4)
        };
        check!(
            s.peer == SocketAddr::new(want, CPORT),
            "{wire:?}: getpeername() {}",
            s.peer
        );
        close(ctx, s)?;
    }
    Ok(())
}
