//! Where toa reads the TCP option, on real handshakes: only the segment that creates the child (the ACK
//! completing the handshake, the cookie ACK under SYN cookies, the SYN under TCP Fast Open); the option
//! walk (the first TOA wins) and malformed option lists.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use crate::sys::Sock;
use lbemu::packet::Family;
use lbemu::{Conn, Options, LB_V4};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where the TOA rides: only the segment that reaches syn_recv_sock counts (the ACK completing the
/// handshake). A TOA only in the SYN or only in a later data segment is not used.
pub(crate) fn toa_only_in_the_handshake_ack(ctx: &mut Ctx) -> TestResult {
    for (what, opts) in [
        (
            "SYN",
            Options {
                syn: toa4(200, CIP4, CPORT),
                ..Options::default()
            },
        ),
        (
            "data",
            Options {
                data: toa4(200, CIP4, CPORT),
                ..Options::default()
            },
        ),
    ] {
        let s = serve(ctx, Af::Inet, Family::V4, opts)?;
        check!(
            s.peer.ip() == IpAddr::V4(LB_V4),
            "TOA only in the {what}: getpeername {}",
            s.peer
        );
        close(ctx, s)?;
    }
    Ok(())
}

/// Other options around the TOA (NOP, timestamps, unknown kinds, Linux's experimental 254/4), and two
/// TOAs: the first wins.
pub(crate) fn option_walk_and_first_toa_wins(ctx: &mut Ctx) -> TestResult {
    let mut opts = vec![
        1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 254, 4, 0xf9, 0x89, 99, 2,
    ];
    opts.extend(toa4(254, CIP4, CPORT));
    opts.extend(toa4(200, Ipv4Addr::new(203, 0, 113, 1), 1));
    let s = serve(ctx, Af::Inet, Family::V4, ack_opts(opts))?;
    check!(
        s.peer == SocketAddr::from((CIP4, CPORT)),
        "getpeername {}",
        s.peer
    );
    close(ctx, s)
}

/// Malformed option lists are ignored and counted; the connection is still served (with the LB
/// address).
pub(crate) fn malformed_options(ctx: &mut Ctx) -> TestResult {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "length 0 after the TOA",
            [toa4(200, CIP4, CPORT), vec![99, 0]].concat(),
        ),
        ("length 1", vec![1, 1, 200, 1]),
        ("truncated TOA", vec![1, 1, 200, 8, 0x9c, 0x41]),
        (
            "length past the end",
            [vec![254, 40], toa4(200, CIP4, CPORT)].concat(),
        ),
        ("kind without length", vec![1, 1, 1, 200]),
    ];
    for (what, opts) in cases {
        let before = Stats::read()?;
        let s = serve(ctx, Af::Inet, Family::V4, ack_opts(opts))?;
        check!(
            s.peer.ip() == IpAddr::V4(LB_V4),
            "{what}: getpeername {}",
            s.peer
        );
        let d = delta(&before)?;
        check!(
            d["tcp_option_malformed"] == 1,
            "{what}: tcp_option_malformed +{}",
            d["tcp_option_malformed"]
        );
        check!(
            d["syn_recv_sock_no_toa"] == 1 && d["ip6_address_alloc"] == 0,
            "{what}: counters {d:?}"
        );
        close(ctx, s)?;
    }
    // Unknown lengths of TOA kinds are other options, not malformed and not TOA.
    let before = Stats::read()?;
    let s = serve(
        ctx,
        Af::Inet,
        Family::V4,
        ack_opts(vec![200, 6, 1, 2, 3, 4]),
    )?;
    check!(
        s.peer.ip() == IpAddr::V4(LB_V4),
        "200/6: getpeername {}",
        s.peer
    );
    check!(
        delta(&before)?["tcp_option_malformed"] == 0,
        "200/6 counted as malformed"
    );
    close(ctx, s)
}

/// SYN cookies (net.ipv4.tcp_syncookies=2): the child is created from the cookie ACK, whose TOA is used.
pub(crate) fn syn_cookies(ctx: &mut Ctx) -> TestResult {
    let old = env::sysctl("net.ipv4.tcp_syncookies", "2")?;
    let r = (|| {
        let s = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
        check!(
            s.peer == SocketAddr::from((CIP4, CPORT)),
            "cookie ACK: getpeername {}",
            s.peer
        );
        close(ctx, s)?;
        let s = serve(ctx, Af::Inet6, Family::V6, ack_opts(toa6(253, CIP6, CPORT)))?;
        check!(
            s.peer == SocketAddr::from((CIP6, CPORT)),
            "IPv6 cookie ACK: getpeername {}",
            s.peer
        );
        close(ctx, s)
    })();
    env::sysctl("net.ipv4.tcp_syncookies", &old)?;
    r
}

/// TCP Fast Open: the child is created from the SYN (with data), whose TOA is used.
pub(crate) fn tcp_fast_open(ctx: &mut Ctx) -> TestResult {
    let old = env::sysctl("net.ipv4.tcp_fastopen", "514")?; // 0x202: server on, no cookie needed
    let r = (|| {
        let port = ctx.port();
        let listener = io(
            Sock::listen((Ipv4Addr::UNSPECIFIED, port).into(), true),
            "listen",
        )?;
        let opts = Options {
            syn: toa4(200, CIP4, CPORT),
            ..Options::default()
        };
        let mut conn = Conn::new(&mut ctx.lb, Family::V4, port, opts);
        io(conn.connect(&mut ctx.lb, b"hello"), "TFO handshake")?;
        let (sock, accepted) = io(listener.accept(WAIT), "accept")?;
        let data = io(sock.read_exact(5, WAIT), "read")?;
        check!(data == b"hello", "TFO data {data:?}");
        check!(
            accepted == SocketAddr::from((CIP4, CPORT)),
            "TFO SYN: accept() returned {accepted}"
        );
        let lookup = sock.toa_lookup(20);
        let (peer, local) = (
            io(sock.peer(), "getpeername")?,
            io(sock.local(), "getsockname")?,
        );
        close(
            ctx,
            Served {
                listener,
                sock,
                conn,
                accepted,
                peer,
                local,
                lookup,
            },
        )
    })();
    env::sysctl("net.ipv4.tcp_fastopen", &old)?;
    r
}
