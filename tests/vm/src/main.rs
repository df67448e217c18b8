//! toa's integration tests. They run inside the test VM (`scripts/vm-run.sh`), as root, with toa.ko
//! loaded: the LB emulator sends real packets through a TUN device into the real kernel, and each test
//! asserts what the server application sees (`accept`, `getpeername`, `getsockname`, getsockopt 4096;
//! for UDP, the datagram and getsockopt 2048/2049, in `uoa`) and what `/proc/net/toa_*` and
//! `/proc/net/uoa_table` report.
//!
//! `toa-vmtest [FILTER...]` runs the tests whose name contains a filter (all by default), reports them
//! in KTAP (the kernel selftests' format: `ok N name` / `not ok N name`, reasons on `#` lines) and ends
//! with `N passed, N failed`; `toa-vmtest --list` lists the tests; `toa-vmtest demo` prints what the
//! server sees for each LB scenario instead. The tests of an area share a prefix (`uoa_` for UDP, in
//! `uoa.rs`), so `toa-vmtest uoa_` runs one area.

mod env;
mod sys;

use env::{delta, Stats};
use lbemu::packet::Family;
use lbemu::{Conn, Lb, Options, LB_V4, LB_V6, SERVER_V4, SERVER_V6};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use sys::Sock;

/// The real client behind the load balancer (TEST-NET-2).
const CIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The real IPv6 client (documentation prefix).
const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc1, 0, 0, 0, 0, 7);
/// The client's port.
const CPORT: u16 = 40001;
const WAIT: Duration = Duration::from_secs(5);

type TestResult = Result<(), String>;

macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

mod bench;
mod stress;
mod uoa;

fn io<T>(r: io::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// A TCP option with an IPv4 client: kind, len 8, cport, cip.
fn toa4(kind: u8, cip: Ipv4Addr, cport: u16) -> Vec<u8> {
    let mut v = vec![kind, 8];
    v.extend_from_slice(&cport.to_be_bytes());
    v.extend_from_slice(&cip.octets());
    v
}

/// A TCP option with an IPv6 client: kind, len 20, cport, cip6.
fn toa6(kind: u8, cip: Ipv6Addr, cport: u16) -> Vec<u8> {
    let mut v = vec![kind, 20];
    v.extend_from_slice(&cport.to_be_bytes());
    v.extend_from_slice(&cip.octets());
    v
}

/// The VIP of the IP-option TOA tests and its port.
const VIP4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x76, 0, 0, 0, 0, 9);
const VPORT: u16 = 80;

/// The IP-option TOA/UOA design's IPv4 option 31: type, len (16/40), operation (bit 0: IPv6), padding, cport, vport, cip, vip.
fn ip4opt(cip: IpAddr, cport: u16, vip: IpAddr, vport: u16) -> Vec<u8> {
    let v6 = cip.is_ipv6();
    let mut o = vec![31, if v6 { 40 } else { 16 }, u8::from(v6), 0];
    o.extend_from_slice(&cport.to_be_bytes());
    o.extend_from_slice(&vport.to_be_bytes());
    o.extend(ip_bytes(cip));
    o.extend(ip_bytes(vip));
    o
}

/// The IP-option TOA/UOA design's IPv6 destination option 31 TLV: type, optlen (12/36), cport, vport, cip, vip.
fn ip6tlv(cip: IpAddr, cport: u16, vip: IpAddr, vport: u16) -> Vec<u8> {
    let mut o = vec![31, if cip.is_ipv6() { 36 } else { 12 }];
    o.extend_from_slice(&cport.to_be_bytes());
    o.extend_from_slice(&vport.to_be_bytes());
    o.extend(ip_bytes(cip));
    o.extend(ip_bytes(vip));
    o
}

