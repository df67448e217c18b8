//! A load-balancer emulator for toa's tests and demo.
//!
//! It plays the load balancer of a layer-4 SNAT/NAT64 deployment through a TUN device: the kernel under
//! test sees real IPv4/IPv6 TCP packets arriving from the load balancer's address, and its replies come
//! back through the same device. A [`Conn`] completes a real three-way handshake with a listening
//! socket, puts chosen option bytes in the ACK that completes it (or in the SYN, a data segment, an IPv4
//! option or an IPv6 destination-options header), sends data, and closes with FIN or RST. UDP datagrams
//! ([`packet::Datagram`], sent with [`Lb::send_udp`]) carry option bytes in an IPv4 option or an IPv6
//! destination-options header; the kernel's replies to them (echoes, ICMP) are read and passed over like
//! any packet that is not TCP.
//!
//! Everything is bounded in time: every wait has a timeout, a lost SYN is sent again, retransmitted
//! SYN-ACKs are answered again, so a test never hangs. Addresses are documentation prefixes
//! (192.0.2.0/24, 2001:db8::/32) on a TUN device inside the test VM: nothing leaves the machine.

pub mod packet;
pub mod tun;

use packet::{Datagram, Family, Segment, Tcp};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The server's (kernel under test) IPv4 address on the TUN link.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The load balancer's IPv4 address (the SNAT address the kernel sees as peer).
pub const LB_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The server's IPv6 address.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The load balancer's IPv6 address.
pub const LB_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// How long to wait for any one reply from the kernel before giving up (or retransmitting a SYN).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times a SYN is sent before the handshake fails.
pub const SYN_TRIES: u32 = 4;

/// The emulated load balancer: owns the TUN device and sorts the kernel's replies by connection.
pub struct Lb {
    tun: tun::Tun,
    /// Segments read for another connection than the one being waited on, by LB-side port.
    pending: HashMap<u16, VecDeque<Segment>>,
    next_port: u16,
    /// How many times the port counter wrapped: part of each connection's initial sequence number, so
    /// that a port's next connection starts after its earlier one (the server may hold it in
    /// TIME_WAIT) and the earlier one's late segments never match it.
    wraps: u32,
}

impl Lb {
    /// Creates the TUN device `name`, brings it up with the server addresses (the kernel's side) and
    /// routes 192.0.2.0/24 and 2001:db8::/64 through it.
    pub fn new(name: &str) -> io::Result<Lb> {
        let tun = tun::Tun::create(name)?;
        tun::configure(name)?;
        Ok(Lb {
            tun,
            pending: HashMap::new(),
            next_port: 20000,
            wraps: 0,
        })
    }

    /// A fresh LB-side source port for the next connection. Ports cycle through 20000..=60000; when one
    /// comes round again, the segments still queued for its earlier connection (an RST the kernel sent
    /// when that connection was aborted, say) are dropped, or the new connection would read them as
    /// its own.
    pub fn port(&mut self) -> u16 {
        self.next_port = if self.next_port >= 60000 {
            self.wraps = self.wraps.wrapping_add(1);
            20000
        } else {
            self.next_port + 1
        };
        self.pending.remove(&self.next_port);
        self.next_port
    }

