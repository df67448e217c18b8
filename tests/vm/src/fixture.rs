//! What the tests share: the real client and VIP they pretend to be, builders of the load balancers'
//! option bytes (TCP options, IPv4 options, IPv6 destination options), the test context, one connection
//! served and closed ([`serve`], [`finish`], [`close`]), and small checks ([`check!`], [`expect_deltas`]).

use crate::env::{self, delta, Stats};
use crate::sys::Sock;
use lbemu::packet::Family;
use lbemu::{Conn, Lb, Options, LB_V4, LB_V6, SERVER_V4, SERVER_V6};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The real client behind the load balancer (TEST-NET-2).
pub(crate) const CIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The real IPv6 client (documentation prefix).
pub(crate) const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc1, 0, 0, 0, 0, 7);
/// The client's port.
pub(crate) const CPORT: u16 = 40001;
/// How long a test waits for what the kernel does at once (accept, a read, the server's FIN).
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A test's outcome: the reason it failed, as `# name: reason` lines.
pub(crate) type TestResult = Result<(), String>;

/// Fails the test with the formatted reason unless the condition holds.
macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}
pub(crate) use check;

/// An I/O result as a test result: the error prefixed with `what`.
pub(crate) fn io<T>(r: io::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// A TCP option with an IPv4 client: kind, len 8, cport, cip.
pub(crate) fn toa4(kind: u8, cip: Ipv4Addr, cport: u16) -> Vec<u8> {
    let mut v = vec![kind, 8];
    v.extend_from_slice(&cport.to_be_bytes());
    v.extend_from_slice(&cip.octets());
    v
}

/// A TCP option with an IPv6 client: kind, len 20, cport, cip6.
pub(crate) fn toa6(kind: u8, cip: Ipv6Addr, cport: u16) -> Vec<u8> {
    let mut v = vec![kind, 20];
    v.extend_from_slice(&cport.to_be_bytes());
    v.extend_from_slice(&cip.octets());
    v
}

/// The IPv4 VIP of the IP-option TOA tests.
pub(crate) const VIP4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// The IPv6 VIP.
pub(crate) const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x76, 0, 0, 0, 0, 9);
/// The VIP's port.
pub(crate) const VPORT: u16 = 80;

/// The IP-option TOA/UOA design's IPv4 option 31: type, len (16/40), operation (bit 0: IPv6), padding, cport, vport, cip, vip.
pub(crate) fn ip4opt(cip: IpAddr, cport: u16, vip: IpAddr, vport: u16) -> Vec<u8> {
    let v6 = cip.is_ipv6();
    let mut o = vec![31, if v6 { 40 } else { 16 }, u8::from(v6), 0];
    o.extend_from_slice(&cport.to_be_bytes());
    o.extend_from_slice(&vport.to_be_bytes());
    o.extend(ip_bytes(cip));
    o.extend(ip_bytes(vip));
    o
}

/// The IP-option TOA/UOA design's IPv6 destination option 31 TLV: type, optlen (12/36), cport, vport, cip, vip.
pub(crate) fn ip6tlv(cip: IpAddr, cport: u16, vip: IpAddr, vport: u16) -> Vec<u8> {
    let mut o = vec![31, if cip.is_ipv6() { 36 } else { 12 }];
    o.extend_from_slice(&cport.to_be_bytes());
    o.extend_from_slice(&vport.to_be_bytes());
    o.extend(ip_bytes(cip));
    o.extend(ip_bytes(vip));
    o
}

