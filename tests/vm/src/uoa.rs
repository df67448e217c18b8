//! UOA, the UDP side of toa (include/uoa.h). The LB emulator sends UDP datagrams whose IP header carries
//! option 31 (the IP-option design: client and VIP, in an IPv4 option or an IPv6 destination option) or
//! DPVS's IPv4 option 31 (client only). The tests assert what the server application sees (the datagram
//! itself, never dropped and never changed, and the answers of getsockopt 2048 (v0) and 2049 (v1)) and
//! what /proc/net/toa_stats and /proc/net/uoa_table report.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use crate::stress::{self, Rng};
use crate::sys::Sock;
use lbemu::packet::{Datagram, Family};
use lbemu::{Lb, Options, LB_V4, LB_V6, SERVER_V4, SERVER_V6};
use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};
use toa_wire::{scan_udp_ipv4, scan_udp_ipv6, Scan};

/// `UOA_SO_GET_LOOKUP` (v0, `struct uoa_param_map`) of include/uoa.h, level IPPROTO_IP.
pub(crate) const UOA_SO_GET_LOOKUP: libc::c_int = 2048;
/// `UOA_SO_GET_LOOKUP1` (v1, `union uoa_sockopt_param`).
pub(crate) const UOA_SO_GET_LOOKUP1: libc::c_int = 2049;
/// `sizeof(struct uoa_param_map)`.
const V0_LEN: usize = 56;
/// `sizeof(union uoa_sockopt_param)`.
const V1_LEN: usize = 40;
/// v0's `af` and v1's `type` as AF_* values (host order).
const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
/// v1's own family values, `UOA_IP_TYPE_V4` and `UOA_IP_TYPE_V6`.
const TYPE_V4: u32 = 0;
const TYPE_V6: u32 = 1;
/// The receive buffer of the tests' UDP sockets: room for the bursts the bulk tests read in batches.
const RCVBUF: usize = 4 << 20;

/// The rows /proc/net/toa_stats ends with, in this order, after every TCP and probe-miss row.
pub(crate) const UOA_ROWS: [&str; 9] = [
    "uoa_option_found",
    "uoa_option_malformed",
    "uoa_untrusted_source",
    "uoa_lookup_ok",
    "uoa_lookup_missed",
    "uoa_mapping_expired",
    "uoa_map_full",
    "uoa_mapping_alloc",
    "uoa_mapping_free",
];

// ---------------------------------------------------------------------------------------------------
// Fixtures: what a flow maps to, the option bytes carrying it, the lookups, a server socket.

/// What toa maps a flow to: the client, and the VIP the client sent to (none in DPVS's layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    client: SocketAddr,
    vip: Option<SocketAddr>,
}

impl Mapping {
    /// Client `n` of a test (IPv6 or IPv4, port CPORT + n) behind the VIP: the IP-option design.
    fn nth(v6: bool, n: u16) -> Mapping {
        let (cip, vip) = if v6 {
            (IpAddr::V6(CIP6), IpAddr::V6(VIP6))
        } else {
            (IpAddr::V4(CIP4), IpAddr::V4(VIP4))
        };
        Mapping {
            client: SocketAddr::new(cip, CPORT + n),
            vip: Some(SocketAddr::new(vip, VPORT)),
        }
    }

    /// The same client in DPVS's layout: no VIP.
    fn dpvs(self) -> Mapping {
        Mapping { vip: None, ..self }
    }

    /// What the module's parser found, as a mapping.
    fn from_toa(t: &toa_wire::Toa) -> Mapping {
        let ep = |e: &toa_wire::Endpoint| match e.addr {
            toa_wire::Addr::V4(a) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), e.port),
            toa_wire::Addr::V6(a) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), e.port),
        };
        Mapping {
            client: ep(&t.client),
            vip: t.vip.as_ref().map(ep),
        }
    }

    /// The option bytes carrying it on `wire`: IPv4 option 31 after two NOPs (when they fit in the 40
    /// bytes) or a destination option 31 after Pad1 and PadN; DPVS's IPv4 option when there is no VIP.
    fn opts(&self, wire: Family) -> Options {
        let (cip, cport) = (self.client.ip(), self.client.port());
        match (self.vip, wire) {
            (Some(vip), Family::V4) => {
                let opt = ip4opt(cip, cport, vip.ip(), vip.port());
                let lead = if opt.len() <= 36 { vec![1, 1] } else { vec![] };
                ipv4_opts([lead, opt].concat())
            }
            (Some(vip), Family::V6) => Options {
                ipv6_dstopts: dstopts(&[0, 1, 0], &ip6tlv(cip, cport, vip.ip(), vip.port())),
                ..Options::default()
            },
            (None, Family::V4) => ipv4_opts(dpvs_opt(cip, cport)),
            (None, Family::V6) => panic!("DPVS's layout has no IPv6 form"),
        }
    }
}

/// DPVS's IPv4 option 31: type, len (8 for an IPv4 client, 20 for IPv6), cport, caddr.
fn dpvs_opt(cip: IpAddr, cport: u16) -> Vec<u8> {
    let mut o = vec![31, if cip.is_ipv6() { 20 } else { 8 }];
    o.extend_from_slice(&cport.to_be_bytes());
    o.extend(ip_bytes(cip));
    o
}

fn ipv4_opts(ipv4: Vec<u8>) -> Options {
    Options {
        ipv4,
        ..Options::default()
    }
}

fn dstopts_opts(lead: &[u8], tlvs: &[u8]) -> Options {
    Options {
        ipv6_dstopts: dstopts(lead, tlvs),
        ..Options::default()
    }
}

fn wire_of(a: SocketAddr) -> Family {
    if a.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

/// The server's address a datagram from `lb` goes to (the server address of `lb`'s family).
fn server_of(lb: SocketAddr) -> IpAddr {
    match lb {
        SocketAddr::V4(_) => IpAddr::V4(SERVER_V4),
        SocketAddr::V6(_) => IpAddr::V6(SERVER_V6),
    }
}

/// `a` as a 16-byte address, v4-mapped when IPv4: what a dual-stack socket or v0 with af AF_INET6 says.
fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4mapped(*v4.ip()), v4.port()),
        a => a,
    }
}

/// A datagram from `lb` to port `dport` of the server, with the IP-level bytes of `opts`.
fn datagram(lb: SocketAddr, dport: u16, opts: &Options, payload: &[u8]) -> Datagram {
    Datagram {
        src: lb.ip(),
        dst: server_of(lb),
        ipv4_options: opts.ipv4.clone(),
        ipv6_dstopts: opts.ipv6_dstopts.clone(),
        sport: lb.port(),
        dport,
        payload: payload.to_vec(),
    }
}

/// How a lookup names a flow: the LB's address and port (as recvfrom() reported them, or spelled
/// another way), the local address the datagrams went to (unspecified: any) and the local port.
#[derive(Clone, Copy, Debug)]
struct Query {
    lb: SocketAddr,
    local: IpAddr,
    dport: u16,
}

impl Query {
    /// The same flow with local address `local`.
    fn local(self, local: IpAddr) -> Query {
        Query { local, ..self }
    }

    /// An IPv4 flow spelled with IPv4 addresses (as an AF_INET socket's recvfrom() reports it).
    fn as_v4(self) -> Query {
        let v4 = |a: IpAddr| match a {
            a if a.is_unspecified() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            a => a.to_canonical(),
        };
        Query {
            lb: SocketAddr::new(v4(self.lb.ip()), self.lb.port()),
            local: v4(self.local),
            ..self
        }
    }

    /// An IPv4 flow spelled with v4-mapped IPv6 addresses (as a dual-stack socket's recvfrom() reports
    /// it); the unspecified local address stays all zero.
    fn as_mapped(self) -> Query {
        let mapped = |a: IpAddr| match a {
            a if a.is_unspecified() => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V4(a) => v4mapped(a),
            a => a,
        };
        Query {
            lb: SocketAddr::new(mapped(self.lb.ip()), self.lb.port()),
            local: mapped(self.local),
            ..self
        }
    }

    /// v0's natural `af` and v1's natural `type` for this spelling: AF_INET or AF_INET6.
    fn af(&self) -> u16 {
        if self.lb.is_ipv4() {
            AF_INET
        } else {
            AF_INET6
        }
    }
}

/// `struct uoa_param_map` with its input: `af` (host order, whatever value is given), the addresses of
/// `q` (4 or 16 bytes each, by their family; an unspecified local address all zero), the ports.
fn v0_input(af: u16, q: &Query) -> [u8; V0_LEN] {
    let mut b = [0u8; V0_LEN];
    b[0..2].copy_from_slice(&af.to_ne_bytes());
    let s = ip_bytes(q.lb.ip());
    b[2..2 + s.len()].copy_from_slice(&s);
    if !q.local.is_unspecified() {
        let d = ip_bytes(q.local);
        b[18..18 + d.len()].copy_from_slice(&d);
    }
    b[34..36].copy_from_slice(&q.lb.port().to_be_bytes());
    b[36..38].copy_from_slice(&q.dport.to_be_bytes());
    b
}

/// `union uoa_sockopt_param` with its input: `ty`, the ports, the addresses of `q` (the `ipv4` layout
/// for an IPv4 spelling, `ipv6` for an IPv6 one).
fn v1_input(ty: u32, q: &Query) -> [u8; V1_LEN] {
    let mut b = [0u8; V1_LEN];
    b[0..4].copy_from_slice(&ty.to_ne_bytes());
    b[4..6].copy_from_slice(&q.lb.port().to_be_bytes());
    b[6..8].copy_from_slice(&q.dport.to_be_bytes());
    let s = ip_bytes(q.lb.ip());
    b[8..8 + s.len()].copy_from_slice(&s);
    if !q.local.is_unspecified() {
        let d = ip_bytes(q.local);
        b[8 + s.len()..8 + s.len() + d.len()].copy_from_slice(&d);
    }
    b
}

/// v0's `af` names IPv4 (host or network order): the answer is then 4 bytes.
fn v0_is_inet(af: u16) -> bool {
    af == AF_INET || af == AF_INET.to_be()
}

/// Decodes v0's output: `real_saddr` (IPv4 in its first 4 bytes, the rest zero, when `af` names IPv4;
/// else 16 bytes, ::ffff:a.b.c.d for an IPv4 client) and `real_sport`.
fn v0_output(af: u16, b: &[u8]) -> io::Result<SocketAddr> {
    let real: [u8; 16] = b[38..54].try_into().unwrap();
    let port = u16::from_be_bytes([b[54], b[55]]);
    if !v0_is_inet(af) {
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(real)), port));
    }
    if real[4..] != [0; 12] {
        return Err(io::Error::other(format!(
            "v0 IPv4 answer {real:02x?}: bytes past the address"
        )));
    }
    let a: [u8; 4] = real[..4].try_into().unwrap();
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port))
}

