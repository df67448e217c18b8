//! TCP-option TOA across address families: IPv4 and IPv6 TOAs (kinds 200, 253, 254) on AF_INET and
//! AF_INET6 listeners, IPv4 and IPv6 on the wire (v4-mapped included), NAT64 (getsockopt 4096, and the
//! `nat64_getpeername` mode), connections without a TOA, and getsockopt 4096's errors.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use lbemu::packet::Family;
use lbemu::{Options, LB_V4, SERVER_V4, SERVER_V6};
use std::net::{IpAddr, SocketAddr};

/// AF_INET socket, IPv4 TOA in each format: accept/getpeername return the client; getsockopt fails
/// with EAFNOSUPPORT and counts getname_toa_mismatch.
pub(crate) fn ipv4_toa_on_af_inet(ctx: &mut Ctx) -> TestResult {
    for kind in [200u8, 254, 253] {
        let before = Stats::read()?;
        let s = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(kind, CIP4, CPORT)))?;
        let want: SocketAddr = (CIP4, CPORT).into();
        check!(
            s.accepted == want,
            "kind {kind}: accept() returned {}, want {want}",
            s.accepted
        );
        check!(
            s.peer == want,
            "kind {kind}: getpeername() returned {}, want {want}",
            s.peer
        );
        check!(
            s.local.ip() == IpAddr::V4(SERVER_V4),
            "kind {kind}: getsockname() {}",
            s.local
        );
        check!(
            errno(&s.lookup) == Some(libc::EAFNOSUPPORT),
            "kind {kind}: getsockopt 4096 gave {:?}",
            s.lookup
        );
        // getname_toa_ok: accept() and getpeername() each.
        let counts = [
            ("syn_recv_sock_toa", 1),
            ("getname_toa_ok", 2),
            ("getname_toa_mismatch", 1),
            ("ip6_address_alloc", 1),
        ];
        expect_deltas(&before, &counts, &format!("kind {kind}"))?;
        close(ctx, s)?;
    }
    Ok(())
}