/// A destination-options header around `tlvs` (after `lead` padding TLVs), padded to 8 bytes with PadN.
pub(crate) fn dstopts(lead: &[u8], tlvs: &[u8]) -> Vec<u8> {
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

/// The address's bytes, 4 or 16, in network order.
pub(crate) fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Options carrying an IP-level TOA on `wire`: an IPv4 option (after two NOPs when there is room in the
/// 40 bytes of IPv4 options) or a destination option (after Pad1 and PadN).
pub(crate) fn ip_toa(wire: Family, cip: IpAddr, vip: IpAddr) -> Options {
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

/// Options with `ack` as the TCP options of the ACK that completes the handshake.
pub(crate) fn ack_opts(ack: Vec<u8>) -> Options {
    Options {
        ack,
        ..Options::default()
    }
}

/// `::ffff:a`, as an AF_INET6 socket sees the IPv4 address `a`.
pub(crate) fn v4mapped(a: Ipv4Addr) -> IpAddr {
    IpAddr::V6(a.to_ipv6_mapped())
}

/// The socket family of a listener.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Af {
    Inet,
    Inet6,
}

/// What every test gets: the LB emulator and a source of fresh listening ports.
pub(crate) struct Ctx {
    /// The LB emulator.
    pub(crate) lb: Lb,
    /// The last listening port handed out.
    pub(crate) next_port: u16,
}

impl Ctx {
    /// A listening port no earlier test used.
    pub(crate) fn port(&mut self) -> u16 {
        self.next_port += 1;
        self.next_port
    }
}

/// One connection served: what the server saw.
pub(crate) struct Served {
    /// The listener, still open.
    pub(crate) listener: Sock,
    /// The accepted socket.
    pub(crate) sock: Sock,
    /// The LB emulator's side.
    pub(crate) conn: Conn,
    /// What `accept()` returned.
    pub(crate) accepted: SocketAddr,
    /// What `getpeername()` returned.
    pub(crate) peer: SocketAddr,
    /// What `getsockname()` returned.
    pub(crate) local: SocketAddr,
    /// What getsockopt 4096 (with a 20-byte buffer) returned.
    pub(crate) lookup: io::Result<(SocketAddr, usize)>,
}

/// Opens a listener of family `af`, has the LB connect over `wire` with `opts`, send "hello", and
/// records what the server application sees.
pub(crate) fn serve(ctx: &mut Ctx, af: Af, wire: Family, opts: Options) -> Result<Served, String> {
    let port = ctx.port();
    let bind: SocketAddr = match af {
        Af::Inet => (Ipv4Addr::UNSPECIFIED, port).into(),
        Af::Inet6 => (Ipv6Addr::UNSPECIFIED, port).into(),
    };
    let listener = io(Sock::listen(bind, false), "listen")?;
    serve_on(ctx, listener, port, wire, opts)
}

/// As [`serve`], on `listener` (listening on `port`), which the [`Served`] takes: pass a duplicate
/// of a listener that must outlive the connection.
pub(crate) fn serve_on(
    ctx: &mut Ctx,
    listener: Sock,
    port: u16,
    wire: Family,
    opts: Options,
) -> Result<Served, String> {
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
pub(crate) fn finish(ctx: &mut Ctx, s: Served) -> TestResult {
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
pub(crate) fn close(ctx: &mut Ctx, s: Served) -> TestResult {
    finish(ctx, s)?;
    env::wait_all_freed()
}

/// The LB emulator's address on `wire`.
pub(crate) fn lb_addr(wire: Family) -> IpAddr {
    match wire {
        Family::V4 => IpAddr::V4(LB_V4),
        Family::V6 => IpAddr::V6(LB_V6),
    }
}

/// The server's address on `wire` as a listener of family `af` sees it.
pub(crate) fn server_addr(af: Af, wire: Family) -> IpAddr {
    match (af, wire) {
        (Af::Inet, _) => IpAddr::V4(SERVER_V4),
        (Af::Inet6, Family::V4) => v4mapped(SERVER_V4),
        (Af::Inet6, Family::V6) => IpAddr::V6(SERVER_V6),
    }
}

/// Checks that the counters moved by exactly `want` (name, delta) since `before`; `what` names the case.
pub(crate) fn expect_deltas(before: &Stats, want: &[(&str, i64)], what: &str) -> TestResult {
    let d = delta(before)?;
    for (name, n) in want {
        let got = d.get(*name).copied().unwrap_or(0);
        check!(got == *n, "{what}: {name} +{got}, want +{n} (all: {d:?})");
    }
    Ok(())
}

/// The errno of a failed getsockopt 4096, `None` when it succeeded.
pub(crate) fn errno(r: &io::Result<(SocketAddr, usize)>) -> Option<i32> {
    r.as_ref().err().and_then(io::Error::raw_os_error)
}