/// Decodes v1's output: the client's family (`UOA_IP_TYPE_*`), client, VIP (all zero with vport 0: none).
fn v1_output(b: &[u8]) -> io::Result<Mapping> {
    let ty = u32::from_ne_bytes(b[0..4].try_into().unwrap());
    let (cport, vport) = (
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]),
    );
    let (cip, vip) = match ty {
        TYPE_V4 => {
            let (c, v): ([u8; 4], [u8; 4]) =
                (b[8..12].try_into().unwrap(), b[12..16].try_into().unwrap());
            (IpAddr::from(c), IpAddr::from(v))
        }
        TYPE_V6 => {
            let (c, v): ([u8; 16], [u8; 16]) =
                (b[8..24].try_into().unwrap(), b[24..40].try_into().unwrap());
            (IpAddr::from(c), IpAddr::from(v))
        }
        t => return Err(io::Error::other(format!("v1 answered type {t}"))),
    };
    Ok(Mapping {
        client: SocketAddr::new(cip, cport),
        vip: (!(vip.is_unspecified() && vport == 0)).then(|| SocketAddr::new(vip, vport)),
    })
}

/// getsockopt(UOA_SO_GET_LOOKUP) (v0) on `sock` for `q` with `af`: the client it answers.
fn v0(sock: &Sock, af: u16, q: &Query) -> io::Result<SocketAddr> {
    let mut b = v0_input(af, q);
    let n = sock.getsockopt_buf(libc::IPPROTO_IP, UOA_SO_GET_LOOKUP, &mut b, V0_LEN)?;
    if n != V0_LEN {
        return Err(io::Error::other(format!("v0 set len {n}, not {V0_LEN}")));
    }
    v0_output(af, &b)
}

/// getsockopt(UOA_SO_GET_LOOKUP1) (v1) on `sock` for `q` with type `ty`: the mapping it answers.
fn v1(sock: &Sock, ty: u32, q: &Query) -> io::Result<Mapping> {
    let mut b = v1_input(ty, q);
    let n = sock.getsockopt_buf(libc::IPPROTO_IP, UOA_SO_GET_LOOKUP1, &mut b, V1_LEN)?;
    if n != V1_LEN {
        return Err(io::Error::other(format!("v1 set len {n}, not {V1_LEN}")));
    }
    v1_output(&b)
}

fn expect_errno<T: std::fmt::Debug>(r: io::Result<T>, errno: i32, what: &str) -> TestResult {
    match r {
        Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
        other => Err(format!(
            "{what}: {other:?}, want {}",
            io::Error::from_raw_os_error(errno)
        )),
    }
}

fn expect_eq<T: std::fmt::Debug + PartialEq>(r: io::Result<T>, want: &T, what: &str) -> TestResult {
    match r {
        Ok(got) if got == *want => Ok(()),
        other => Err(format!("{what}: {other:?}, want {want:?}")),
    }
}

/// A UDP server socket of the tests (wildcard address; an AF_INET6 one is dual-stack).
struct UdpServer {
    sock: Sock,
    af: Af,
    port: u16,
}

impl UdpServer {
    /// A server on the next test port.
    fn bind(ctx: &mut Ctx, af: Af) -> Result<UdpServer, String> {
        UdpServer::bind_port(af, ctx.port())
    }

    fn bind_port(af: Af, port: u16) -> Result<UdpServer, String> {
        let addr: SocketAddr = match af {
            Af::Inet => (Ipv4Addr::UNSPECIFIED, port).into(),
            Af::Inet6 => (Ipv6Addr::UNSPECIFIED, port).into(),
        };
        let sock = io(Sock::udp(addr, RCVBUF), &format!("UDP socket on {addr}"))?;
        Ok(UdpServer { sock, af, port })
    }

    /// `a` as this socket's recvfrom() reports it: v4-mapped on an AF_INET6 socket.
    fn seen(&self, a: SocketAddr) -> SocketAddr {
        match (self.af, a) {
            (Af::Inet6, _) => mapped(a),
            _ => a,
        }
    }

    /// The lookup of the flow from `lb` as an application names it: the source recvfrom() reported, any
    /// local address, this socket's port.
    fn query(&self, lb: SocketAddr) -> Query {
        let seen = self.seen(lb);
        let any = if seen.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        Query {
            lb: seen,
            local: any,
            dport: self.port,
        }
    }

    /// v1 for the flow from `lb`, named as recvfrom() reported it (type AF_INET or AF_INET6 by that).
    fn lookup(&self, lb: SocketAddr) -> io::Result<Mapping> {
        let q = self.query(lb);
        v1(&self.sock, u32::from(q.af()), &q)
    }

    /// The local end of the flow from `lb`, as uoa_table shows it (IPv4 for an IPv4 flow).
    fn local(&self, lb: SocketAddr) -> SocketAddr {
        SocketAddr::new(server_of(lb), self.port)
    }

    /// Sends `payload` from `lb` with `opts` and reads it here: it must arrive, unchanged, from `lb`.
    fn deliver(&self, tun: &mut Lb, lb: SocketAddr, opts: &Options, payload: &[u8]) -> TestResult {
        io(
            tun.send_udp(&datagram(lb, self.port, opts, payload)),
            "send datagram",
        )?;
        self.expect(lb, payload)
    }

    /// Reads the next datagram: `payload` from `lb`.
    fn expect(&self, lb: SocketAddr, payload: &[u8]) -> TestResult {
        let want = self.seen(lb);
        let (data, from) = io(
            self.sock.recv_from(WAIT),
            &format!("port {}: datagram from {want}", self.port),
        )?;
        check!(
            data == payload && from == want,
            "port {}: received {:?} from {from}, want {:?} from {want}",
            self.port,
            String::from_utf8_lossy(&data),
            String::from_utf8_lossy(payload)
        );
        Ok(())
    }

    /// Reads every datagram queued now; returns how many.
    fn drain(&self) -> Result<usize, String> {
        let mut n = 0;
        while io(self.sock.try_recv_from(), "recvfrom")?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

/// The uoa_table line (without its idle column) of the flow from `lb` to `local` mapped to `m`.
fn table_line(lb: SocketAddr, local: SocketAddr, m: &Mapping) -> String {
    let vip = m.vip.map_or_else(|| "-".to_string(), |v| v.to_string());
    format!("{lb} {local} {} {vip}", m.client)
}

/// The uoa_table rows of the flow from `lb` to `local`.
fn table_rows(lb: SocketAddr, local: SocketAddr) -> Result<Vec<env::UoaRow>, String> {
    let prefix = format!("{lb} {local} ");
    Ok(env::uoa_table()?
        .into_iter()
        .filter(|r| r.mapping.starts_with(&prefix))
        .collect())
}

/// Checks that uoa_table shows the flow from `lb` to `local` once, mapped to `m` (or not at all).
fn expect_table(lb: SocketAddr, local: SocketAddr, m: Option<&Mapping>, what: &str) -> TestResult {
    let rows = table_rows(lb, local)?;
    let got: Vec<&str> = rows.iter().map(|r| r.mapping.as_str()).collect();
    let want: Vec<String> = m.iter().map(|m| table_line(lb, local, m)).collect();
    check!(got == want, "{what}: uoa_table rows {got:?}, want {want:?}");
    Ok(())
}

/// The idle column of the flow's only uoa_table row.
fn idle_of(lb: SocketAddr, local: SocketAddr) -> Result<u64, String> {
    match table_rows(lb, local)?.as_slice() {
        [r] => Ok(r.idle),
        rows => Err(format!("uoa_table rows of {lb} -> {local}: {rows:?}")),
    }
}

/// The UOA counters since `before`.
fn uoa_delta(before: &Stats) -> Result<std::collections::HashMap<String, i64>, String> {
    let d = delta(before)?;
    Ok(UOA_ROWS
        .iter()
        .map(|r| (r.to_string(), d.get(*r).copied().unwrap_or(0)))
        .collect())
}

/// The number of live mappings by the counters: alloc - free.
fn live_mappings() -> Result<i64, String> {
    let s = Stats::read()?;
    Ok(s.get("uoa_mapping_alloc") as i64 - s.get("uoa_mapping_free") as i64)
}

/// An LB address of the bulk tests: `n`-th IPv4 (192.0.2.10 + n) or IPv6 (2001:db8::10 + n) address,
/// on the TUN's prefixes and neither the server's nor the LB emulator's usual one.
fn bulk_lb(v6: bool, n: usize) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + n as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + n as u8))
    }
}

/// Flow `i` of a bulk test: LB address and port (50 000 ports per address).
fn bulk_flow(v6: bool, i: usize) -> SocketAddr {
    SocketAddr::new(bulk_lb(v6, i / 50_000), 10_000 + (i % 50_000) as u16)
}

/// The client of flow `i` of a bulk test: unique per `i` (IPv4: address and port; IPv6: the address).
fn bulk_mapping(v6: bool, i: usize) -> Mapping {
    let client = if v6 {
        let mut b = CIP6.octets();
        b[8..].copy_from_slice(&(i as u64).to_be_bytes());
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), 1024 + (i % 60_000) as u16)
    } else {
        let a = u32::from(Ipv4Addr::new(198, 51, 100, 0)) + (i / 60_000) as u32;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), 1024 + (i % 60_000) as u16)
    };
    let vip = if v6 {
        IpAddr::V6(VIP6)
    } else {
        IpAddr::V4(VIP4)
    };
    Mapping {
        client,
        vip: Some(SocketAddr::new(vip, VPORT)),
    }
}

// ---------------------------------------------------------------------------------------------------
// Semantics