/// A destination-options header around `tlvs` (after `lead` padding TLVs), padded to 8 bytes with PadN.
fn dstopts(lead: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut h = vec![6, 0];
    h.extend_from_slice(lead);
    h.extend_from_slice(tlvs);
    match (8 - h.len() % 8) % 8 {
        0 => {}
        1 => h.push(0),
        n => {
            h.extend([1, (n - 2) as u8]);
            h.extend(std::iter::repeat_n(0, n - 2));
        }
    }
    h[1] = (h.len() / 8 - 1) as u8;
    h
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Options carrying an IP-level TOA on `wire`: an IPv4 option (after two NOPs when there is room in the
/// 40 bytes of IPv4 options) or a destination option (after Pad1 and PadN).
fn ip_toa(wire: Family, cip: IpAddr, vip: IpAddr) -> Options {
    match wire {
        Family::V4 => {
            let opt = ip4opt(cip, CPORT, vip, VPORT);
            let lead = if opt.len() <= 36 { vec![1, 1] } else { vec![] };
            Options {
                ipv4: [lead, opt].concat(),
                ..Options::default()
            }
        }
        Family::V6 => Options {
            ipv6_dstopts: dstopts(&[0, 1, 0], &ip6tlv(cip, CPORT, vip, VPORT)),
            ..Options::default()
        },
    }
}

fn ack_opts(ack: Vec<u8>) -> Options {
    Options {
        ack,
        ..Options::default()
    }
}

fn v4mapped(a: Ipv4Addr) -> IpAddr {
    IpAddr::V6(a.to_ipv6_mapped())
}

/// The socket family of a listener.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Af {
    Inet,
    Inet6,
}

struct Ctx {
    lb: Lb,
    next_port: u16,
}

impl Ctx {
    fn port(&mut self) -> u16 {
        self.next_port += 1;
        self.next_port
    }
}

/// One connection served: what the server saw.
struct Served {
    listener: Sock,
    sock: Sock,
    conn: Conn,
    accepted: SocketAddr,
    peer: SocketAddr,
    local: SocketAddr,
    lookup: io::Result<(SocketAddr, usize)>,
}

/// Opens a listener of family `af`, has the LB connect over `wire` with `opts`, send "hello", and
/// records what the server application sees.
fn serve(ctx: &mut Ctx, af: Af, wire: Family, opts: Options) -> Result<Served, String> {
    let port = ctx.port();
    let bind: SocketAddr = match af {
        Af::Inet => (Ipv4Addr::UNSPECIFIED, port).into(),
        Af::Inet6 => (Ipv6Addr::UNSPECIFIED, port).into(),
    };
    let listener = io(Sock::listen(bind, false), "listen")?;
    let mut conn = Conn::new(&mut ctx.lb, wire, port, opts);
    io(conn.connect(&mut ctx.lb, &[]), "handshake")?;
    io(conn.send(&mut ctx.lb, b"hello"), "send")?;
    let (sock, accepted) = io(listener.accept(WAIT), "accept")?;
    let data = io(sock.read_exact(5, WAIT), "read")?;
    check!(data == b"hello", "server read {data:?}, not the LB's data");
    let peer = io(sock.peer(), "getpeername")?;
    let local = io(sock.local(), "getsockname")?;
    let lookup = sock.toa_lookup(20);
    Ok(Served {
        listener,
        sock,
        conn,
        accepted,
        peer,
        local,
        lookup,
    })
}

/// Closes a served connection the normal way: the LB sends FIN, the server closes, the LB acknowledges
/// the server's FIN, so the server socket is destroyed at once.
fn finish(ctx: &mut Ctx, s: Served) -> TestResult {
    let Served {
        listener,
        sock,
        mut conn,
        ..
    } = s;
    io(conn.fin(&mut ctx.lb), "FIN")?;
    drop(sock);
    io(conn.await_server_fin(&mut ctx.lb, WAIT), "server FIN")?;
    drop(listener);
    Ok(())
}

/// [`finish`], then waits until toa freed every entry (no other TOA connection may be open).
fn close(ctx: &mut Ctx, s: Served) -> TestResult {
    finish(ctx, s)?;
    env::wait_all_freed()
}

fn lb_addr(wire: Family) -> IpAddr {
    match wire {
        Family::V4 => IpAddr::V4(LB_V4),
        Family::V6 => IpAddr::V6(LB_V6),
    }
}

fn server_addr(af: Af, wire: Family) -> IpAddr {
    match (af, wire) {
        (Af::Inet, _) => IpAddr::V4(SERVER_V4),
        (Af::Inet6, Family::V4) => v4mapped(SERVER_V4),
        (Af::Inet6, Family::V6) => IpAddr::V6(SERVER_V6),
    }
}

/// Checks that the counters moved by exactly `want` (name, delta) since `before`; `what` names the case.
fn expect_deltas(before: &Stats, want: &[(&str, i64)], what: &str) -> TestResult {
    let d = delta(before)?;
    for (name, n) in want {
        let got = d.get(*name).copied().unwrap_or(0);
        check!(got == *n, "{what}: {name} +{got}, want +{n} (all: {d:?})");
    }
    Ok(())
}

fn errno(r: &io::Result<(SocketAddr, usize)>) -> Option<i32> {
    r.as_ref().err().and_then(io::Error::raw_os_error)
}

// ---------------------------------------------------------------------------------------------------
// Semantics

/// AF_INET socket, IPv4 TOA in each format: accept/getpeername return the client; getsockopt fails
/// with EAFNOSUPPORT and counts getname_toa_mismatch.
fn ipv4_toa_on_af_inet(ctx: &mut Ctx) -> TestResult {
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
fn ipv4_toa_on_af_inet6_mapped(ctx: &mut Ctx) -> TestResult {
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
fn ipv6_toa_on_af_inet6(ctx: &mut Ctx) -> TestResult {
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
fn ipv4_toa_on_ipv6_wire(ctx: &mut Ctx) -> TestResult {
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
fn nat64_on_af_inet(ctx: &mut Ctx) -> TestResult {
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
fn nat64_getpeername_mode(ctx: &mut Ctx) -> TestResult {
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
fn no_toa(ctx: &mut Ctx) -> TestResult {
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
fn getsockopt_errors(ctx: &mut Ctx) -> TestResult {
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

// ---------------------------------------------------------------------------------------------------
// Parsing on real packets

/// Where the TOA rides: only the segment that reaches syn_recv_sock counts (the ACK completing the
/// handshake). A TOA only in the SYN or only in a later data segment is not used.
fn toa_only_in_the_handshake_ack(ctx: &mut Ctx) -> TestResult {
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
fn option_walk_and_first_toa_wins(ctx: &mut Ctx) -> TestResult {
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
fn malformed_options(ctx: &mut Ctx) -> TestResult {
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
fn syn_cookies(ctx: &mut Ctx) -> TestResult {
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
fn tcp_fast_open(ctx: &mut Ctx) -> TestResult {
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

// ---------------------------------------------------------------------------------------------------
// Close paths: every entry is freed, whatever way the socket goes.

/// RST from the LB after accept().
fn close_by_rst(ctx: &mut Ctx) -> TestResult {
    let mut s = serve(ctx, Af::Inet6, Family::V6, ack_opts(toa6(253, CIP6, CPORT)))?;
    io(s.conn.rst(&mut ctx.lb), "RST")?;
    std::thread::sleep(Duration::from_millis(100));
    drop(s.sock);
    drop(s.listener);
    env::wait_all_freed()
}

/// The connection is reset before the application accepts it; then accepted and closed.
fn close_before_accept(ctx: &mut Ctx) -> TestResult {
    let port = ctx.port();
    let listener = io(
        Sock::listen((Ipv4Addr::UNSPECIFIED, port).into(), false),
        "listen",
    )?;
    let mut conn = Conn::new(
        &mut ctx.lb,
        Family::V4,
        port,
        ack_opts(toa4(200, CIP4, CPORT)),
    );
    io(conn.connect(&mut ctx.lb, &[]), "handshake")?;
    io(conn.rst(&mut ctx.lb), "RST")?;
    std::thread::sleep(Duration::from_millis(100));
    if let Ok((sock, _)) = listener.accept(Duration::from_millis(500)) {
        drop(sock);
    }
    drop(listener);
    env::wait_all_freed()
}

/// The listener is closed with children still in its accept queue.
fn listener_closed_with_queued_children(ctx: &mut Ctx) -> TestResult {
    let port = ctx.port();
    let before = Stats::read()?;
    let listener = io(
        Sock::listen((Ipv6Addr::UNSPECIFIED, port).into(), false),
        "listen",
    )?;
    let mut conns = Vec::new();
    for (i, wire) in [Family::V4, Family::V6, Family::V4].into_iter().enumerate() {
        let opts = ack_opts(if wire == Family::V4 {
            toa4(200, CIP4, CPORT + i as u16)
        } else {
            toa6(253, CIP6, CPORT)
        });
        let mut c = Conn::new(&mut ctx.lb, wire, port, opts);
        io(c.connect(&mut ctx.lb, &[]), "handshake")?;
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(100));
    let d = delta(&before)?;
    check!(
        d["ip6_address_alloc"] == 3,
        "3 queued children, ip6_address_alloc +{}",
        d["ip6_address_alloc"]
    );
    check!(
        env::toa_table()?.len() >= 3,
        "queued children missing from toa_table"
    );
    drop(listener);
    env::wait_all_freed()
}

// ---------------------------------------------------------------------------------------------------
// /proc and the module's life

/// /proc/net/toa_stats: the classic layout, a column per possible CPU, Tencent's seven rows first, the
/// UDP (UOA) rows last.
fn toa_stats_layout(_ctx: &mut Ctx) -> TestResult {
    let text = std::fs::read_to_string("/proc/net/toa_stats").map_err(|e| e.to_string())?;
    let s = Stats::read()?;
    let possible =
        std::fs::read_to_string("/sys/devices/system/cpu/possible").map_err(|e| e.to_string())?;
    let ncpu = possible
        .trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum::<usize>();
    let mut want_header = " ".repeat(34);
    for cpu in 0..ncpu {
        want_header.push_str(&format!("{:<11}", format!("CPU{cpu}")));
    }
    check!(
        s.header == want_header,
        "header {:?}, want {want_header:?}",
        s.header
    );
    let names: Vec<&str> = s.rows.iter().map(|(n, _)| n.as_str()).collect();
    let tencent = [
        "syn_recv_sock_toa",
        "syn_recv_sock_no_toa",
        "getname_toa_ok",
        "getname_toa_mismatch",
        "getname_toa_empty",
        "ip6_address_alloc",
        "ip6_address_free",
    ];
    check!(names.len() > 7 && names[..7] == tencent, "rows {names:?}");
    for line in text.lines().skip(1) {
        check!(
            line.len() == 26 + 11 * ncpu && line.as_bytes()[25] == b':',
            "row layout {line:?}"
        );
    }
    check!(
        s.rows.iter().all(|(_, v)| v.len() == ncpu),
        "a row without one value per possible CPU"
    );
    for extra in [
        "tcp_option_malformed",
        "missed_v4_syn_recv_sock",
        "missed_inet_getname",
        "missed_sock_destruct",
    ] {
        check!(names.contains(&extra), "no {extra} row");
    }
    // The UDP rows come last, in their order, after every earlier row (the missed_* ones included).
    let first_uoa = names.len().saturating_sub(uoa::UOA_ROWS.len());
    check!(
        names[first_uoa..] == uoa::UOA_ROWS,
        "last rows {:?}, want {:?}",
        &names[first_uoa..],
        uoa::UOA_ROWS
    );
    check!(
        names[..first_uoa].iter().all(|n| !n.starts_with("uoa_")),
        "a UOA row before the others: {names:?}"
    );
    Ok(())
}

/// /proc/net/toa_table lists live entries (local, LB, client, origin) and forgets closed ones.
fn toa_table_entries(ctx: &mut Ctx) -> TestResult {
    let a = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
    let b = serve(
        ctx,
        Af::Inet6,
        Family::V6,
        ack_opts(toa6(253, CIP6, CPORT + 1)),
    )?;
    let lines = env::toa_table()?;
    let want_a = format!(
        "{SERVER_V4}:{} {LB_V4}:{} {CIP4}:{CPORT} - tcp200",
        a.local.port(),
        a.conn.sport
    );
    let want_b = format!(
        "[{SERVER_V6}]:{} [{LB_V6}]:{} [{CIP6}]:{} - tcp253",
        b.local.port(),
        b.conn.sport,
        CPORT + 1
    );
    for want in [&want_a, &want_b] {
        check!(
            lines
                .iter()
                .any(|l| l.split_once(' ').map(|(_, rest)| rest) == Some(want.as_str())),
            "no line ending {want:?} in {lines:?}"
        );
    }
    finish(ctx, a)?;
    close(ctx, b)?;
    let lines = env::toa_table()?;
    check!(lines.is_empty(), "entries left after close: {lines:?}");
    Ok(())
}

/// The client ports of `/proc/net/toa_table` data lines (the `client` column, `CIP4:port`).
fn table_client_ports(text: &str) -> Result<Vec<u16>, String> {
    let mut lines = text.lines();
    check!(
        lines.next() == Some("sk local lb client vip origin"),
        "toa_table header: {text:.200}"
    );
    lines
        .map(|l| {
            l.split(' ')
                .nth(3)
                .and_then(|c| c.strip_prefix(&format!("{CIP4}:")))
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("toa_table line {l:?}"))
        })
        .collect()
}

/// `/proc/net/toa_table` read in many small `read()`s, each going on where the last one stopped: every
/// entry exactly once; seeking back gives the same bytes; entries closed between reads are no harm; a
/// file left open across rmmod is closed by the unload.
fn toa_table_dump_in_small_reads(ctx: &mut Ctx) -> TestResult {
    use std::io::{Read, Seek, SeekFrom};
    const N: usize = 600;
    // The smallest table: chains of 2.3 entries on average, so reads stop inside chains too.
    env::load(&["table_buckets=256"])?;
    let mut server = bench::Server::new();
    let (mut socks, _) = server.open(ctx, N, true)?;
    let read_all = |chunk: usize| -> Result<String, String> {
        let mut f = io(std::fs::File::open("/proc/net/toa_table"), "open toa_table")?;
        let (mut out, mut buf) = (Vec::new(), vec![0u8; chunk]);
        loop {
            match io(f.read(&mut buf), "read toa_table")? {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    };
    // 1. Small reads (many seq_file refills: about 250 lines), then one large read: the same entries.
    let small = read_all(97)?;
    let mut ports = table_client_ports(&small)?;
    ports.sort_unstable();
    let want: Vec<u16> = (1..=N as u16).collect();
    check!(
        ports == want,
        "{} lines in 97-byte reads, not each of the {N} entries once",
        ports.len()
    );
    let large = read_all(1 << 20)?;
    check!(
        small.len() == large.len(),
        "small reads gave {} bytes, one large read {}",
        small.len(),
        large.len()
    );
    // 2. Seeking back: to 0 (the walker starts over), then into the middle.
    let mut f = io(std::fs::File::open("/proc/net/toa_table"), "open toa_table")?;
    let mut head = vec![0u8; 5000];
    io(f.read_exact(&mut head), "read")?;
    io(f.seek(SeekFrom::Start(0)), "seek 0")?;
    let mut again = String::new();
    io(f.read_to_string(&mut again), "read after seek 0")?;
    check!(again == large, "content after seeking to 0 differs");
    io(f.seek(SeekFrom::Start(3000)), "seek 3000")?;
    let mut tail = String::new();
    io(f.read_to_string(&mut tail), "read after seek 3000")?;
    check!(
        tail.as_bytes() == &large.as_bytes()[3000..],
        "content after seeking to 3000 differs"
    );
    // 3. Entries removed between reads (the entry a read stopped at among them): nothing that was never
    // there, and every survivor listed. (Not "each once": when the entry a read stopped at is gone, the
    // next read lists its bucket from the start.)
    let mut f = io(std::fs::File::open("/proc/net/toa_table"), "open toa_table")?;
    let (mut text, mut buf) = (Vec::new(), [0u8; 97]);
    let mut round = 0;
    loop {
        let n = io(f.read(&mut buf), "read toa_table")?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        round += 1;
        if round % 10 == 0 && socks.len() > 300 {
            // Closed with RST, so their entries go at once, while the walker stands among them.
            for _ in 0..5 {
                let i = round % socks.len();
                socks.swap_remove(i).abort();
            }
        }
    }
    let seen = table_client_ports(&String::from_utf8(text).map_err(|e| e.to_string())?)?;
    check!(
        seen.iter().all(|p| (1..=N as u16).contains(p)),
        "a client port that was never connected"
    );
    let now = table_client_ports(&read_all(4096)?)?;
    check!(
        now.len() == socks.len(),
        "after closing {} sockets: {} lines for {} open sockets",
        N - socks.len(),
        now.len(),
        socks.len()
    );
    check!(
        now.iter().all(|p| seen.contains(p)),
        "an entry alive through the whole dump was not listed"
    );
    // 4. A file open (in the middle of a dump) across rmmod: the unload closes it, reads then fail.
    let mut f = io(std::fs::File::open("/proc/net/toa_table"), "open toa_table")?;
    io(f.read(&mut buf), "read toa_table")?;
    let r = env::unload();
    let after = f.read(&mut buf);
    drop(f);
    r?;
    env::load(&[])?;
    check!(
        matches!(&after, Err(e) if e.raw_os_error() == Some(libc::EIO)),
        "read after rmmod: {after:?}, not EIO"
    );
    server.close(ctx, socks)
}

/// `table_buckets`: by default as many buckets as TCP's established hash table, shown in sysfs; a small
/// table (long chains) answers every lookup right and frees every entry; invalid values fail the load
/// with a clear kernel log line.
fn table_buckets_parameter(ctx: &mut Ctx) -> TestResult {
    const PARAM: &str = "/sys/module/toa/parameters/table_buckets";
    const N: usize = 1000;
    let read_param = || -> Result<u32, String> {
        let text = io(std::fs::read_to_string(PARAM), PARAM)?;
        text.trim()
            .parse()
            .map_err(|e| format!("{PARAM} {text:?}: {e}"))
    };
    env::load(&[])?;
    let default = read_param()?;
    check!(
        default.is_power_of_two() && (256..=1 << 24).contains(&default),
        "default table_buckets {default}"
    );
    // The kernel's boot line, when the log still holds it.
    let log = env::dmesg();
    if let Some(tcp) = log
        .lines()
        .find_map(|l| l.split("TCP established hash table entries: ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
    {
        check!(
            default == tcp.max(256),
            "table_buckets {default}, TCP's established table {tcp}"
        );
    }
    let r = (|| {
        env::load(&["table_buckets=256"])?;
        check!(
            read_param()? == 256,
            "table_buckets=256 shows {}",
            read_param()?
        );
        let before = Stats::read()?;
        let mut server = bench::Server::new();
        let (socks, _) = server.open(ctx, N, true)?;
        for (i, s) in socks.iter().enumerate() {
            let want = SocketAddr::new(IpAddr::V4(CIP4), i as u16 + 1);
            let got = io(s.peer(), "getpeername")?;
            check!(got == want, "connection {i}: getpeername {got}, not {want}");
        }
        // Half of them go (every other one: entries in the middle of chains), the rest still answer.
        let (gone, kept): (Vec<_>, Vec<_>) =
            socks.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        gone.into_iter().for_each(|(_, s)| s.abort());
        io(ctx.lb.drain(Duration::from_millis(300)), "drain")?;
        for (i, s) in &kept {
            let want = SocketAddr::new(IpAddr::V4(CIP4), *i as u16 + 1);
            let got = io(s.peer(), "getpeername")?;
            check!(
                got == want,
                "after closing half, connection {i}: getpeername {got}"
            );
        }
        server.close(ctx, kept.into_iter().map(|(_, s)| s).collect())?;
        let d = delta(&before)?;
        check!(
            d["ip6_address_alloc"] == N as i64 && d["ip6_address_free"] == N as i64,
            "{} entries allocated, {} freed, for {N} connections",
            d["ip6_address_alloc"],
            d["ip6_address_free"]
        );
        for bad in [
            "table_buckets=100",
            "table_buckets=128",
            "table_buckets=33554432",
        ] {
            check!(env::load(&[bad]).is_err(), "insmod toa {bad} succeeded");
            check!(
                env::dmesg().contains(&format!("invalid {bad}")),
                "insmod toa {bad}: no clear kernel log line"
            );
        }
        Ok(())
    })();
    env::load(&[])?;
    r
}

/// rmmod with live TOA sockets: no report, no leak, and the kernel's own getname answers afterwards.
fn rmmod_with_live_sockets(ctx: &mut Ctx) -> TestResult {
    let s4 = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
    let s6 = serve(ctx, Af::Inet6, Family::V6, ack_opts(toa6(253, CIP6, CPORT)))?;
    check!(
        s4.peer.ip() == IpAddr::V4(CIP4),
        "before rmmod: {}",
        s4.peer
    );
    env::unload()?;
    let log = env::dmesg();
    check!(
        log.contains("TOA unloaded"),
        "no 'TOA unloaded' in the kernel log"
    );
    let p4 = io(s4.sock.peer(), "getpeername after rmmod")?;
    let p6 = io(s6.sock.peer(), "getpeername after rmmod")?;
    check!(
        p4 == SocketAddr::new(IpAddr::V4(LB_V4), s4.conn.sport),
        "after rmmod: {p4}"
    );
    check!(
        p6 == SocketAddr::new(IpAddr::V6(LB_V6), s6.conn.sport),
        "after rmmod: {p6}"
    );
    let l = s6.sock.toa_lookup(20);
    check!(
        errno(&l) == Some(libc::ENOPROTOOPT),
        "getsockopt 4096 after rmmod gave {l:?}"
    );
    env::load(&[])?;
    check!(
        env::dmesg().contains("toa load success"),
        "no 'toa load success' in the kernel log"
    );
    // The live sockets close after the reload: the new module instance never saw them.
    let before = Stats::read()?;
    for s in [s4, s6] {
        let Served {
            listener,
            sock,
            mut conn,
            ..
        } = s;
        io(conn.fin(&mut ctx.lb), "FIN")?;
        drop(sock);
        io(conn.await_server_fin(&mut ctx.lb, WAIT), "server FIN")?;
        drop(listener);
    }
    let d = delta(&before)?;
    check!(
        d["ip6_address_free"] == 0,
        "freed entries of a previous instance: {d:?}"
    );
    Ok(())
}

/// The C server built from the samples of seeds 000 and 002 (examples/toa_server.c) prints the real
/// client for an IPv4 TOA (getpeername) and for a NAT64 TOA (getsockopt 4096).
fn example_c_server(ctx: &mut Ctx) -> TestResult {
    let bin = std::env::var("TOA_EXAMPLE").map_err(|_| "TOA_EXAMPLE is not set".to_string())?;
    let port = ctx.port();
    let child = std::process::Command::new(&bin)
        .args([&port.to_string(), "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{bin}: {e}"))?;
    env::wait_listening(port)?;
    for opts in [toa4(200, CIP4, CPORT), toa6(253, CIP6, CPORT)] {
        let mut c = Conn::new(&mut ctx.lb, Family::V4, port, ack_opts(opts));
        io(c.connect(&mut ctx.lb, &[]), "handshake")?;
        io(c.send(&mut ctx.lb, b"hello"), "send")?;
        io(c.fin(&mut ctx.lb), "FIN")?;
        io(c.await_server_fin(&mut ctx.lb, WAIT), "server FIN")?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    check!(
        text.contains(&format!("real client v4 [{CIP4}]:{CPORT}")),
        "C server printed {text:?}"
    );
    check!(
        text.contains(&format!("real client [{CIP6}]:{CPORT}")),
        "C server printed {text:?}"
    );
    env::wait_all_freed()
}

// ---------------------------------------------------------------------------------------------------
// IP-option TOA (the IP-option TOA/UOA design)

/// Outer IPv4/IPv6 x payload IPv4/IPv6 x AF_INET/AF_INET6 listener (an AF_INET listener only hears
/// IPv4): accept, getpeername, getsockname (the VIP), getsockopt 4096, toa_table and counters.
fn ip_option_matrix(ctx: &mut Ctx) -> TestResult {
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
fn ip_option_parameters(ctx: &mut Ctx) -> TestResult {
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
fn ip_option_malformed(ctx: &mut Ctx) -> TestResult {
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
fn ip_option_wins_over_tcp_option(ctx: &mut Ctx) -> TestResult {
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

// ---------------------------------------------------------------------------------------------------
// Anti-spoofing and network namespaces

/// `trusted_sources`: a TOA from outside the listed prefixes is ignored and counted; from inside, used;
/// an invalid list fails the load with a line naming the entry.
fn trusted_sources(ctx: &mut Ctx) -> TestResult {
    env::load(&["trusted_sources=192.0.2.3/32,2001:db8::3"])?;
    let r = (|| {
        for (wire, af, opts) in [
            (Family::V4, Af::Inet, ack_opts(toa4(200, CIP4, CPORT))),
            (Family::V6, Af::Inet6, ack_opts(toa6(253, CIP6, CPORT))),
            (
                Family::V4,
                Af::Inet6,
                ip_toa(Family::V4, IpAddr::V4(CIP4), IpAddr::V4(VIP4)),
            ),
        ] {
            let before = Stats::read()?;
            let s = serve(ctx, af, wire, opts)?;
            check!(
                s.peer.port() == s.conn.sport,
                "untrusted {wire:?}: forged client accepted: {}",
                s.peer
            );
            let d = delta(&before)?;
            check!(
                d["toa_untrusted_source"] == 1 && d["ip6_address_alloc"] == 0,
                "untrusted {wire:?}: counters {d:?}"
            );
            close(ctx, s)?;
        }
        Ok(())
    })();
    env::load(&["trusted_sources=198.51.100.0/24,192.0.2.0/30,2001:db8::/64"])?;
    let r = r.and_then(|_| {
        for (wire, af, opts, want) in [
            (
                Family::V4,
                Af::Inet,
                ack_opts(toa4(200, CIP4, CPORT)),
                IpAddr::V4(CIP4),
            ),
            (
                Family::V6,
                Af::Inet6,
                ack_opts(toa6(253, CIP6, CPORT)),
                IpAddr::V6(CIP6),
            ),
            (
                Family::V4,
                Af::Inet6,
                ack_opts(toa4(254, CIP4, CPORT)),
                v4mapped(CIP4),
            ),
        ] {
            let s = serve(ctx, af, wire, opts)?;
            check!(
                s.peer == SocketAddr::new(want, CPORT),
                "trusted {wire:?}/{af:?}: getpeername {}",
                s.peer
            );
            close(ctx, s)?;
        }
        Ok(())
    });
    env::unload()?;
    let r = r.and_then(|_| {
        for bad in [
            "trusted_sources=192.0.2.0/33",
            "trusted_sources=10.0.0.0/8,bogus",
        ] {
            check!(env::load(&[bad]).is_err(), "insmod toa {bad} succeeded");
            check!(
                env::dmesg().contains("invalid trusted_sources entry"),
                "insmod toa {bad}: no clear kernel log line"
            );
        }
        Ok(())
    });
    env::load(&[])?;
    r
}

/// Network namespaces: a connection in another namespace shows in that namespace's toa_table and
/// toa_stats only.
fn network_namespaces(_ctx: &mut Ctx) -> TestResult {
    use std::io::{BufRead, BufReader, Write};
    let _ = env::run("ip", &["netns", "del", "toa-ns"]);
    env::run("ip", &["netns", "add", "toa-ns"])?;
    let r = (|| {
        let before = Stats::read()?;
        let table_before = env::toa_table()?;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", "toa-ns"])
            .arg(&me)
            .arg("netns-child")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip netns exec: {e}"))?;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        let inside = line.trim().to_string();
        // The child holds its connection open: the host namespace must not see it.
        let table = env::toa_table()?;
        let d = delta(&before)?;
        let _ = child.stdin.take().unwrap().write_all(b"done\n");
        let status = child.wait().map_err(|e| e.to_string())?;
        check!(inside == "ready", "inside the namespace: {inside}");
        check!(status.success(), "netns child failed: {status}");
        check!(
            table == table_before,
            "the host namespace sees another namespace's entry: {table:?}"
        );
        check!(
            d["syn_recv_sock_toa"] == 0 && d["ip6_address_alloc"] == 0,
            "host counters moved: {d:?}"
        );
        Ok(())
    })();
    let _ = env::run("ip", &["netns", "del", "toa-ns"]);
    r
}

/// `toa-vmtest netns-child`, run by [`network_namespaces`] inside a fresh namespace: serves one TOA
/// connection, checks that this namespace's /proc files show it (and only it), prints `ready`, waits for
/// a line on stdin, closes. Prints the failure instead of `ready` on error.
fn netns_child() -> i32 {
    let r = (|| {
        env::run("ip", &["link", "set", "lo", "up"])?;
        let lb = Lb::new("toa1").map_err(|e| e.to_string())?;
        let mut ctx = Ctx {
            lb,
            next_port: 9000,
        };
        let s = serve(
            &mut ctx,
            Af::Inet,
            Family::V4,
            ack_opts(toa4(200, CIP4, CPORT)),
        )?;
        check!(
            s.peer == SocketAddr::from((CIP4, CPORT)),
            "getpeername {}",
            s.peer
        );
        let table = env::toa_table()?;
        check!(
            table.len() == 1 && table[0].contains(&format!("{CIP4}:{CPORT}")),
            "namespace toa_table {table:?}"
        );
        let st = Stats::read()?;
        check!(
            st.get("syn_recv_sock_toa") == 1 && st.get("ip6_address_alloc") == 1,
            "namespace counters {:?}",
            st.sums()
        );
        println!("ready");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        close(&mut ctx, s)?;
        let st = Stats::read()?;
        check!(
            st.get("ip6_address_free") == 1,
            "namespace counters after close {:?}",
            st.sums()
        );
        Ok(())
    })();
    match r {
        Ok(()) => 0,
        Err(e) => {
            println!("{e}");
            1
        }
    }
}

/// `debug=1` logs a line per stored TOA and per rewrite; an invalid parameter value makes the load fail
/// with a line naming it.
fn module_parameters(ctx: &mut Ctx) -> TestResult {
    env::load(&["debug=1"])?;
    let r = (|| {
        let s = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(254, CIP4, CPORT)))?;
        close(ctx, s)?;
        let log = env::dmesg();
        let want = format!("client {CIP4}:{CPORT} stored");
        check!(
            log.contains(&want),
            "debug=1: no {want:?} line in the kernel log"
        );
        check!(
            log.contains("getname on sk"),
            "debug=1: no getname line in the kernel log"
        );
        Ok(())
    })();
    env::unload()?;
    for bad in ["debug=maybe", "nat64_getpeername=2"] {
        let e = env::load(&[bad]);
        check!(e.is_err(), "insmod toa {bad} succeeded");
        let name = bad.split('=').next().unwrap();
        let log = env::dmesg();
        check!(
            log.contains(&format!("invalid for parameter `{name}'")),
            "insmod toa {bad}: no clear kernel log line"
        );
    }
    env::load(&[])?;
    r
}

// ---------------------------------------------------------------------------------------------------

type Test = (&'static str, fn(&mut Ctx) -> TestResult);

const TESTS: &[Test] = &[
    ("toa_stats_layout", toa_stats_layout),
    ("ipv4_toa_on_af_inet", ipv4_toa_on_af_inet),
    ("ipv4_toa_on_af_inet6_mapped", ipv4_toa_on_af_inet6_mapped),
    ("ipv6_toa_on_af_inet6", ipv6_toa_on_af_inet6),
    ("ipv4_toa_on_ipv6_wire", ipv4_toa_on_ipv6_wire),
    ("nat64_on_af_inet", nat64_on_af_inet),
    ("nat64_getpeername_mode", nat64_getpeername_mode),
    ("no_toa", no_toa),
    ("getsockopt_errors", getsockopt_errors),
    (
        "toa_only_in_the_handshake_ack",
        toa_only_in_the_handshake_ack,
    ),
    (
        "option_walk_and_first_toa_wins",
        option_walk_and_first_toa_wins,
    ),
    ("malformed_options", malformed_options),
    ("syn_cookies", syn_cookies),
    ("tcp_fast_open", tcp_fast_open),
    ("close_by_rst", close_by_rst),
    ("close_before_accept", close_before_accept),
    (
        "listener_closed_with_queued_children",
        listener_closed_with_queued_children,
    ),
    ("toa_table_entries", toa_table_entries),
    (
        "toa_table_dump_in_small_reads",
        toa_table_dump_in_small_reads,
    ),
    ("table_buckets_parameter", table_buckets_parameter),
    ("example_c_server", example_c_server),
    ("ip_option_matrix", ip_option_matrix),
    ("ip_option_parameters", ip_option_parameters),
    ("ip_option_malformed", ip_option_malformed),
    (
        "ip_option_wins_over_tcp_option",
        ip_option_wins_over_tcp_option,
    ),
    ("trusted_sources", trusted_sources),
    ("network_namespaces", network_namespaces),
    ("module_parameters", module_parameters),
    ("adversarial_connections", stress::adversarial_connections),
    ("unload_under_load", stress::unload_under_load),
    ("rmmod_with_live_sockets", rmmod_with_live_sockets),
    ("uoa_matrix", uoa::uoa_matrix),
    ("uoa_dpvs_layout", uoa::uoa_dpvs_layout),
    (
        "uoa_option_on_first_datagrams_only",
        uoa::uoa_option_on_first_datagrams_only,
    ),
    ("uoa_newest_option_wins", uoa::uoa_newest_option_wins),
    ("uoa_option_walk", uoa::uoa_option_walk),
    ("uoa_malformed_options", uoa::uoa_malformed_options),
    ("uoa_getsockopt_errors", uoa::uoa_getsockopt_errors),
    ("uoa_expiry", uoa::uoa_expiry),
    ("uoa_map_full", uoa::uoa_map_full),
    ("uoa_module_parameters", uoa::uoa_module_parameters),
    ("uoa_trusted_sources", uoa::uoa_trusted_sources),
    ("uoa_network_namespaces", uoa::uoa_network_namespaces),
    ("uoa_example_c_server", uoa::uoa_example_c_server),
    ("uoa_example_python", uoa::uoa_example_python),
    ("uoa_example_go", uoa::uoa_example_go),
    ("uoa_adversarial_datagrams", uoa::uoa_adversarial_datagrams),
    ("uoa_many_flows", uoa::uoa_many_flows),
    ("uoa_rmmod_with_traffic", uoa::uoa_rmmod_with_traffic),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for (name, _) in TESTS {
            println!("{name}");
        }
        return;
    }
    if args.first().map(String::as_str) == Some("netns-child") {
        std::process::exit(netns_child());
    }
    if args.first().map(String::as_str) == Some("uoa-netns-child") {
        std::process::exit(uoa::netns_child(&args[1..]));
    }
    let lb = match Lb::new("toa0") {
        Ok(lb) => lb,
        Err(e) => {
            eprintln!("cannot set up the LB emulator's TUN device: {e}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    };
    let mut ctx = Ctx {
        lb,
        next_port: 8000,
    };
    if args.first().map(String::as_str) == Some("demo") {
        std::process::exit(demo::run(&mut ctx));
    }
    if args.first().map(String::as_str) == Some("bench") {
        std::process::exit(bench::run(&mut ctx));
    }
    if args.first().map(String::as_str) == Some("workload") {
        let what = args.get(1).map_or("", String::as_str);
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
        std::process::exit(bench::workload(&mut ctx, what, n));
    }
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| args.is_empty() || args.iter().any(|a| name.contains(a.as_str())))
        .collect();
    // KTAP, the kernel selftests' format, then the closing count make check adds up.
    println!("KTAP version 1");
    println!("1..{}", selected.len());
    let (mut passed, mut failed) = (0, 0);
    for (i, (name, test)) in selected.into_iter().enumerate() {
        let r = env::ensure_loaded().and_then(|_| test(&mut ctx));
        match r {
            Ok(()) => {
                passed += 1;
                println!("ok {} {name}", i + 1);
            }
            Err(e) => {
                failed += 1;
                for line in e.lines() {
                    println!("# {name}: {line}");
                }
                println!("not ok {} {name}", i + 1);
            }
        }
    }
    println!("# {passed} passed, {failed} failed");
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 && passed > 0 { 0 } else { 1 });
}

mod demo {
    //! `toa-vmtest demo`: one connection per load-balancer scenario, printing what the server sees;
    //! then one UDP datagram per scenario (`uoa::demo`).
    use super::*;

    pub fn run(ctx: &mut Ctx) -> i32 {
        let scenarios: Vec<(&str, Af, Family, Vec<u8>)> = vec![
            (
                "Tencent CLB hybrid cloud: TCP option 200, IPv4 client",
                Af::Inet,
                Family::V4,
                toa4(200, CIP4, CPORT),
            ),
            (
                "LVS FULLNAT / Huawei ELB: TCP option 254, IPv4 client",
                Af::Inet,
                Family::V4,
                toa4(254, CIP4, CPORT),
            ),
            (
                "Tencent CLB NAT64: TCP option 253, IPv6 client, IPv4 server",
                Af::Inet,
                Family::V4,
                toa6(253, CIP6, CPORT),
            ),
            (
                "IPv6 listener, IPv4 client (v4-mapped)",
                Af::Inet6,
                Family::V4,
                toa4(200, CIP4, CPORT),
            ),
            (
                "IPv6 end to end: TCP option 254, IPv6 client",
                Af::Inet6,
                Family::V6,
                toa6(254, CIP6, CPORT),
            ),
            ("No load balancer option", Af::Inet, Family::V4, vec![]),
        ];
        let mut rc = 0;
        for (title, af, wire, opts) in scenarios {
            println!("== {title}");
            match serve(ctx, af, wire, ack_opts(opts)) {
                Ok(s) => {
                    println!(
                        "   LB address on the wire : {}",
                        SocketAddr::new(lb_addr(wire), s.conn.sport)
                    );
                    println!("   accept()               : {}", s.accepted);
                    println!("   getpeername()          : {}", s.peer);
                    println!("   getsockname()          : {}", s.local);
                    match &s.lookup {
                        Ok((a, _)) => println!("   getsockopt(4096)       : {a}"),
                        Err(e) => println!("   getsockopt(4096)       : {e}"),
                    }
                    if let Ok(t) = env::toa_table() {
                        for l in t {
                            println!("   toa_table              : {l}");
                        }
                    }
                    if let Err(e) = close(ctx, s) {
                        println!("   close: {e}");
                        rc = 1;
                    }
                }
                Err(e) => {
                    println!("   failed: {e}");
                    rc = 1;
                }
            }
        }
        rc |= uoa::demo(ctx);
        println!("== /proc/net/toa_stats");
        print!(
            "{}",
            std::fs::read_to_string("/proc/net/toa_stats").unwrap_or_default()
        );
        rc
    }
}