    /// Sends one segment to the kernel. IPv4 and TCP options are limited to 40 bytes each by their
    /// headers' length fields: more is refused (`InvalidInput`) rather than sent wrong.
    pub fn send(&mut self, seg: &Segment) -> io::Result<()> {
        if seg.ipv4_options.len() > 40 || seg.tcp.options.len() > 40 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more than 40 bytes of IPv4 or TCP options",
            ));
        }
        self.tun.write(&seg.encode())
    }

    /// Sends one UDP datagram to the kernel, from whatever address and port it names (a flow is its
    /// addresses and ports: no state is kept here). Refused like [`Lb::send`] when the IPv4 options
    /// exceed 40 bytes. The kernel's replies (an echo, ICMP) are read and passed over by [`Lb::recv`]
    /// and [`Lb::drain`] like any packet that is not TCP.
    pub fn send_udp(&mut self, d: &Datagram) -> io::Result<()> {
        if d.ipv4_options.len() > 40 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more than 40 bytes of IPv4 options",
            ));
        }
        self.tun.write(&d.encode())
    }

    /// Waits for the next segment the kernel sends to LB-side port `port`, up to `timeout`.
    pub fn recv(&mut self, port: u16, timeout: Duration) -> io::Result<Option<Segment>> {
        if let Some(seg) = self.pending.get_mut(&port).and_then(VecDeque::pop_front) {
            return Ok(Some(seg));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let Some(raw) = self.tun.read(left)? else {
                return Ok(None);
            };
            let Some(seg) = Segment::decode(&raw) else {
                continue;
            };
            if seg.tcp.dport == port {
                return Ok(Some(seg));
            }
            let q = self.pending.entry(seg.tcp.dport).or_default();
            if q.len() < 64 {
                q.push_back(seg);
            }
        }
    }

    /// Reads and drops every segment the kernel sends until none has come for `quiet` (the RSTs of
    /// connections aborted in bulk, say), and everything queued so far; returns how many were dropped.
    pub fn drain(&mut self, quiet: Duration) -> io::Result<usize> {
        let mut n = self.pending.drain().map(|(_, q)| q.len()).sum();
        while self.tun.read(quiet)?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// Drops every segment read so far for `port`.
    pub fn forget(&mut self, port: u16) {
        self.pending.remove(&port);
    }
}

/// Where the TOA bytes of a connection go.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// TCP option bytes of the SYN (after MSS).
    pub syn: Vec<u8>,
    /// TCP option bytes of the ACK that completes the handshake.
    pub ack: Vec<u8>,
    /// TCP option bytes of the first data segment.
    pub data: Vec<u8>,
    /// IPv4 option bytes of the ACK (and of the SYN when `ip_on_syn`), padded to 4 bytes with EOL.
    pub ipv4: Vec<u8>,
    /// IPv6 destination-options header (whole header bytes) of the ACK (and SYN when `ip_on_syn`).
    pub ipv6_dstopts: Vec<u8>,
    /// Also put the IP-level options on the SYN.
    pub ip_on_syn: bool,
}

/// One emulated client connection, seen from the load balancer.
pub struct Conn {
    /// Address family on the wire.
    pub family: Family,
    /// The LB-side source port.
    pub sport: u16,
    /// The server port.
    pub dport: u16,
    opts: Options,
    /// Next sequence number to send.
    snd_nxt: u32,
    /// Next sequence number expected from the kernel.
    rcv_nxt: u32,
}

impl Conn {
    /// A connection from the load balancer to `dport` on the server, not yet started.
    pub fn new(lb: &mut Lb, family: Family, dport: u16, opts: Options) -> Conn {
        let sport = lb.port();
        let iss = 0x1000_0000u32
            .wrapping_add(u32::from(sport).wrapping_mul(7919))
            .wrapping_add(lb.wraps.wrapping_mul(0x0100_0000));
        Conn {
            family,
            sport,
            dport,
            opts,
            snd_nxt: iss,
            rcv_nxt: 0,
        }
    }

    fn addrs(&self) -> (IpAddr, IpAddr) {
        match self.family {
            Family::V4 => (IpAddr::V4(LB_V4), IpAddr::V4(SERVER_V4)),
            Family::V6 => (IpAddr::V6(LB_V6), IpAddr::V6(SERVER_V6)),
        }
    }

    fn segment(
        &self,
        flags: u8,
        seq: u32,
        options: &[u8],
        payload: &[u8],
        ip_opts: bool,
    ) -> Segment {
        let (src, dst) = self.addrs();
        Segment {
            src,
            dst,
            ipv4_options: if ip_opts {
                self.opts.ipv4.clone()
            } else {
                Vec::new()
            },
            ipv6_dstopts: if ip_opts {
                self.opts.ipv6_dstopts.clone()
            } else {
                Vec::new()
            },
            tcp: Tcp {
                sport: self.sport,
                dport: self.dport,
                seq,
                ack: if flags & Tcp::ACK != 0 {
                    self.rcv_nxt
                } else {
                    0
                },
                flags,
                window: 65535,
                options: options.to_vec(),
                payload: payload.to_vec(),
            },
        }
    }