/// Outer IPv4/IPv6 x client IPv4/IPv6 x AF_INET/dual-stack AF_INET6 socket (IPv6 datagrams only reach
/// AF_INET6 sockets): the datagram arrives unchanged; v1 answers client, VIP and the client's family for
/// every accepted spelling of the flow (as recvfrom() reported it; an IPv4 flow also in IPv4 or v4-mapped
/// form on either socket; type 0/1 and AF_*; local address any or the exact one); v0 answers the client
/// (4 bytes for af AF_INET in host or network order, 16 for AF_INET6, ::ffff: for an IPv4 client) and
/// EAFNOSUPPORT for af AF_INET with an IPv6 client; a wrong local address or another LB port is ENOENT;
/// uoa_table shows the flow once; the counters add up.
pub(crate) fn uoa_matrix(ctx: &mut Ctx) -> TestResult {
    env::load(&[])?; // no mapping left by an earlier run
    let cases = [
        (Family::V4, false, Af::Inet),
        (Family::V4, true, Af::Inet),
        (Family::V4, false, Af::Inet6),
        (Family::V4, true, Af::Inet6),
        (Family::V6, false, Af::Inet6),
        (Family::V6, true, Af::Inet6),
    ];
    for (i, (wire, v6, af)) in cases.into_iter().enumerate() {
        let what = format!(
            "outer {wire:?}, client {}, {af:?} socket",
            if v6 { "IPv6" } else { "IPv4" }
        );
        let m = Mapping::nth(v6, i as u16);
        let srv = UdpServer::bind(ctx, af)?;
        let lb = SocketAddr::new(lb_addr(wire), ctx.lb.port());
        let before = Stats::read()?;
        srv.deliver(&mut ctx.lb, lb, &m.opts(wire), what.as_bytes())?;
        let q = srv.query(lb);
        let spellings = if wire == Family::V4 {
            vec![q.as_v4(), q.as_mapped()]
        } else {
            vec![q]
        };
        let (mut ok, mut missed) = (0, 0);
        for s in &spellings {
            let (v6_spelling, types) = if s.lb.is_ipv4() {
                (false, [TYPE_V4, u32::from(AF_INET)])
            } else {
                (true, [TYPE_V6, u32::from(AF_INET6)])
            };
            let server = match (v6_spelling, server_of(lb)) {
                (true, IpAddr::V4(a)) => v4mapped(a),
                (_, a) => a,
            };
            let wrong = match server {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)),
                IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
                    v4mapped(Ipv4Addr::new(192, 0, 2, 99))
                }
                IpAddr::V6(_) => "2001:db8::99".parse().unwrap(),
            };
            for ty in types {
                for local in [s.local, server] {
                    let sq = s.local(local);
                    expect_eq(
                        v1(&srv.sock, ty, &sq),
                        &m,
                        &format!("{what}: v1 {sq:?} type {ty}"),
                    )?;
                    ok += 1;
                }
                let sq = s.local(wrong);
                expect_errno(
                    v1(&srv.sock, ty, &sq),
                    libc::ENOENT,
                    &format!("{what}: v1 {sq:?}"),
                )?;
                missed += 1;
            }
            // v0: the 16-byte answer of an IPv6 spelling; the 4-byte one of an IPv4 spelling when the
            // client is IPv4 (EAFNOSUPPORT otherwise, checked below: not counted as a lookup).
            let af = s.af();
            if v6_spelling || !v6 {
                let want = if v6_spelling {
                    mapped(m.client)
                } else {
                    m.client
                };
                for af in [af, af.to_be()] {
                    expect_eq(
                        v0(&srv.sock, af, s),
                        &want,
                        &format!("{what}: v0 {s:?} af {af:#x}"),
                    )?;
                    ok += 1;
                }
            }
        }
        let other = Query {
            lb: SocketAddr::new(q.lb.ip(), lb.port().wrapping_add(1)),
            ..q
        };
        expect_errno(
            v1(&srv.sock, u32::from(q.af()), &other),
            libc::ENOENT,
            &format!("{what}: another LB port"),
        )?;
        missed += 1;
        expect_deltas(
            &before,
            &[
                ("uoa_option_found", 1),
                ("uoa_mapping_alloc", 1),
                ("uoa_mapping_free", 0),
                ("uoa_option_malformed", 0),
                ("uoa_untrusted_source", 0),
                ("uoa_map_full", 0),
                ("uoa_lookup_ok", ok),
                ("uoa_lookup_missed", missed),
            ],
            &what,
        )?;
        if v6 && wire == Family::V4 {
            let r = v0(&srv.sock, AF_INET, &q.as_v4());
            expect_errno(r, libc::EAFNOSUPPORT, &format!("{what}: v0 af AF_INET"))?;
        }
        expect_table(lb, srv.local(lb), Some(&m), &what)?;
        let idle = idle_of(lb, srv.local(lb))?;
        check!(idle <= 1, "{what}: idle {idle} s right after the lookups");
    }
    Ok(())
}

/// DPVS's IPv4 option 31 (len 8: IPv4 client, len 20: IPv6 client) to AF_INET and AF_INET6 sockets: v1
/// answers the client with VIP and vport zero, v0 the client; uoa_table shows `-` for the VIP.
pub(crate) fn uoa_dpvs_layout(ctx: &mut Ctx) -> TestResult {
    for (i, (af, v6)) in [
        (Af::Inet, false),
        (Af::Inet, true),
        (Af::Inet6, false),
        (Af::Inet6, true),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("DPVS option len {}, {af:?} socket", if v6 { 20 } else { 8 });
        let m = Mapping::nth(v6, 10 + i as u16).dpvs();
        let srv = UdpServer::bind(ctx, af)?;
        let lb = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
        let before = Stats::read()?;
        srv.deliver(&mut ctx.lb, lb, &m.opts(Family::V4), what.as_bytes())?;
        let q = srv.query(lb);
        for ty in [TYPE_V4, u32::from(AF_INET)] {
            expect_eq(
                v1(&srv.sock, ty, &q.as_v4()),
                &m,
                &format!("{what}: v1 type {ty}"),
            )?;
        }
        expect_eq(
            v1(&srv.sock, TYPE_V6, &q.as_mapped()),
            &m,
            &format!("{what}: v1 v4-mapped"),
        )?;
        expect_eq(
            v0(&srv.sock, AF_INET6, &q.as_mapped()),
            &mapped(m.client),
            &format!("{what}: v0 af AF_INET6"),
        )?;
        let mut ok = 4;
        if !v6 {
            expect_eq(
                v0(&srv.sock, AF_INET, &q.as_v4()),
                &m.client,
                &format!("{what}: v0 af AF_INET"),
            )?;
            ok += 1;
        }
        expect_deltas(
            &before,
            &[
                ("uoa_option_found", 1),
                ("uoa_mapping_alloc", 1),
                ("uoa_option_malformed", 0),
                ("uoa_lookup_ok", ok),
            ],
            &what,
        )?;
        expect_table(lb, srv.local(lb), Some(&m), &what)?;
    }
    Ok(())
}

/// The option rides on the first datagrams of a flow only: the mapping stays for the plain datagrams
/// after them (a repeated option keeps one live mapping per flow); a plain datagram of
/// the flow and a successful lookup each restart its idle time (uoa_table's idle column).
pub(crate) fn uoa_option_on_first_datagrams_only(ctx: &mut Ctx) -> TestResult {
    let srv = UdpServer::bind(ctx, Af::Inet6)?;
    let flows = [
        (
            SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port()),
            Mapping::nth(false, 1),
        ),
        (
            SocketAddr::new(IpAddr::V6(LB_V6), ctx.lb.port()),
            Mapping::nth(true, 2),
        ),
    ];
    let before = Stats::read()?;
    for (lb, m) in &flows {
        let opts = m.opts(wire_of(*lb));
        for n in 0..7 {
            let carries = n < 2;
            let payload = format!("datagram {n}, option: {carries}");
            let o = if carries {
                opts.clone()
            } else {
                Options::default()
            };
            srv.deliver(&mut ctx.lb, *lb, &o, payload.as_bytes())?;
            expect_eq(srv.lookup(*lb), m, &format!("{lb}: after {payload}"))?;
        }
        expect_table(*lb, srv.local(*lb), Some(m), "after the plain datagrams")?;
    }
    expect_deltas(
        &before,
        &[
            ("uoa_option_found", 4),
            ("uoa_lookup_ok", 14),
            ("uoa_option_malformed", 0),
        ],
        "2 flows, option on 2 of 7 datagrams",
    )?;
    let d = uoa_delta(&before)?;
    let live = d["uoa_mapping_alloc"] - d["uoa_mapping_free"];
    check!(live == 2, "2 flows, {live} more live mappings: {d:?}");
    // Idle time: it grows while nothing happens (reading uoa_table does not restart it); a plain
    // datagram restarts it, and so does a lookup.
    let (lb, m) = flows[0];
    let local = srv.local(lb);
    let grown = |what: &str| {
        env::poll(Duration::from_secs(10), what, || {
            Ok((idle_of(lb, local)? >= 2).then_some(()))
        })
    };
    grown("idle time reaching 2 s")?;
    srv.deliver(&mut ctx.lb, lb, &Options::default(), b"keep-alive")?;
    let idle = idle_of(lb, local)?;
    check!(
        idle <= 1,
        "idle {idle} s after a plain datagram of the flow"
    );
    grown("idle time reaching 2 s again")?;
    expect_eq(srv.lookup(lb), &m, "lookup")?;
    let idle = idle_of(lb, local)?;
    check!(idle <= 1, "idle {idle} s after a lookup");
    Ok(())
}

/// The newest option of a flow wins (another client, family or layout), other flows keep theirs;
/// uoa_table shows one row per flow; each replacement allocates one mapping and frees one.
pub(crate) fn uoa_newest_option_wins(ctx: &mut Ctx) -> TestResult {
    let srv = UdpServer::bind(ctx, Af::Inet)?;
    let a = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
    let b = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
    let mb = Mapping::nth(false, 9);
    let before = Stats::read()?;
    srv.deliver(&mut ctx.lb, b, &mb.opts(Family::V4), b"b")?;
    for (n, m) in [
        Mapping::nth(false, 1),
        Mapping::nth(true, 2),
        Mapping::nth(false, 3).dpvs(),
        Mapping::nth(false, 4),
    ]
    .iter()
    .enumerate()
    {
        let what = format!("option {n} of flow {a}");
        srv.deliver(&mut ctx.lb, a, &m.opts(Family::V4), what.as_bytes())?;
        expect_eq(srv.lookup(a), m, &what)?;
        expect_eq(srv.lookup(b), &mb, &format!("{what}: the other flow"))?;
        expect_table(a, srv.local(a), Some(m), &what)?;
    }
    expect_table(b, srv.local(b), Some(&mb), "the other flow")?;
    expect_deltas(
        &before,
        &[
            ("uoa_option_found", 5),
            ("uoa_mapping_alloc", 5),
            ("uoa_mapping_free", 3),
        ],
        "4 options on one flow, 1 on another",
    )
}

