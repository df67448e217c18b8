//! Reliability tests: adversarial option bytes on many connections, and module unload/reload while
//! connections are accepted, queried and closed.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use crate::sys::Sock;
use lbemu::packet::Family;
use lbemu::{Conn, Options, LB_V4};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toa_wire::{scan_ip_header, scan_tcp_header, Scan, Toa};

/// SplitMix64: a small, seedable, reproducible generator (the seed is printed on every run).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    pub(crate) fn addr(&mut self, v6: bool) -> IpAddr {
        if v6 {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            b[4..].copy_from_slice(&self.bytes(12));
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, self.next() as u8))
        }
    }
}

/// The seed: `TOA_SEED` when set (to reproduce a failure), else from the clock.
pub(crate) fn seed() -> u64 {
    std::env::var("TOA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// TCP option bytes for the handshake ACK: valid TOAs, crafted malformed lists and plain noise.
fn tcp_options(rng: &mut Rng) -> Vec<u8> {
    let kinds = [
        (200u8, false),
        (254, false),
        (253, false),
        (253, true),
        (254, true),
    ];
    let toa = |rng: &mut Rng| {
        let (kind, v6) = kinds[rng.below(kinds.len())];
        match rng.addr(v6) {
            IpAddr::V4(a) => toa4(kind, a, rng.next() as u16),
            IpAddr::V6(a) => toa6(kind, a, rng.next() as u16),
        }
    };
    let mut o = match rng.below(10) {
        0 => vec![],
        1 | 2 => toa(rng),
        3 => [vec![1, 1, 8, 10], rng.bytes(8), toa(rng)].concat(), // NOP NOP timestamps TOA
        4 => [toa(rng), toa(rng)].concat(),                        // repeated TOA: the first wins
        5 => {
            let mut t = toa(rng); // a TOA with a bad length byte
            t[1] = rng.below(24) as u8;
            t
        }
        6 => {
            let t = toa(rng); // a truncated TOA (the EOL padding may complete or break it)
            t[..rng.below(t.len())].to_vec()
        }
        7 => [vec![0], toa(rng)].concat(), // TOA after EOL: not seen
        8 => [vec![rng.next() as u8 | 2, rng.below(4) as u8], toa(rng)].concat(), // bad option before
        _ => {
            let n = rng.below(41);
            rng.bytes(n)
        }
    };
    o.truncate(40);
    tame_timestamps(&mut o);
    o
}

/// The kernel checks a timestamp option in the handshake ACK against PAWS and drops the ACK when the
/// value looks old: that would test the kernel, not toa. Timestamps it would read get a small value.
fn tame_timestamps(o: &mut [u8]) {
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = o.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > o.len() {
                    break;
                }
                if kind == 8 && len == 10 {
                    o[i + 2..i + 6].copy_from_slice(&[0, 0, 0, 1]);
                }
                i += len;
            }
        }
    }
}

/// IPv4 option kinds the kernel passes through untouched (no source route, record route, timestamp,
/// security, CIPSO or router alert), besides 31.
const SAFE_IPV4_KINDS: [u8; 6] = [25, 30, 82, 94, 142, 205];

/// IPv4 options the kernel accepts (it drops a packet whose option list is malformed), with option 31
/// in good and bad shapes among other options.
pub(crate) fn ipv4_options(rng: &mut Rng) -> Vec<u8> {
    let mut o = Vec::new();
    for _ in 0..rng.below(4) {
        let room = 40 - o.len();
        if room < 2 {
            break;
        }
        match rng.below(5) {
            0 => o.push(1),
            1 if room >= 16 => {
                let v6 = false;
                o.extend(ip4opt(
                    rng.addr(v6),
                    rng.next() as u16,
                    rng.addr(v6),
                    rng.next() as u16,
                ))
            }
            2 if room >= 40 => o.extend(ip4opt(
                rng.addr(true),
                rng.next() as u16,
                rng.addr(true),
                rng.next() as u16,
            )),
            3 => {
                // Option 31 of any length, random content (UOA lengths, bad operation bits, garbage).
                let len = 2 + rng.below(room - 1);
                o.extend([31, len as u8]);
                o.extend(rng.bytes(len - 2));
            }
            _ => {
                let len = 2 + rng.below(room.min(12) - 1);
                o.extend([SAFE_IPV4_KINDS[rng.below(SAFE_IPV4_KINDS.len())], len as u8]);
                o.extend(rng.bytes(len - 2));
            }
        }
    }
    o
}