    /// Completes the three-way handshake; `syn_data` rides on the SYN (TCP Fast Open). The SYN is sent
    /// again when no SYN-ACK comes; a retransmitted SYN-ACK is answered again.
    pub fn connect(&mut self, lb: &mut Lb, syn_data: &[u8]) -> io::Result<()> {
        let mut syn_opts = vec![2, 4, 0x05, 0xb4]; // MSS 1460
        syn_opts.extend_from_slice(&self.opts.syn);
        let syn = self.segment(
            Tcp::SYN,
            self.snd_nxt,
            &syn_opts,
            syn_data,
            self.opts.ip_on_syn,
        );
        for _ in 0..SYN_TRIES {
            lb.send(&syn)?;
            let deadline = Instant::now() + REPLY_TIMEOUT;
            while let Some(seg) = lb.recv(
                self.sport,
                deadline.saturating_duration_since(Instant::now()),
            )? {
                let t = &seg.tcp;
                if t.flags & Tcp::RST != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "RST in reply to SYN",
                    ));
                }
                if t.flags & (Tcp::SYN | Tcp::ACK) == Tcp::SYN | Tcp::ACK {
                    let syn_len = 1 + syn_data.len() as u32;
                    if t.ack != self.snd_nxt.wrapping_add(1)
                        && t.ack != self.snd_nxt.wrapping_add(syn_len)
                    {
                        continue;
                    }
                    self.snd_nxt = t.ack;
                    self.rcv_nxt = t.seq.wrapping_add(1);
                    let ack =
                        self.segment(Tcp::ACK, self.snd_nxt, &self.opts.ack.clone(), &[], true);
                    return lb.send(&ack);
                }
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no SYN-ACK"))
    }

    /// The ACK that completes the handshake, as [`Conn::connect`] sends it (IP-level options and TCP
    /// options included; sequence numbers as of now).
    pub fn handshake_ack(&self) -> Segment {
        self.segment(Tcp::ACK, self.snd_nxt, &self.opts.ack, &[], true)
    }

    /// Sends `data` in one segment (carrying `Options::data` as TCP options).
    pub fn send(&mut self, lb: &mut Lb, data: &[u8]) -> io::Result<()> {
        let seg = self.segment(
            Tcp::ACK | Tcp::PSH,
            self.snd_nxt,
            &self.opts.data.clone(),
            data,
            false,
        );
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
        lb.send(&seg)
    }

    /// Resets the connection.
    pub fn rst(&mut self, lb: &mut Lb) -> io::Result<()> {
        let seg = self.segment(Tcp::RST | Tcp::ACK, self.snd_nxt, &[], &[], false);
        lb.forget(self.sport);
        lb.send(&seg)
    }

    /// Sends FIN (the load balancer closes first); the server then reads end-of-file.
    pub fn fin(&mut self, lb: &mut Lb) -> io::Result<()> {
        let seg = self.segment(Tcp::FIN | Tcp::ACK, self.snd_nxt, &[], &[], false);
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        lb.send(&seg)
    }

    /// Waits for the server's FIN (after the server application closed) and acknowledges it, so the
    /// server socket leaves LAST_ACK/FIN_WAIT and is destroyed. Data segments are acknowledged on the way.
    pub fn await_server_fin(&mut self, lb: &mut Lb, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while let Some(seg) = lb.recv(
            self.sport,
            deadline.saturating_duration_since(Instant::now()),
        )? {
            let t = &seg.tcp;
            if t.flags & Tcp::RST != 0 {
                return Ok(());
            }
            let len = t.payload.len() as u32 + u32::from(t.flags & Tcp::FIN != 0);
            if len > 0 && t.seq == self.rcv_nxt {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(len);
            }
            if len > 0 {
                let ack = self.segment(Tcp::ACK, self.snd_nxt, &[], &[], false);
                lb.send(&ack)?;
            }
            if t.flags & Tcp::FIN != 0 {
                lb.forget(self.sport);
                return Ok(());
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no FIN from the server",
        ))
    }
}