/// Where the option sits among others: after NOPs and an unknown option, the first of two options wins
/// (either layout), an option after EOL is not read; in a destination-options header after Pad1, PadN
/// and an unknown option, the first of two wins, and DPVS's payload under optlen 6 is skipped. Each
/// case is also the module's parser's verdict on the bytes sent.
pub(crate) fn uoa_option_walk(ctx: &mut Ctx) -> TestResult {
    let (m1, m2) = (Mapping::nth(false, 1), Mapping::nth(false, 2));
    let m6 = Mapping::nth(true, 3);
    let opt4 = |m: &Mapping| {
        let (c, v) = (m.client, m.vip.unwrap());
        ip4opt(c.ip(), c.port(), v.ip(), v.port())
    };
    let tlv = |m: &Mapping| {
        let (c, v) = (m.client, m.vip.unwrap());
        ip6tlv(c.ip(), c.port(), v.ip(), v.port())
    };
    let dpvs6_payload = {
        let mut t = vec![31, 6];
        t.extend_from_slice(&1234u16.to_be_bytes());
        t.extend_from_slice(&[198, 51, 100, 99]);
        t
    };
    let cases: Vec<(&str, Family, Options, Option<Mapping>)> = vec![
        (
            "NOP, unknown option 25, NOP, then the option",
            Family::V4,
            ipv4_opts([vec![1, 25, 4, 0xab, 0xcd, 1], opt4(&m1)].concat()),
            Some(m1),
        ),
        (
            "two options: the first wins",
            Family::V4,
            ipv4_opts([opt4(&m1), opt4(&m2)].concat()),
            Some(m1),
        ),
        (
            "DPVS's option, then the IP-option design's",
            Family::V4,
            ipv4_opts([dpvs_opt(m2.client.ip(), m2.client.port()), opt4(&m1)].concat()),
            Some(m2.dpvs()),
        ),
        (
            "the option after EOL",
            Family::V4,
            ipv4_opts([vec![0, 0, 0, 0], opt4(&m1)].concat()),
            None,
        ),
        (
            "Pad1, PadN and unknown option 0x1e, then the option",
            Family::V6,
            dstopts_opts(&[0, 1, 1, 0, 0x1e, 2, 0xaa, 0xbb], &tlv(&m6)),
            Some(m6),
        ),
        (
            "two destination options: the first wins",
            Family::V6,
            dstopts_opts(&[], &[tlv(&m1), tlv(&m6)].concat()),
            Some(m1),
        ),
        (
            "DPVS's payload under optlen 6 (no IPv6 form): skipped",
            Family::V6,
            dstopts_opts(&[], &[dpvs6_payload, tlv(&m6)].concat()),
            Some(m6),
        ),
    ];
    let srv = UdpServer::bind(ctx, Af::Inet6)?;
    for (what, wire, opts, want) in cases {
        let lb = SocketAddr::new(lb_addr(wire), ctx.lb.port());
        let d = datagram(lb, srv.port, &opts, what.as_bytes());
        match (scan_datagram(&d)?.scan, want) {
            (Scan::Found(t), Some(w)) if Mapping::from_toa(&t) == w => {}
            (Scan::NoToa, None) => {}
            (v, w) => {
                return Err(format!(
                    "{what}: the parser says {v:?}, the test expects {w:?}"
                ))
            }
        }
        let before = Stats::read()?;
        srv.deliver(&mut ctx.lb, lb, &opts, what.as_bytes())?;
        match &want {
            Some(m) => expect_eq(srv.lookup(lb), m, what)?,
            None => expect_errno(srv.lookup(lb), libc::ENOENT, what)?,
        }
        expect_deltas(
            &before,
            &[
                ("uoa_option_found", i64::from(want.is_some())),
                ("uoa_option_malformed", 0),
            ],
            what,
        )?;
    }
    Ok(())
}

/// The module's parser's reading of a datagram's bytes (`toa_wire`, the code toa.ko runs).
fn scan_datagram(d: &Datagram) -> Result<toa_wire::UdpDatagram, String> {
    let raw = d.encode();
    let scan = if d.src.is_ipv4() {
        scan_udp_ipv4(&raw)
    } else {
        scan_udp_ipv6(&raw)
    };
    let u = scan.ok_or_else(|| format!("the parser sees no UDP datagram in {raw:02x?}"))?;
    check!(
        (u.sport, u.dport) == (d.sport, d.dport),
        "the parser read ports {}/{}, sent {}/{}",
        u.sport,
        u.dport,
        d.sport,
        d.dport
    );
    Ok(u)
}

/// Malformed option 31 (lengths that are no layout's, the family bit disagreeing with the length,
/// optlen outside 12/36/6/18): the datagram is still delivered, no mapping is planted, each counts
/// uoa_option_malformed once; a malformed option on a flow that has a mapping leaves it as it was.
pub(crate) fn uoa_malformed_options(ctx: &mut Ctx) -> TestResult {
    let good = ip4opt(IpAddr::V4(CIP4), CPORT, IpAddr::V4(VIP4), VPORT);
    let good6 = ip4opt(IpAddr::V6(CIP6), CPORT, IpAddr::V6(VIP6), VPORT);
    let mut bit_set = good.clone();
    bit_set[2] = 1;
    let mut bit_clear = good6.clone();
    bit_clear[2] = 0;
    let mut len12 = good[..12].to_vec();
    len12[1] = 12;
    let cases: Vec<(&str, Family, Options)> = vec![
        ("IPv4 option 31 of length 12", Family::V4, ipv4_opts(len12)),
        (
            "IPv4 option 31 of length 2",
            Family::V4,
            ipv4_opts(vec![1, 1, 31, 2]),
        ),
        (
            "IPv4 option 31 of length 10 after a NOP",
            Family::V4,
            ipv4_opts([vec![1, 31, 10], vec![7; 8]].concat()),
        ),
        (
            "family bit set, IPv4 length 16",
            Family::V4,
            ipv4_opts(bit_set),
        ),
        (
            "family bit clear, IPv6 length 40",
            Family::V4,
            ipv4_opts(bit_clear),
        ),
        (
            "destination option 31 of optlen 4",
            Family::V6,
            dstopts_opts(&[], &[31, 4, 0, 0, 0, 0]),
        ),
        (
            "destination option 31 of optlen 0",
            Family::V6,
            dstopts_opts(&[], &[31, 0]),
        ),
        (
            "destination option 31 of optlen 20",
            Family::V6,
            dstopts_opts(&[], &[vec![31, 20], vec![9; 20]].concat()),
        ),
    ];
    let srv = UdpServer::bind(ctx, Af::Inet6)?;
    for (what, wire, opts) in &cases {
        let lb = SocketAddr::new(lb_addr(*wire), ctx.lb.port());
        let verdict = scan_datagram(&datagram(lb, srv.port, opts, b""))?.scan;
        check!(
            matches!(verdict, Scan::Malformed(_)),
            "{what}: the parser says {verdict:?} (test data)"
        );
        let before = Stats::read()?;
        srv.deliver(&mut ctx.lb, lb, opts, what.as_bytes())?;
        let q = srv.query(lb);
        expect_errno(srv.lookup(lb), libc::ENOENT, &format!("{what}: v1"))?;
        expect_errno(
            v0(&srv.sock, AF_INET6, &q.as_mapped()),
            libc::ENOENT,
            &format!("{what}: v0"),
        )?;
        expect_deltas(
            &before,
            &[
                ("uoa_option_malformed", 1),
                ("uoa_option_found", 0),
                ("uoa_mapping_alloc", 0),
                ("uoa_lookup_missed", 2),
            ],
            what,
        )?;
        expect_table(lb, srv.local(lb), None, what)?;
    }
    // A flow with a mapping: a malformed option later leaves the mapping alone.
    for (what, wire, opts) in [&cases[0], &cases[5]] {
        let lb = SocketAddr::new(lb_addr(*wire), ctx.lb.port());
        let m = Mapping::nth(*wire == Family::V6, 5);
        srv.deliver(&mut ctx.lb, lb, &m.opts(*wire), b"with option")?;
        let before = Stats::read()?;
        srv.deliver(&mut ctx.lb, lb, opts, what.as_bytes())?;
        expect_eq(srv.lookup(lb), &m, &format!("mapped flow, then {what}"))?;
        expect_deltas(
            &before,
            &[
                ("uoa_option_malformed", 1),
                ("uoa_mapping_alloc", 0),
                ("uoa_mapping_free", 0),
            ],
            &format!("mapped flow, then {what}"),
        )?;
    }
    Ok(())
}

/// Every getsockopt error of include/uoa.h: short lengths (EINVAL, nothing written), a larger length
/// (exactly sizeof written, len set to it), unknown af/type (EAFNOSUPPORT), another socket's port
/// (EACCES), a TCP socket (ENOPROTOOPT), a bad buffer (EFAULT), a flow without option (ENOENT).
pub(crate) fn uoa_getsockopt_errors(ctx: &mut Ctx) -> TestResult {
    let srv = UdpServer::bind(ctx, Af::Inet)?;
    let other = UdpServer::bind(ctx, Af::Inet6)?;
    let lb = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
    let m = Mapping::nth(false, 1);
    srv.deliver(&mut ctx.lb, lb, &m.opts(Family::V4), b"mapped")?;
    let q = srv.query(lb);
    const SENTINEL: u8 = 0xa5;
    // Lengths, v0 and v1: the input, then sentinel bytes up to 64.
    for (name, opt, size, input) in [
        (
            "v0",
            UOA_SO_GET_LOOKUP,
            V0_LEN,
            v0_input(AF_INET, &q).to_vec(),
        ),
        (
            "v1",
            UOA_SO_GET_LOOKUP1,
            V1_LEN,
            v1_input(TYPE_V4, &q).to_vec(),
        ),
    ] {
        let mut buf = [SENTINEL; 64];
        buf[..size].copy_from_slice(&input);
        let orig = buf;
        for len in [0, 1, size - 1] {
            let r = srv
                .sock
                .getsockopt_buf(libc::IPPROTO_IP, opt, &mut buf, len);
            expect_errno(r, libc::EINVAL, &format!("{name} len {len}"))?;
            check!(buf == orig, "{name} len {len}: the buffer was written");
        }
        let r = srv.sock.getsockopt_buf(libc::IPPROTO_IP, opt, &mut buf, 64);
        expect_eq(r, &size, &format!("{name} len 64: the length returned"))?;
        check!(
            buf[size..].iter().all(|&b| b == SENTINEL),
            "{name} len 64: bytes past {size} written: {:02x?}",
            &buf[size..]
        );
        if opt == UOA_SO_GET_LOOKUP {
            expect_eq(v0_output(AF_INET, &buf), &m.client, "v0 len 64")?;
        } else {
            expect_eq(v1_output(&buf), &m, "v1 len 64")?;
        }
    }
    for af in [0u16, 1, 3, 7, 0xffff] {
        expect_errno(
            v0(&srv.sock, af, &q),
            libc::EAFNOSUPPORT,
            &format!("v0 af {af}"),
        )?;
    }
    for ty in [3u32, 7, 99, u32::MAX] {
        expect_errno(
            v1(&srv.sock, ty, &q),
            libc::EAFNOSUPPORT,
            &format!("v1 type {ty}"),
        )?;
    }
    // Another socket asking for this socket's flow, and this socket naming another port.
    let theirs = other.query(lb);
    let theirs_for_ours = Query {
        dport: srv.port,
        ..theirs
    };
    expect_errno(
        v1(&other.sock, u32::from(AF_INET6), &theirs_for_ours),
        libc::EACCES,
        "v1 from another socket",
    )?;
    expect_errno(
        v0(&other.sock, AF_INET6, &theirs_for_ours),
        libc::EACCES,
        "v0 from another socket",
    )?;
    let ours_for_theirs = Query {
        dport: other.port,
        ..q
    };
    expect_errno(
        v1(&srv.sock, TYPE_V4, &ours_for_theirs),
        libc::EACCES,
        "v1 naming another port",
    )?;
    // Not a UDP socket.
    let tcp = io(
        Sock::listen((Ipv4Addr::UNSPECIFIED, ctx.port()).into(), false),
        "listen",
    )?;
    expect_errno(
        v0(&tcp, AF_INET, &q),
        libc::ENOPROTOOPT,
        "v0 on a TCP socket",
    )?;
    expect_errno(
        v1(&tcp, TYPE_V4, &q),
        libc::ENOPROTOOPT,
        "v1 on a TCP socket",
    )?;
    // A buffer the kernel cannot read.
    for (name, opt, size) in [
        ("v0", UOA_SO_GET_LOOKUP, V0_LEN),
        ("v1", UOA_SO_GET_LOOKUP1, V1_LEN),
    ] {
        let mut len = size as libc::socklen_t;
        // SAFETY: the kernel checks the (unmapped) buffer address and fails; `len` is a live local.
        let r = unsafe {
            libc::getsockopt(
                srv.sock.fd(),
                libc::IPPROTO_IP,
                opt,
                8 as *mut libc::c_void,
                &mut len,
            )
        };
        let r = if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(len)
        };
        expect_errno(r, libc::EFAULT, &format!("{name} with an unmapped buffer"))?;
    }
    // A flow whose datagrams never carried an option.
    let plain = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
    srv.deliver(&mut ctx.lb, plain, &Options::default(), b"plain")?;
    expect_errno(srv.lookup(plain), libc::ENOENT, "a flow without option")?;
    expect_eq(srv.lookup(lb), &m, "the mapped flow, after all that")
}