/// An IPv6 destination-options header the kernel accepts (unknown options of the "skip" kind, at most
/// 7 bytes of padding in a row, PadN zero-filled), with option 31 in good and bad shapes.
pub(crate) fn ipv6_dstopts(rng: &mut Rng) -> Vec<u8> {
    let mut tlvs = Vec::new();
    for _ in 0..1 + rng.below(3) {
        match rng.below(5) {
            0 => tlvs.extend(ip6tlv(
                rng.addr(false),
                rng.next() as u16,
                rng.addr(false),
                rng.next() as u16,
            )),
            1 => tlvs.extend(ip6tlv(
                rng.addr(true),
                rng.next() as u16,
                rng.addr(true),
                rng.next() as u16,
            )),
            2 => {
                let len = rng.below(40);
                tlvs.extend([31, len as u8]);
                tlvs.extend(rng.bytes(len));
            }
            3 => tlvs.extend([1, 1, 0, 2, 0]), // PadN, then an empty skippable option (the kernel
            // refuses more than 7 padding bytes in a row, and the header's tail is padded)
            _ => {
                let len = rng.below(12);
                tlvs.extend([2 + rng.below(0x3e) as u8, len as u8]);
                tlvs.extend(rng.bytes(len));
            }
        }
    }
    dstopts(&[], &tlvs)
}

/// What toa should find in the ACK that completes the handshake: its IP-option TOA, else its TCP-option
/// TOA (the module's precedence), computed with the module's own parser on the exact bytes sent.
fn expected_toa(conn: &Conn) -> Option<Toa> {
    let packet = conn.handshake_ack().encode();
    let nh_len = match packet[0] >> 4 {
        4 => usize::from(packet[0] & 0x0f) * 4,
        _ => {
            let ext = &packet[40..];
            if packet[6] == 60 {
                40 + (usize::from(ext[1]) + 1) * 8
            } else {
                40
            }
        }
    };
    if let Scan::Found(t) = scan_ip_header(&packet[..nh_len]) {
        return Some(t);
    }
    match scan_tcp_header(&packet[nh_len..]) {
        Scan::Found(t) => Some(t),
        _ => None,
    }
}

/// The peer address an application sees on a socket of family `af` for a connection over `wire` from
/// LB port `sport` whose TOA is `toa`.
fn expected_peer(af: Af, wire: Family, sport: u16, toa: Option<&Toa>) -> SocketAddr {
    let lb = SocketAddr::new(
        if af == Af::Inet6 && wire == Family::V4 {
            v4mapped(LB_V4)
        } else {
            lb_addr(wire)
        },
        sport,
    );
    let Some(t) = toa else { return lb };
    let ip = match (af, t.client.addr) {
        (Af::Inet, toa_wire::Addr::V4(a)) => IpAddr::V4(Ipv4Addr::from(a)),
        (Af::Inet, toa_wire::Addr::V6(_)) => return lb,
        (Af::Inet6, toa_wire::Addr::V4(a)) => v4mapped(Ipv4Addr::from(a)),
        (Af::Inet6, toa_wire::Addr::V6(a)) => IpAddr::V6(Ipv6Addr::from(a)),
    };
    SocketAddr::new(ip, t.client.port)
}

/// What the server saw on one connection: its id (the first 8 bytes it read) and getpeername().
struct Seen {
    id: u64,
    peer: io::Result<SocketAddr>,
}