/// AF_INET6 socket, IPv4 on the wire (v4-mapped) with an IPv4 TOA: ::ffff:CIP with the client port,
/// processed once although tcp_v6_syn_recv_sock calls tcp_v4_syn_recv_sock.
pub(crate) fn ipv4_toa_on_af_inet6_mapped(ctx: &mut Ctx) -> TestResult {
    let before = Stats::read()?;
    let s = serve(ctx, Af::Inet6, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
    let want = SocketAddr::new(v4mapped(CIP4), CPORT);
    check!(
        s.accepted == want,
        "accept() returned {}, want {want}",
        s.accepted
    );
    check!(
        s.peer == want,
        "getpeername() returned {}, want {want}",
        s.peer
    );
    check!(
        s.local.ip() == server_addr(Af::Inet6, Family::V4),
        "getsockname() {}",
        s.local
    );
    check!(
        errno(&s.lookup) == Some(libc::EAFNOSUPPORT),
        "getsockopt 4096 gave {:?}",
        s.lookup
    );
    // Once: tcp_v6_syn_recv_sock calls tcp_v4_syn_recv_sock, and only the v4 probe handles it.
    let counts = [
        ("syn_recv_sock_toa", 1),
        ("syn_recv_sock_no_toa", 0),
        ("ip6_address_alloc", 1),
    ];
    expect_deltas(&before, &counts, "v4-mapped")?;
    close(ctx, s)
}

/// AF_INET6 socket, IPv6 on the wire, IPv6 TOA (253 and 254): the client IPv6:port everywhere, and
/// getsockopt 4096 returns it too.
pub(crate) fn ipv6_toa_on_af_inet6(ctx: &mut Ctx) -> TestResult {
    for kind in [253u8, 254] {
        let s = serve(
            ctx,
            Af::Inet6,
            Family::V6,
            ack_opts(toa6(kind, CIP6, CPORT)),
        )?;
        let want: SocketAddr = (CIP6, CPORT).into();
        check!(
            s.accepted == want,
            "kind {kind}: accept() returned {}, want {want}",
            s.accepted
        );
        check!(
            s.peer == want,
            "kind {kind}: getpeername() returned {}",
            s.peer
        );
        check!(
            s.local.ip() == IpAddr::V6(SERVER_V6),
            "kind {kind}: getsockname() {}",
            s.local
        );
        match &s.lookup {
            Ok((a, 20)) if *a == want => {}
            other => {
                return Err(format!(
                    "kind {kind}: getsockopt 4096 gave {other:?}, want {want}"
                ))
            }
        }
        close(ctx, s)?;
    }
    Ok(())
}

/// AF_INET6 socket, IPv6 on the wire, IPv4 TOA: ::ffff:CIP.
pub(crate) fn ipv4_toa_on_ipv6_wire(ctx: &mut Ctx) -> TestResult {
    let s = serve(ctx, Af::Inet6, Family::V6, ack_opts(toa4(254, CIP4, CPORT)))?;
    let want = SocketAddr::new(v4mapped(CIP4), CPORT);
    check!(
        s.peer == want && s.accepted == want,
        "accept {} / getpeername {}, want {want}",
        s.accepted,
        s.peer
    );
    close(ctx, s)
}

/// AF_INET socket, IPv6 TOA (NAT64): getpeername unchanged, getsockopt 4096 returns the client.
pub(crate) fn nat64_on_af_inet(ctx: &mut Ctx) -> TestResult {
    for kind in [253u8, 254] {
        let before = Stats::read()?;
        let s = serve(ctx, Af::Inet, Family::V4, ack_opts(toa6(kind, CIP6, CPORT)))?;
        let lb = SocketAddr::new(IpAddr::V4(LB_V4), s.conn.sport);
        check!(
            s.accepted == lb && s.peer == lb,
            "kind {kind}: accept {} / getpeername {}, want the LB {lb}",
            s.accepted,
            s.peer
        );
        let want: SocketAddr = (CIP6, CPORT).into();
        match &s.lookup {
            Ok((a, 20)) if *a == want => {}
            other => {
                return Err(format!(
                    "kind {kind}: getsockopt 4096 gave {other:?}, want {want}"
                ))
            }
        }
        let d = delta(&before)?;
        check!(
            d["getname_toa_ok"] == 1,
            "kind {kind}: getname_toa_ok +{}",
            d["getname_toa_ok"]
        );
        close(ctx, s)?;
    }
    Ok(())
}

/// The IP-option TOA/UOA design's mode (nat64_getpeername=1): an AF_INET socket returns the IPv6 client as a sockaddr_in6
/// when the caller's buffer holds one, and the LB's sockaddr_in when it does not.
pub(crate) fn nat64_getpeername_mode(ctx: &mut Ctx) -> TestResult {
    env::load(&["nat64_getpeername=1"])?;
    let r = (|| {
        let s = serve(ctx, Af::Inet, Family::V4, ack_opts(toa6(253, CIP6, CPORT)))?;
        let want: SocketAddr = (CIP6, CPORT).into();
        check!(
            s.accepted == want,
            "accept() returned {}, want {want}",
            s.accepted
        );
        check!(
            s.peer == want,
            "getpeername() returned {}, want {want}",
            s.peer
        );
        let (small, len) = io(s.sock.peer_with_buffer(16), "getpeername(16)")?;
        let lb = SocketAddr::new(IpAddr::V4(LB_V4), s.conn.sport);
        check!(
            small == lb && len == 16,
            "getpeername with a 16-byte buffer: {small} len {len}, want {lb} len 16"
        );
        let (exact, len) = io(s.sock.peer_with_buffer(28), "getpeername(28)")?;
        check!(
            exact == want && len == 28,
            "getpeername with a 28-byte buffer: {exact} len {len}"
        );
        close(ctx, s)?;
        // An IPv4 TOA is unchanged by the mode.
        let s4 = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
        check!(
            s4.peer == SocketAddr::from((CIP4, CPORT)),
            "IPv4 TOA in nat64 mode: {}",
            s4.peer
        );
        close(ctx, s4)
    })();
    env::load(&[])?;
    r
}

/// No TOA: nothing changes; getsockopt 4096 fails with ENOENT and counts getname_toa_empty.
pub(crate) fn no_toa(ctx: &mut Ctx) -> TestResult {
    for (af, wire) in [
        (Af::Inet, Family::V4),
        (Af::Inet6, Family::V4),
        (Af::Inet6, Family::V6),
    ] {
        let before = Stats::read()?;
        let s = serve(ctx, af, wire, Options::default())?;
        let lb_ip = if af == Af::Inet6 && wire == Family::V4 {
            v4mapped(LB_V4)
        } else {
            lb_addr(wire)
        };
        let lb = SocketAddr::new(lb_ip, s.conn.sport);
        check!(
            s.accepted == lb && s.peer == lb,
            "{af:?}/{wire:?}: accept {} getpeername {}, want {lb}",
            s.accepted,
            s.peer
        );
        check!(
            errno(&s.lookup) == Some(libc::ENOENT),
            "{af:?}/{wire:?}: getsockopt 4096 gave {:?}",
            s.lookup
        );
        let d = delta(&before)?;
        check!(
            d["syn_recv_sock_no_toa"] == 1 && d["syn_recv_sock_toa"] == 0,
            "{af:?}/{wire:?}: counters {d:?}"
        );
        check!(
            d["getname_toa_empty"] == 1 && d["ip6_address_alloc"] == 0,
            "{af:?}/{wire:?}: counters {d:?}"
        );
        close(ctx, s)?;
    }
    Ok(())
}

/// getsockopt 4096 errors: a too short buffer (EINVAL), a listening socket (ENOTCONN).
pub(crate) fn getsockopt_errors(ctx: &mut Ctx) -> TestResult {
    let s = serve(ctx, Af::Inet, Family::V4, ack_opts(toa6(253, CIP6, CPORT)))?;
    let short = s.sock.toa_lookup(19);
    check!(errno(&short) == Some(libc::EINVAL), "len 19 gave {short:?}");
    let larger = s.sock.toa_lookup(32);
    check!(
        matches!(larger, Ok((_, 20))),
        "len 32 gave {larger:?}, want the 20 bytes written"
    );
    let listening = s.listener.toa_lookup(20);
    check!(
        errno(&listening) == Some(libc::ENOTCONN),
        "listener gave {listening:?}"
    );
    close(ctx, s)
}