// ---------------------------------------------------------------------------------------------------
// Lifetime and bounds

/// uoa_timeout=2: a flow kept by plain datagrams and one kept by lookups outlive several timeouts
/// while an idle one expires (ENOENT, uoa_mapping_expired, freed by the sweeper); once nothing keeps
/// them, all expire and alloc == free, uoa_table empty.
pub(crate) fn uoa_expiry(ctx: &mut Ctx) -> TestResult {
    env::load(&["uoa_timeout=2"])?;
    let r = (|| {
        let srv = UdpServer::bind(ctx, Af::Inet6)?;
        let by_datagrams = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
        let by_lookups = SocketAddr::new(IpAddr::V6(LB_V6), ctx.lb.port());
        let idle = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
        let flows = [
            (by_datagrams, Mapping::nth(false, 1)),
            (by_lookups, Mapping::nth(true, 2)),
            (idle, Mapping::nth(false, 3).dpvs()),
        ];
        for (lb, m) in &flows {
            srv.deliver(&mut ctx.lb, *lb, &m.opts(wire_of(*lb)), b"option")?;
            expect_eq(srv.lookup(*lb), m, "before the timeout")?;
        }
        let before = Stats::read()?;
        let keep_alive = |ctx: &mut Ctx| -> TestResult {
            srv.deliver(
                &mut ctx.lb,
                by_datagrams,
                &Options::default(),
                b"keep-alive",
            )?;
            expect_eq(
                srv.lookup(by_lookups),
                &flows[1].1,
                "the flow kept by lookups",
            )?;
            // Pacing, not a wait for state: the flows stay active, 250 ms apart, across several 2 s
            // timeouts (what the test is about).
            std::thread::sleep(Duration::from_millis(250));
            Ok(())
        };
        let expired = || -> Result<(i64, i64), String> {
            let d = uoa_delta(&before)?;
            Ok((d["uoa_mapping_expired"], d["uoa_mapping_free"]))
        };
        // Until the idle flow is expired and freed (2 s, then the sweeper's period of 1 s).
        let deadline = Instant::now() + Duration::from_secs(20);
        while expired()? != (1, 1) {
            check!(
                Instant::now() < deadline,
                "the idle flow not expired in 20 s: {:?}",
                expired()?
            );
            keep_alive(ctx)?;
        }
        // Then more than a whole timeout more: the two kept flows stay.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(2500) {
            keep_alive(ctx)?;
        }
        check!(
            expired()? == (1, 1),
            "expired/freed {:?}, want only the idle flow",
            expired()?
        );
        expect_errno(srv.lookup(idle), libc::ENOENT, "the idle flow")?;
        expect_eq(
            srv.lookup(by_datagrams),
            &flows[0].1,
            "the flow kept by datagrams",
        )?;
        expect_table(idle, srv.local(idle), None, "the idle flow")?;
        expect_table(
            by_datagrams,
            srv.local(by_datagrams),
            Some(&flows[0].1),
            "kept by datagrams",
        )?;
        expect_table(
            by_lookups,
            srv.local(by_lookups),
            Some(&flows[1].1),
            "kept by lookups",
        )?;
        // Left alone, all go.
        env::poll(
            Duration::from_secs(20),
            "every mapping expired and freed",
            || Ok((expired()? == (3, 3) && live_mappings()? == 0).then_some(())),
        )?;
        for (lb, _) in &flows {
            expect_errno(srv.lookup(*lb), libc::ENOENT, &format!("{lb} after expiry"))?;
        }
        let t = env::uoa_table()?;
        check!(t.is_empty(), "uoa_table after expiry: {t:?}");
        Ok(())
    })();
    env::load(&[])?;
    r
}

/// uoa_max_mappings=256: 256 flows are stored, a 257th is not (ENOENT, uoa_map_full), its datagram is
/// still delivered; an existing flow still takes a newer option.
pub(crate) fn uoa_map_full(ctx: &mut Ctx) -> TestResult {
    env::load(&["uoa_max_mappings=256"])?;
    let r = (|| {
        let srv = UdpServer::bind(ctx, Af::Inet)?;
        let before = Stats::read()?;
        for i in 0..256 {
            let (lb, m) = (bulk_flow(false, i), bulk_mapping(false, i));
            srv.deliver(
                &mut ctx.lb,
                lb,
                &m.opts(Family::V4),
                &(i as u32).to_be_bytes(),
            )?;
        }
        expect_deltas(
            &before,
            &[
                ("uoa_option_found", 256),
                ("uoa_mapping_alloc", 256),
                ("uoa_map_full", 0),
            ],
            "256 flows",
        )?;
        for i in 0..256 {
            expect_eq(
                srv.lookup(bulk_flow(false, i)),
                &bulk_mapping(false, i),
                &format!("flow {i}"),
            )?;
        }
        let rows = env::uoa_table()?.len();
        check!(rows == 256, "{rows} uoa_table rows for 256 flows");
        let before = Stats::read()?;
        let (lb, m) = (bulk_flow(false, 256), bulk_mapping(false, 256));
        srv.deliver(&mut ctx.lb, lb, &m.opts(Family::V4), b"the 257th")?;
        expect_errno(srv.lookup(lb), libc::ENOENT, "the 257th flow")?;
        expect_deltas(
            &before,
            &[
                ("uoa_map_full", 1),
                ("uoa_option_found", 0),
                ("uoa_mapping_alloc", 0),
            ],
            "the 257th flow",
        )?;
        let before = Stats::read()?;
        let (lb, m) = (bulk_flow(false, 0), bulk_mapping(false, 1000));
        srv.deliver(&mut ctx.lb, lb, &m.opts(Family::V4), b"flow 0 again")?;
        expect_eq(srv.lookup(lb), &m, "flow 0's newer option")?;
        expect_deltas(
            &before,
            &[
                ("uoa_map_full", 0),
                ("uoa_option_found", 1),
                ("uoa_mapping_alloc", 1),
                ("uoa_mapping_free", 1),
            ],
            "flow 0's newer option",
        )
    })();
    env::load(&[])?;
    r
}