/// Accepts on every listener until `stop`, reads each connection's 8-byte id, reports what it saw and
/// closes it.
fn serve_ids(listeners: &[Sock], stop: &AtomicBool, tx: mpsc::Sender<Seen>) {
    while !stop.load(Ordering::Relaxed) {
        let mut pfds: Vec<libc::pollfd> = listeners
            .iter()
            .map(|l| libc::pollfd {
                fd: l.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: valid pollfds.
        if unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) } <= 0 {
            continue;
        }
        for (l, p) in listeners.iter().zip(&pfds) {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            let Ok((sock, _)) = l.accept(Duration::from_millis(10)) else {
                continue;
            };
            let Ok(data) = sock.read_exact(8, WAIT) else {
                continue;
            };
            let Ok(idb) = <[u8; 8]>::try_from(&data[..8.min(data.len())]) else {
                continue;
            };
            let _ = tx.send(Seen {
                id: u64::from_be_bytes(idb),
                peer: sock.peer(),
            });
        }
    }
}

/// At least 10 000 connections (`TOA_ADVERSARIAL_CONNS`) with random and crafted TCP options, IPv4
/// options and IPv6 destination options, over IPv4 and IPv6, to AF_INET and AF_INET6 listeners: every
/// connection is served, each gets exactly the address the module's own parser predicts from the bytes
/// sent, and the counters add up. Reproducible with `TOA_SEED`.
pub(crate) fn adversarial_connections(ctx: &mut Ctx) -> TestResult {
    let n: usize = std::env::var("TOA_ADVERSARIAL_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let seed = seed();
    println!("# adversarial_connections: {n} connections, TOA_SEED={seed}");
    adversarial(ctx, n, seed).map_err(|e| format!("{e} (reproduce with TOA_SEED={seed})"))
}

fn adversarial(ctx: &mut Ctx, n: usize, seed: u64) -> TestResult {
    let mut rng = Rng(seed);
    let (p4, p6) = (ctx.port(), ctx.port());
    let listeners = [
        io(
            Sock::listen((Ipv4Addr::UNSPECIFIED, p4).into(), false),
            "listen",
        )?,
        io(
            Sock::listen((Ipv6Addr::UNSPECIFIED, p6).into(), false),
            "listen",
        )?,
    ];
    let before = Stats::read()?;
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let mut with_toa = 0i64;
    let result = std::thread::scope(|scope| {
        scope.spawn(|| serve_ids(&listeners, &stop, tx));
        let r = (|| {
            let mut id = 0u64;
            while (id as usize) < n {
                let batch = 32.min(n - id as usize);
                let mut conns = Vec::with_capacity(batch);
                let mut want = HashMap::new();
                for _ in 0..batch {
                    let wire = if rng.below(3) == 0 {
                        Family::V6
                    } else {
                        Family::V4
                    };
                    let af = if wire == Family::V6 || rng.below(2) == 0 {
                        Af::Inet6
                    } else {
                        Af::Inet
                    };
                    let mut opts = Options {
                        ack: tcp_options(&mut rng),
                        ..Options::default()
                    };
                    if rng.below(3) == 0 {
                        match wire {
                            Family::V4 => opts.ipv4 = ipv4_options(&mut rng),
                            Family::V6 => opts.ipv6_dstopts = ipv6_dstopts(&mut rng),
                        }
                    }
                    let port = if af == Af::Inet { p4 } else { p6 };
                    let mut c = Conn::new(&mut ctx.lb, wire, port, opts);
                    let toa = expected_toa(&c);
                    with_toa += i64::from(toa.is_some());
                    io(
                        c.connect(&mut ctx.lb, &[]),
                        &format!("connection {id}: handshake"),
                    )?;
                    io(c.send(&mut ctx.lb, &id.to_be_bytes()), "send")?;
                    want.insert(
                        id,
                        (
                            expected_peer(af, wire, c.sport, toa.as_ref()),
                            c.handshake_ack(),
                        ),
                    );
                    conns.push(c);
                    id += 1;
                }
                for _ in 0..batch {
                    let seen = rx
                        .recv_timeout(Duration::from_secs(20))
                        .map_err(|_| "a connection was never served".to_string())?;
                    let Some((peer, ack)) = want.remove(&seen.id) else {
                        return Err(format!("unknown connection id {}", seen.id));
                    };
                    let got = io(seen.peer, "getpeername")?;
                    check!(
                        got == peer,
                        "connection {}: getpeername {got}, want {peer}; ACK sent: {:02x?}",
                        seen.id,
                        ack.encode()
                    );
                }
                for c in &mut conns {
                    io(c.rst(&mut ctx.lb), "RST")?;
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        r
    });
    result?;
    println!(
        "# adversarial_connections: {n} connections in {:.1} s, {with_toa} with a TOA",
        started.elapsed().as_secs_f64()
    );
    drop(listeners);
    env::wait_all_freed()?;
    let d = delta(&before)?;
    check!(
        d["syn_recv_sock_toa"] + d["syn_recv_sock_no_toa"] == n as i64,
        "counted {d:?} for {n} connections"
    );
    check!(
        d["syn_recv_sock_toa"] == with_toa,
        "syn_recv_sock_toa +{}, want {with_toa}",
        d["syn_recv_sock_toa"]
    );
    check!(
        d["ip6_address_alloc"] == with_toa,
        "ip6_address_alloc +{}, want {with_toa}",
        d["ip6_address_alloc"]
    );
    Ok(())
}

/// The client of connection `id` in the unload test: unique per id (IPv4: the port; IPv6: the address).
fn client_of(id: u64, v6: bool) -> SocketAddr {
    if v6 {
        let mut b = CIP6.octets();
        b[8..].copy_from_slice(&id.to_be_bytes());
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), 1000 + (id % 60000) as u16)
    } else {
        SocketAddr::new(IpAddr::V4(CIP4), 1000 + (id % 60000) as u16)
    }
}

/// 100 unload/reload cycles while IPv4 and IPv6 TOA connections are accepted, queried (getpeername and
/// getsockopt from several threads) and closed. Each query answers either the connection's own client
/// (module loaded, entry present) or the kernel's own answer: never another connection's client. No
/// kernel report (the VM runner checks), and alloc == free at the end.
pub(crate) fn unload_under_load(ctx: &mut Ctx) -> TestResult {
    let cycles: usize = std::env::var("TOA_UNLOAD_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let port = ctx.port();
    let listener = io(
        Sock::listen((Ipv6Addr::UNSPECIFIED, port).into(), false),
        "listen",
    )?;
    let stop = AtomicBool::new(false);
    let live: Mutex<Vec<(u64, bool, Arc<Sock>)>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let (queries, connections) = (
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    );
    let fail = &|m: String| failures.lock().unwrap().push(m);
    let (mut unload_time, mut load_time) = (Duration::ZERO, Duration::ZERO);
    let lb = &mut ctx.lb;
    std::thread::scope(|scope| {
        // The load balancer: connections, alternately IPv4 and IPv6, each with its own client.
        scope.spawn(|| {
            let mut id = 0u64;
            let mut open: std::collections::VecDeque<Conn> = Default::default();
            while !stop.load(Ordering::Relaxed) {
                let v6 = id % 2 == 1;
                let c = client_of(id, v6);
                let opts = match c.ip() {
                    IpAddr::V4(a) => ack_opts(toa4(200, a, c.port())),
                    IpAddr::V6(a) => ack_opts(toa6(253, a, c.port())),
                };
                let mut conn = Conn::new(lb, if v6 { Family::V6 } else { Family::V4 }, port, opts);
                if let Err(e) = conn
                    .connect(lb, &[])
                    .and_then(|_| conn.send(lb, &id.to_be_bytes()))
                {
                    fail(format!("connection {id} not served: {e}"));
                    break;
                }
                connections.fetch_add(1, Ordering::Relaxed);
                open.push_back(conn);
                while open.len() > 48 {
                    let _ = open.pop_front().unwrap().rst(lb);
                }
                id += 1;
            }
            for mut c in open {
                let _ = c.rst(lb);
            }
        });
        // The server: accepts, reads the id, keeps the socket for the queriers.
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let Ok((sock, _)) = listener.accept(Duration::from_millis(100)) else {
                    continue;
                };
                let Ok(data) = sock.read_exact(8, WAIT) else {
                    continue;
                };
                let Ok(idb) = <[u8; 8]>::try_from(&data[..8.min(data.len())]) else {
                    continue;
                };
                let id = u64::from_be_bytes(idb);
                let mut l = live.lock().unwrap();
                l.push((id, id % 2 == 1, Arc::new(sock)));
                if l.len() > 32 {
                    l.remove(0); // closed here, maybe while another thread queries it
                }
            }
        });
        // Queriers: getpeername and getsockopt 4096 on live sockets, from two threads.
        for t in 0..2u64 {
            let (live, stop, queries) = (&live, &stop, &queries);
            scope.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let pick = {
                        let l = live.lock().unwrap();
                        if l.is_empty() {
                            None
                        } else {
                            Some(l[(i as usize) % l.len()].clone())
                        }
                    };
                    i += 1;
                    let Some((id, v6, sock)) = pick else {
                        // A poll's period: the list is looked at again, until `stop`.
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let client = client_of(id, v6);
                    let want_peer = if v6 {
                        client
                    } else {
                        SocketAddr::new(v4mapped(CIP4), client.port())
                    };
                    match sock.peer() {
                        Ok(p) if p == want_peer => {}
                        Ok(p) if p.ip() == lb_addr(Family::V6) || p.ip() == v4mapped(LB_V4) => {}
                        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
                        other => fail(format!(
                            "connection {id}: getpeername {other:?}, want {want_peer} or the LB"
                        )),
                    }
                    match (sock.toa_lookup(20), v6) {
                        (Ok((a, 20)), true) if a == client => {}
                        (Err(e), _)
                            if matches!(
                                e.raw_os_error(),
                                Some(
                                    libc::ENOENT
                                        | libc::ENOPROTOOPT
                                        | libc::ENOTCONN
                                        | libc::EAFNOSUPPORT
                                )
                            ) => {}
                        (other, _) => fail(format!("connection {id}: getsockopt 4096 {other:?}")),
                    }
                    queries.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // This thread: unload and reload.
        for cycle in 0..cycles {
            let t0 = Instant::now();
            let u = env::unload();
            let t1 = Instant::now();
            let l = u.and_then(|_| env::load(&[]));
            (unload_time, load_time) = (unload_time + (t1 - t0), load_time + t1.elapsed());
            if let Err(e) = l {
                fail(format!("reload cycle {cycle}: {e}"));
                break;
            }
            // Pacing, not a wait for state: the loaded module meets connections and queries each cycle.
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
    });
    live.lock().unwrap().clear();
    drop(listener);
    let per_cycle = |t: Duration| t.as_secs_f64() / cycles.max(1) as f64;
    println!(
        "# unload_under_load: {cycles} reloads (unload {:.2} s, load {:.2} s on average), {} connections, {} queries",
        per_cycle(unload_time),
        per_cycle(load_time),
        connections.load(Ordering::Relaxed),
        queries.load(Ordering::Relaxed)
    );
    let f = failures.into_inner().unwrap();
    check!(f.is_empty(), "{} failures, first: {}", f.len(), f[0]);
    check!(
        connections.load(Ordering::Relaxed) > cycles as u64,
        "too few connections during the reloads"
    );
    env::wait_all_freed()
}