/// 100 000 flows (`TOA_UOA_FLOWS`), IPv4 and IPv6, from 192.0.2.10+ and 2001:db8::10+ (50 000 LB ports
/// each) within a time budget (`TOA_UOA_BUDGET`, seconds): every datagram delivered, every flow
/// stored (counters, uoa_table's line count and a sample of its lines and of lookups); rmmod frees them
/// (the runner's kmemleak scan) and a reload starts empty.
pub(crate) fn uoa_many_flows(ctx: &mut Ctx) -> TestResult {
    let n: usize = env_number("TOA_UOA_FLOWS", 100_000);
    let budget = Duration::from_secs(env_number("TOA_UOA_BUDGET", 900) as u64);
    // Long timeout: under emulation the sending alone may take minutes.
    let max = n.max(256).to_string();
    env::load(&[&format!("uoa_max_mappings={max}"), "uoa_timeout=43200"])?;
    let r = (|| {
        let srv = UdpServer::bind(ctx, Af::Inet6)?;
        let flow = |i: usize| {
            let v6 = i % 4 == 3;
            (bulk_flow(v6, i), bulk_mapping(v6, i))
        };
        let before = Stats::read()?;
        let started = Instant::now();
        let mut received = 0;
        for i in 0..n {
            let (lb, m) = flow(i);
            let d = datagram(
                lb,
                srv.port,
                &m.opts(wire_of(lb)),
                &(i as u32).to_be_bytes(),
            );
            io(ctx.lb.send_udp(&d), "send datagram")?;
            if i % 128 == 127 {
                received += srv.drain()?;
                check!(
                    started.elapsed() < budget,
                    "{i} of {n} flows sent in the budget of {} s",
                    budget.as_secs()
                );
            }
        }
        while received < n {
            match srv.sock.recv_from(WAIT) {
                Ok(_) => received += 1,
                Err(e) => return Err(format!("{received} of {n} datagrams delivered: {e}")),
            }
        }
        let sent = started.elapsed();
        expect_deltas(
            &before,
            &[
                ("uoa_option_found", n as i64),
                ("uoa_mapping_alloc", n as i64),
                ("uoa_mapping_free", 0),
                ("uoa_map_full", 0),
                ("uoa_option_malformed", 0),
            ],
            &format!("{n} flows"),
        )?;
        let rows: HashSet<String> = env::uoa_table()?.into_iter().map(|r| r.mapping).collect();
        check!(
            rows.len() == n,
            "{} uoa_table rows for {n} flows",
            rows.len()
        );
        for i in (0..n).step_by(97) {
            let (lb, m) = flow(i);
            let line = table_line(lb, srv.local(lb), &m);
            check!(rows.contains(&line), "flow {i}: no uoa_table row {line:?}");
            expect_eq(srv.lookup(lb), &m, &format!("flow {i}"))?;
        }
        let t = Instant::now();
        env::unload()?;
        let unloaded = t.elapsed();
        env::load(&[])?;
        let rows = env::uoa_table()?;
        check!(
            rows.is_empty(),
            "uoa_table after the reload: {} rows",
            rows.len()
        );
        check!(live_mappings()? == 0, "mappings after the reload");
        println!(
            "# uoa_many_flows: {n} flows sent and delivered in {:.1} s, rmmod in {:.1} s",
            sent.as_secs_f64(),
            unloaded.as_secs_f64()
        );
        Ok(())
    })();
    env::load(&[])?;
    r
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// rmmod with live mappings and datagrams in flight: a sender thread keeps sending option datagrams of
/// 1000 flows (IPv4 and IPv6) while toa is removed and inserted again 5 times, a reader drains the
/// socket and a querier asks v1: every answer is the flow's own mapping, ENOENT or (unloaded)
/// ENOPROTOOPT. Then uoa_table holds only true mappings and a new flow is mapped at once. (The runner
/// checks the kernel log.)
pub(crate) fn uoa_rmmod_with_traffic(ctx: &mut Ctx) -> TestResult {
    const FLOWS: usize = 1000;
    const CYCLES: usize = 5;
    env::load(&[])?;
    let srv = UdpServer::bind(ctx, Af::Inet6)?;
    let flow = |k: usize| {
        let v6 = k % 2 == 1;
        (
            SocketAddr::new(bulk_lb(v6, 2), 30_000 + k as u16),
            bulk_mapping(v6, k),
        )
    };
    let stop = AtomicBool::new(false);
    let (sent, received, answered) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let fail = &|m: String| failures.lock().unwrap().push(m);
    let port = srv.port;
    let lb = &mut ctx.lb;
    let progress = |what: &str| {
        let from = sent.load(Ordering::Relaxed);
        env::poll(Duration::from_secs(30), what, || {
            Ok((sent.load(Ordering::Relaxed) >= from + 50).then_some(()))
        })
    };
    let reloads = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (from, m) = flow(i % FLOWS);
                let d = datagram(
                    from,
                    port,
                    &m.opts(wire_of(from)),
                    &(i as u64).to_be_bytes(),
                );
                if let Err(e) = lb.send_udp(&d) {
                    fail(format!("datagram {i}: {e}"));
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match srv.sock.recv_from(Duration::from_millis(100)) {
                    Ok(_) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(e) => fail(format!("recvfrom: {e}")),
                }
            }
        });
        scope.spawn(|| {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let (from, m) = flow(k % FLOWS);
                match srv.lookup(from) {
                    Ok(got) if got == m => {}
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOPROTOOPT)) => {}
                    other => fail(format!("flow {}: v1 {other:?}, want {m:?}", k % FLOWS)),
                }
                answered.fetch_add(1, Ordering::Relaxed);
                k += 7;
            }
        });
        let r = (|| {
            for cycle in 0..CYCLES {
                progress(&format!("cycle {cycle}: datagrams while loaded"))?;
                env::unload()?;
                progress(&format!("cycle {cycle}: datagrams while unloaded"))?;
                env::load(&[])?;
            }
            progress("datagrams after the last reload")
        })();
        stop.store(true, Ordering::Relaxed);
        r
    });
    println!(
        "# uoa_rmmod_with_traffic: {CYCLES} reloads, {} datagrams sent, {} received, {} lookups",
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed)
    );
    reloads?;
    let f = failures.into_inner().unwrap();
    check!(f.is_empty(), "{} failures, first: {}", f.len(), f[0]);
    check!(
        received.load(Ordering::Relaxed) > 0,
        "no datagram delivered"
    );
    check!(
        env::dmesg().contains("toa load success"),
        "no 'toa load success' in the kernel log"
    );
    let truth: HashSet<String> = (0..FLOWS)
        .map(|k| {
            let (from, m) = flow(k);
            table_line(from, srv.local(from), &m)
        })
        .collect();
    let rows = env::uoa_table()?;
    check!(
        !rows.is_empty() && rows.len() <= FLOWS,
        "{} uoa_table rows",
        rows.len()
    );
    for r in &rows {
        check!(
            truth.contains(&r.mapping),
            "uoa_table row {:?} is no flow's",
            r.mapping
        );
    }
    // A new socket (the first one may still hold the sender's last datagrams) and a new flow.
    let after = UdpServer::bind(ctx, Af::Inet)?;
    let before = Stats::read()?;
    let fresh = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
    let m = Mapping::nth(false, 1);
    after.deliver(
        &mut ctx.lb,
        fresh,
        &m.opts(Family::V4),
        b"after the reloads",
    )?;
    expect_eq(after.lookup(fresh), &m, "a new flow after the reloads")?;
    expect_deltas(
        &before,
        &[("uoa_option_found", 1), ("uoa_mapping_alloc", 1)],
        "after the reloads",
    )
}

// ---------------------------------------------------------------------------------------------------
// Parameters, trust, namespaces

/// Parameters: the defaults (uoa=Y, uoa_timeout=360, uoa_max_mappings=262144, in sysfs); uoa_timeout
/// 1..=43200 and uoa_max_mappings 256..=16777216 load at their bounds, values outside fail insmod with
/// `invalid NAME=VALUE` in the kernel log; uoa=0 leaves datagrams alone (no mapping, no counter) and
/// getsockopt 2048/2049 answers ENOPROTOOPT, while TCP TOA still works.
pub(crate) fn uoa_module_parameters(ctx: &mut Ctx) -> TestResult {
    let r = (|| {
        env::load(&[])?;
        for (name, default) in [
            ("uoa", "Y"),
            ("uoa_timeout", "360"),
            ("uoa_max_mappings", "262144"),
        ] {
            let v = env::param(name)?;
            check!(v == default, "default {name}={v}, want {default}");
        }
        for good in [
            "uoa_timeout=1",
            "uoa_timeout=43200",
            "uoa_max_mappings=256",
            "uoa_max_mappings=16777216",
        ] {
            env::load(&[good]).map_err(|e| format!("insmod toa {good}: {e}"))?;
            let (name, value) = good.split_once('=').unwrap();
            let v = env::param(name)?;
            check!(v == value, "insmod toa {good}: the parameter shows {v}");
        }
        env::unload()?;
        for bad in [
            "uoa_timeout=0",
            "uoa_timeout=43201",
            "uoa_max_mappings=255",
            "uoa_max_mappings=16777217",
        ] {
            check!(env::load(&[bad]).is_err(), "insmod toa {bad} succeeded");
            check!(
                env::dmesg().contains(&format!("invalid {bad}")),
                "insmod toa {bad}: no 'invalid {bad}' in the kernel log"
            );
        }
        env::load(&["uoa=0"])?;
        let srv = UdpServer::bind(ctx, Af::Inet6)?;
        let before = Stats::read()?;
        for wire in [Family::V4, Family::V6] {
            let lb = SocketAddr::new(lb_addr(wire), ctx.lb.port());
            let m = Mapping::nth(wire == Family::V6, 1);
            srv.deliver(&mut ctx.lb, lb, &m.opts(wire), b"uoa=0")?;
            expect_errno(srv.lookup(lb), libc::ENOPROTOOPT, "uoa=0: v1")?;
            let q = srv.query(lb).as_mapped();
            expect_errno(v0(&srv.sock, AF_INET6, &q), libc::ENOPROTOOPT, "uoa=0: v0")?;
        }
        let d = uoa_delta(&before)?;
        check!(
            d.values().all(|&v| v == 0),
            "uoa=0: UOA counters moved: {d:?}"
        );
        let s = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
        check!(
            s.peer == SocketAddr::from((CIP4, CPORT)),
            "uoa=0: TCP TOA getpeername {}",
            s.peer
        );
        close(ctx, s)
    })();
    env::load(&[])?;
    r
}

/// trusted_sources: an option from outside the list plants nothing (uoa_untrusted_source, ENOENT; the
/// datagram is delivered), one from inside is mapped, in the same load; then the LB's own prefix.
pub(crate) fn uoa_trusted_sources(ctx: &mut Ctx) -> TestResult {
    env::load(&["trusted_sources=192.0.2.3/32,2001:db8::3"])?;
    let r = (|| {
        let srv = UdpServer::bind(ctx, Af::Inet6)?;
        let trusted: [IpAddr; 2] = [
            Ipv4Addr::new(192, 0, 2, 3).into(),
            "2001:db8::3".parse().unwrap(),
        ];
        for (n, (untrusted, trusted)) in [IpAddr::V4(LB_V4), IpAddr::V6(LB_V6)]
            .into_iter()
            .zip(trusted)
            .enumerate()
        {
            let m = Mapping::nth(untrusted.is_ipv6(), n as u16);
            let wire = wire_of(SocketAddr::new(untrusted, 0));
            let bad = SocketAddr::new(untrusted, ctx.lb.port());
            let before = Stats::read()?;
            srv.deliver(&mut ctx.lb, bad, &m.opts(wire), b"untrusted")?;
            expect_errno(srv.lookup(bad), libc::ENOENT, &format!("untrusted {bad}"))?;
            expect_deltas(
                &before,
                &[
                    ("uoa_untrusted_source", 1),
                    ("uoa_option_found", 0),
                    ("uoa_mapping_alloc", 0),
                ],
                &format!("untrusted {bad}"),
            )?;
            expect_table(bad, srv.local(bad), None, &format!("untrusted {bad}"))?;
            let good = SocketAddr::new(trusted, ctx.lb.port());
            let before = Stats::read()?;
            srv.deliver(&mut ctx.lb, good, &m.opts(wire), b"trusted")?;
            expect_eq(srv.lookup(good), &m, &format!("trusted {good}"))?;
            expect_deltas(
                &before,
                &[("uoa_untrusted_source", 0), ("uoa_option_found", 1)],
                &format!("trusted {good}"),
            )?;
        }
        env::load(&["trusted_sources=192.0.2.0/30,2001:db8::/64"])?;
        for wire in [Family::V4, Family::V6] {
            let lb = SocketAddr::new(lb_addr(wire), ctx.lb.port());
            let m = Mapping::nth(wire == Family::V6, 7);
            srv.deliver(&mut ctx.lb, lb, &m.opts(wire), b"trusted prefix")?;
            expect_eq(srv.lookup(lb), &m, &format!("{lb} in a trusted prefix"))?;
        }
        Ok(())
    })();
    env::load(&[])?;
    r
}

/// Network namespaces: a flow mapped in the host namespace is invisible from a socket on the same port
/// in another namespace (ENOENT; that namespace's uoa_table starts empty), and the other namespace's
/// flow is invisible here, in uoa_table and to a lookup (ENOENT), while each namespace answers its own.
pub(crate) fn uoa_network_namespaces(ctx: &mut Ctx) -> TestResult {
    const NS: &str = "toa-uoa-ns";
    let srv = UdpServer::bind(ctx, Af::Inet)?;
    let host_lb = SocketAddr::new(IpAddr::V4(LB_V4), ctx.lb.port());
    let m = Mapping::nth(false, 1);
    srv.deliver(&mut ctx.lb, host_lb, &m.opts(Family::V4), b"host")?;
    let _ = env::run("ip", &["netns", "del", NS]);
    env::run("ip", &["netns", "add", NS])?;
    let r = (|| {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", NS])
            .arg(&me)
            .args([
                "uoa-netns-child",
                &srv.port.to_string(),
                &host_lb.port().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip netns exec: {e}"))?;
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        // The child holds its mapping (and its namespace) until told: look from here meanwhile.
        let checks = (|| {
            io(read, "read the child's line")?;
            let port: u16 = line
                .trim()
                .strip_prefix("ready ")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("inside the namespace: {}", line.trim()))?;
            let theirs = SocketAddr::new(IpAddr::V4(LB_V4), port);
            expect_table(
                theirs,
                srv.local(theirs),
                None,
                "the other namespace's flow, from here",
            )?;
            expect_errno(
                srv.lookup(theirs),
                libc::ENOENT,
                "the other namespace's flow, from here",
            )?;
            expect_eq(srv.lookup(host_lb), &m, "this namespace's flow")
        })();
        let _ = child.stdin.take().unwrap().write_all(b"done\n");
        let status = child.wait().map_err(|e| e.to_string())?;
        checks?;
        check!(status.success(), "namespace child failed: {status}");
        Ok(())
    })();
    let _ = env::run("ip", &["netns", "del", NS]);
    r
}

/// `toa-vmtest uoa-netns-child PORT HOST_LB_PORT`, run by [`uoa_network_namespaces`] in a fresh
/// namespace: checks that the host's flow (LB_V4:HOST_LB_PORT -> PORT) is not seen here, maps a flow of
/// its own to PORT, checks it, prints `ready LB_PORT`, waits for a line on stdin. Prints the failure
/// instead of `ready` on error.
pub(crate) fn netns_child(args: &[String]) -> i32 {
    let r = (|| {
        let arg = |i: usize| -> Result<u16, String> {
            args.get(i)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("usage: uoa-netns-child PORT HOST_LB_PORT ({args:?})"))
        };
        let (port, host_port) = (arg(0)?, arg(1)?);
        env::run("ip", &["link", "set", "lo", "up"])?;
        let mut lb = Lb::new("toa1").map_err(|e| e.to_string())?;
        let rows = env::uoa_table()?;
        check!(rows.is_empty(), "a new namespace's uoa_table: {rows:?}");
        let st = Stats::read()?;
        check!(
            st.get("uoa_option_found") == 0 && st.get("uoa_mapping_alloc") == 0,
            "a new namespace's counters {:?}",
            st.sums()
        );
        let srv = UdpServer::bind_port(Af::Inet, port)?;
        let host_flow = SocketAddr::new(IpAddr::V4(LB_V4), host_port);
        expect_errno(
            srv.lookup(host_flow),
            libc::ENOENT,
            "the host namespace's flow, from here",
        )?;
        let mine = SocketAddr::new(IpAddr::V4(LB_V4), host_port.wrapping_add(1));
        let m = Mapping::nth(false, 2);
        srv.deliver(&mut lb, mine, &m.opts(Family::V4), b"namespace")?;
        expect_eq(srv.lookup(mine), &m, "this namespace's flow")?;
        let rows: Vec<String> = env::uoa_table()?.into_iter().map(|r| r.mapping).collect();
        let want = vec![table_line(mine, srv.local(mine), &m)];
        check!(rows == want, "namespace uoa_table {rows:?}, want {want:?}");
        println!("ready {}", mine.port());
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
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

// ---------------------------------------------------------------------------------------------------
// Adversarial datagrams

/// IPv4 options of a UDP datagram that the kernel accepts (it drops a packet whose IPv4 option list is
/// malformed): the TCP adversarial run's lists, or up to three of: NOP, DPVS's option (len 8/20), the
/// IP-option design's (len 16/40), option 31 of any length with random bytes (bad family bits, bad
/// lengths, DPVS lengths with garbage), EOL (what follows is not read).
fn adversarial_ipv4(rng: &mut Rng) -> Vec<u8> {
    if rng.below(4) == 0 {
        return stress::ipv4_options(rng);
    }
    let mut o = Vec::new();
    for _ in 0..rng.below(4) {
        let room = 40 - o.len();
        let opt = match rng.below(7) {
            0 => vec![1],
            1 => vec![0],
            2 => {
                let v6 = rng.below(2) == 0;
                dpvs_opt(rng.addr(v6), rng.next() as u16)
            }
            3 | 4 => {
                let v6 = rng.below(3) == 0;
                ip4opt(
                    rng.addr(v6),
                    rng.next() as u16,
                    rng.addr(v6),
                    rng.next() as u16,
                )
            }
            _ if room >= 2 => {
                let len = 2 + rng.below(room - 1);
                [vec![31, len as u8], rng.bytes(len - 2)].concat()
            }
            _ => vec![],
        };
        if opt.len() <= room {
            o.extend(opt);
        }
    }
    o
}

/// An IPv6 destination-options header the kernel accepts (zero PadN, at most 7 padding bytes in a row,
/// skippable unknown options): the TCP adversarial run's, or a lead of padding and one or two of: the
/// IP-option design's option (optlen 12/36), DPVS's payload under optlen 6/18, option 31 of a random
/// optlen with random bytes, an unknown skippable option.
fn adversarial_dstopts(rng: &mut Rng) -> Vec<u8> {
    if rng.below(3) == 0 {
        return stress::ipv6_dstopts(rng);
    }
    let leads: [&[u8]; 4] = [&[], &[0], &[1, 0], &[0, 1, 1, 0]];
    let lead = leads[rng.below(leads.len())];
    let mut tlvs = Vec::new();
    for _ in 0..1 + rng.below(2) {
        match rng.below(5) {
            0 | 1 => {
                let v6 = rng.below(2) == 0;
                tlvs.extend(ip6tlv(
                    rng.addr(v6),
                    rng.next() as u16,
                    rng.addr(v6),
                    rng.next() as u16,
                ));
            }
            2 => {
                let v6 = rng.below(2) == 0;
                let mut d = dpvs_opt(rng.addr(v6), rng.next() as u16);
                d[1] -= 2; // IPv6 option lengths do not count type and length
                tlvs.extend(d);
            }
            3 => {
                let len = rng.below(40);
                tlvs.extend([31, len as u8]);
                tlvs.extend(rng.bytes(len));
            }
            _ => {
                let len = rng.below(7);
                tlvs.extend([0x1e, len as u8]);
                tlvs.extend(rng.bytes(len));
            }
        }
    }
    dstopts(lead, &tlvs)
}

/// At least 5 000 datagrams (`TOA_ADVERSARIAL_DATAGRAMS`) with random and crafted IPv4 options and IPv6
/// destination options, over IPv4 and IPv6, to AF_INET and AF_INET6 sockets, each its own flow: every
/// datagram is delivered unchanged, and each gets exactly what the module's own parser predicts from
/// the bytes sent (`toa_wire::scan_udp_ipv4/6`): Found -> v1 (and v0) answer that client and VIP;
/// Malformed or NoToa -> ENOENT; the counters add up (found, malformed, alloc, lookups). Reproducible
/// with `TOA_SEED`.
pub(crate) fn uoa_adversarial_datagrams(ctx: &mut Ctx) -> TestResult {
    let n = env_number("TOA_ADVERSARIAL_DATAGRAMS", 5000);
    let seed = stress::seed();
    println!("# uoa_adversarial_datagrams: {n} datagrams, TOA_SEED={seed}");
    env::load(&[])?;
    adversarial(ctx, n, seed).map_err(|e| format!("{e} (reproduce with TOA_SEED={seed})"))
}

fn adversarial(ctx: &mut Ctx, n: usize, seed: u64) -> TestResult {
    let mut rng = Rng(seed);
    let servers = [
        UdpServer::bind(ctx, Af::Inet)?,
        UdpServer::bind(ctx, Af::Inet6)?,
    ];
    let before = Stats::read()?;
    let (mut found, mut malformed, mut ok, mut missed) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        let wire = if rng.below(3) == 0 {
            Family::V6
        } else {
            Family::V4
        };
        let srv = if wire == Family::V6 || rng.below(2) == 0 {
            &servers[1]
        } else {
            &servers[0]
        };
        let opts = match wire {
            Family::V4 => ipv4_opts(adversarial_ipv4(&mut rng)),
            Family::V6 => Options {
                ipv6_dstopts: adversarial_dstopts(&mut rng),
                ..Options::default()
            },
        };
        let lb = bulk_flow(wire == Family::V6, i);
        let payload = (i as u64).to_be_bytes();
        let d = datagram(lb, srv.port, &opts, &payload);
        let verdict = scan_datagram(&d)?.scan;
        io(ctx.lb.send_udp(&d), "send datagram")?;
        let sent = || format!("datagram {i} from {lb}: {:02x?}", d.encode());
        srv.expect(lb, &payload)
            .map_err(|e| format!("{e}; {}", sent()))?;
        let q = srv.query(lb);
        let q6 = if q.lb.is_ipv4() { q.as_mapped() } else { q };
        match verdict {
            Scan::Found(t) => {
                let m = Mapping::from_toa(&t);
                found += 1;
                expect_eq(srv.lookup(lb), &m, &sent())?;
                ok += 1;
                if i % 4 == 0 {
                    expect_eq(
                        v0(&srv.sock, AF_INET6, &q6),
                        &mapped(m.client),
                        &format!("v0, {}", sent()),
                    )?;
                    ok += 1;
                }
            }
            Scan::Malformed(_) | Scan::NoToa => {
                malformed += i64::from(matches!(verdict, Scan::Malformed(_)));
                expect_errno(
                    srv.lookup(lb),
                    libc::ENOENT,
                    &format!("{verdict:?}, {}", sent()),
                )?;
                missed += 1;
            }
        }
    }
    println!(
        "# uoa_adversarial_datagrams: {n} datagrams, {found} with an option used, {malformed} \
         malformed"
    );
    expect_deltas(
        &before,
        &[
            ("uoa_option_found", found),
            ("uoa_option_malformed", malformed),
            ("uoa_mapping_alloc", found),
            ("uoa_mapping_free", 0),
            ("uoa_untrusted_source", 0),
            ("uoa_map_full", 0),
            ("uoa_lookup_ok", ok),
            ("uoa_lookup_missed", missed),
        ],
        &format!("{n} adversarial datagrams"),
    )
}

// ---------------------------------------------------------------------------------------------------
// The examples (examples/uoa_server.c, uoa_lookup.py, uoa_lookup.go)

/// A program under test: its stdout read line by line by a thread, so that every wait is bounded;
/// killed (by its own handle) if still running when dropped.
struct Program {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    out: Vec<String>,
}

impl Program {
    fn spawn(name: &str, cmd: &mut Command) -> Result<Program, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Program {
            name: name.to_string(),
            child,
            lines,
            out: Vec::new(),
        })
    }

    /// Waits until the program printed a line containing `want`.
    fn wait_for(&mut self, want: &str, timeout: Duration) -> TestResult {
        let deadline = Instant::now() + timeout;
        while !self.out.iter().any(|l| l.contains(want)) {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => self.out.push(l),
                Err(_) => {
                    return Err(format!(
                        "{}: no line with {want:?} (printed {:?})",
                        self.name, self.out
                    ))
                }
            }
        }
        Ok(())
    }

    /// Waits for the program to end (up to `timeout`), successfully: everything it printed.
    fn finish(mut self, timeout: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => self.out.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{} did not exit; printed {:?}",
                        self.name, self.out
                    ))
                }
            }
        }
        let status = self.child.wait().map_err(|e| e.to_string())?;
        check!(
            status.success(),
            "{} exited with {status}; printed {:?}",
            self.name,
            self.out
        );
        Ok(std::mem::take(&mut self.out))
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How long an example may take to start (an interpreter under emulation) or to serve.
const EXAMPLE_WAIT: Duration = Duration::from_secs(60);

/// examples/uoa_server.c (`UOA_EXAMPLE`, built by scripts/check.sh) on a dual-stack socket: after its
/// readiness line, three datagrams (IPv4 option with an IPv4 client, IPv6 destination option with an
/// IPv6 client, DPVS's layout); it prints the LB it heard and the client v0 and v1 recovered.
pub(crate) fn uoa_example_c_server(ctx: &mut Ctx) -> TestResult {
    let bin = std::env::var("UOA_EXAMPLE").map_err(|_| "UOA_EXAMPLE is not set".to_string())?;
    let port = ctx.port();
    let mut p = Program::spawn(&bin, Command::new(&bin).args([&port.to_string(), "3"]))?;
    p.wait_for(&format!("ready: udp port {port}"), EXAMPLE_WAIT)?;
    let flows = [
        (Family::V4, Mapping::nth(false, 1)),
        (Family::V6, Mapping::nth(true, 2)),
        (Family::V4, Mapping::nth(false, 3).dpvs()),
    ];
    let mut want = Vec::new();
    for (wire, m) in flows {
        let lb = SocketAddr::new(lb_addr(wire), ctx.lb.port());
        io(
            ctx.lb
                .send_udp(&datagram(lb, port, &m.opts(wire), b"hello")),
            "send datagram",
        )?;
        let vip = m.vip.map_or_else(|| "none".to_string(), |v| v.to_string());
        want.push(format!("datagram from {}: 5 bytes", mapped(lb)));
        want.push(format!("v0 client {}", mapped(m.client)));
        want.push(format!("v1 client {} vip {vip}", m.client));
    }
    let out = p.finish(EXAMPLE_WAIT)?;
    for w in &want {
        check!(out.contains(w), "uoa_server printed no line {w:?}: {out:?}");
    }
    io(ctx.lb.drain(Duration::from_millis(50)), "drain the echoes").map(|_| ())
}

/// Runs an example that serves one datagram on `port` (`cmd`), sends it a datagram on `wire` mapped to
/// `m`, and checks that it printed `client IP port PORT`.
fn run_lookup_example(
    ctx: &mut Ctx,
    name: &str,
    cmd: &mut Command,
    port: u16,
    wire: Family,
    m: &Mapping,
) -> TestResult {
    let mut p = Program::spawn(name, cmd)?;
    p.wait_for(&format!("ready: udp port {port}"), EXAMPLE_WAIT)?;
    let lb = SocketAddr::new(lb_addr(wire), ctx.lb.port());
    io(
        ctx.lb
            .send_udp(&datagram(lb, port, &m.opts(wire), b"hello")),
        "send datagram",
    )?;
    let out = p.finish(EXAMPLE_WAIT)?;
    let want = format!("client {} port {}", m.client.ip(), m.client.port());
    check!(
        out.iter().any(|l| l.contains(&want)),
        "{name} printed {out:?}, want {want:?}"
    );
    io(ctx.lb.drain(Duration::from_millis(50)), "drain").map(|_| ())
}

/// examples/uoa_lookup.py (python3, ctypes): an IPv6 client behind IPv4 option 31, then an IPv4 client
/// behind an IPv6 destination option, each recovered by `uoa_lookup()`.
pub(crate) fn uoa_example_python(ctx: &mut Ctx) -> TestResult {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/uoa_lookup.py");
    // The distribution's interpreter when there is one (the VM shares the host's root filesystem).
    let python = ["/usr/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("python3");
    for (wire, m) in [
        (Family::V4, Mapping::nth(true, 1)),
        (Family::V6, Mapping::nth(false, 2)),
    ] {
        let port = ctx.port();
        let mut cmd = Command::new(python);
        cmd.args([script, &port.to_string()]);
        run_lookup_example(ctx, "uoa_lookup.py", &mut cmd, port, wire, &m)?;
    }
    Ok(())
}

/// examples/uoa_lookup.go: `UOA_GO_EXAMPLE` (built by scripts/check.sh), else built here with the go
/// toolchain, else skipped (says so). An IPv4 client behind IPv4 option 31 and an IPv6 client behind an
/// IPv6 destination option, each recovered by `uoaLookup()`.
pub(crate) fn uoa_example_go(ctx: &mut Ctx) -> TestResult {
    let bin = match std::env::var("UOA_GO_EXAMPLE") {
        Ok(b) if !b.is_empty() => b,
        _ => {
            if Command::new("go").arg("version").output().is_err() {
                println!("# uoa_example_go: skipped: no UOA_GO_EXAMPLE and no go toolchain");
                return Ok(());
            }
            let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/uoa_lookup.go");
            let bin = "/tmp/uoa_lookup_go".to_string();
            let out = Command::new("go")
                .args(["build", "-o", &bin, src])
                .env("GOCACHE", "/tmp/go-cache")
                .env("GOPATH", "/tmp/go")
                .env("GOTOOLCHAIN", "local")
                .output()
                .map_err(|e| format!("go build: {e}"))?;
            check!(
                out.status.success(),
                "go build: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            bin
        }
    };
    for (wire, m) in [
        (Family::V4, Mapping::nth(false, 1)),
        (Family::V6, Mapping::nth(true, 2)),
    ] {
        let port = ctx.port();
        let mut cmd = Command::new(&bin);
        cmd.arg(port.to_string());
        run_lookup_example(ctx, "uoa_lookup.go", &mut cmd, port, wire, &m)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Demo

/// `toa-vmtest demo`'s UDP part: one datagram per load-balancer scenario, printing what the server sees
/// (recvfrom's source, v0, v1) and uoa_table.
pub(crate) fn demo(ctx: &mut Ctx) -> i32 {
    let scenarios = [
        (
            "UDP: IPv4 option 31 (client and VIP), IPv4 client, AF_INET socket",
            Af::Inet,
            Family::V4,
            Some(Mapping::nth(false, 0)),
        ),
        (
            "UDP NAT64: IPv4 option 31 with an IPv6 client, AF_INET socket",
            Af::Inet,
            Family::V4,
            Some(Mapping::nth(true, 0)),
        ),
        (
            "UDP: IPv6 destination option 31, IPv6 client, AF_INET6 socket",
            Af::Inet6,
            Family::V6,
            Some(Mapping::nth(true, 0)),
        ),
        (
            "UDP: DPVS's IPv4 option (client only), dual-stack AF_INET6 socket",
            Af::Inet6,
            Family::V4,
            Some(Mapping::nth(false, 0).dpvs()),
        ),
        ("UDP without an option", Af::Inet, Family::V4, None),
    ];
    let mut rc = 0;
    for (title, af, wire, m) in scenarios {
        println!("== {title}");
        if let Err(e) = demo_one(ctx, af, wire, m) {
            println!("   failed: {e}");
            rc = 1;
        }
    }
    rc
}

fn demo_one(ctx: &mut Ctx, af: Af, wire: Family, m: Option<Mapping>) -> TestResult {
    let row = |label: &str, value: &dyn std::fmt::Display| println!("   {label:<23}: {value}");
    let answer = |r: io::Result<String>| r.unwrap_or_else(|e| e.to_string());
    let srv = UdpServer::bind(ctx, af)?;
    let lb = SocketAddr::new(lb_addr(wire), ctx.lb.port());
    let opts = m.map(|m| m.opts(wire)).unwrap_or_default();
    let d = datagram(lb, srv.port, &opts, b"hello");
    io(ctx.lb.send_udp(&d), "send")?;
    let (data, from) = io(srv.sock.recv_from(WAIT), "recvfrom")?;
    row("LB address on the wire", &lb);
    let ip_opts = if wire == Family::V4 {
        &d.ipv4_options
    } else {
        &d.ipv6_dstopts
    };
    row("IP options on the wire", &format!("{ip_opts:02x?}"));
    row("recvfrom()", &format!("{} bytes from {from}", data.len()));
    let q = srv.query(lb);
    let mut v0_asks = vec![(q.af(), q)];
    if q.af() == AF_INET {
        v0_asks.push((AF_INET6, q.as_mapped())); // what v0 takes for an IPv6 client
    }
    for (af, q) in v0_asks {
        let name = if af == AF_INET { "AF_INET" } else { "AF_INET6" };
        let a = answer(v0(&srv.sock, af, &q).map(|a| a.to_string()));
        row(&format!("v0 (af {name})"), &a);
    }
    let v1 = answer(srv.lookup(lb).map(|m| {
        let vip = m.vip.map_or_else(|| "none".to_string(), |v| v.to_string());
        format!("client {} vip {vip}", m.client)
    }));
    row("v1", &v1);
    for r in table_rows(lb, srv.local(lb))? {
        row("uoa_table", &format!("{} {}", r.mapping, r.idle));
    }
    Ok(())
}
