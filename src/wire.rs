// SPDX-License-Identifier: GPL-2.0

//! TOA wire formats: pure parsing of the option bytes a load balancer puts in a packet.
//!
//! This module has no kernel types and no `unsafe`: it is compiled into `toa.ko` and, unchanged, into the
//! host crate `toa-wire` (`crates/toa-wire`), where it is unit-tested and fuzzed. Every length read from a
//! packet is checked before it is used; nothing here can panic on any input.
//!
//! Formats (`docs/protocol.md` describes each; all multi-byte fields in network byte order, the port
//! before the address):
//!
//! | kind | len | payload after kind, len                    | sent by                                   |
//! |------|-----|--------------------------------------------|-------------------------------------------|
//! | 200  | 8   | cport(2) cip4(4)                           | Tencent CLB hybrid cloud                  |
//! | 254  | 8   | cport(2) cip4(4)                           | LVS FULLNAT, Huawei ELB, DPVS             |
//! | 253  | 8   | cport(2) cip4(4)                           | UCloud                                    |
//! | 254  | 20  | cport(2) cip6(16)                          | DPVS, Huawei ELB IPv6 branch              |
//! | 253  | 20  | cport(2) cip6(16)                          | Tencent CLB NAT64                         |
//! | 254  | 16  | cport(2) cip4(4) pad(2) vport(2) vip4(4)   | ByteDance (client and VIP)                |
//!
//! A (kind, len) pair that is not in the table is not a TOA: kinds 253 and 254 are also the RFC 4727
//! experimental kinds (Linux's own experimental TCP Fast Open option is 254 with len 4 + cookie), so such an
//! option is skipped like any unknown option, never treated as malformed.
//!
//! IP-level TOA (the IP-option TOA/UOA design, a load-balancer team's design unifying TOA and UOA),
//! client and VIP:
//!
//! | carrier                         | type | len    | bytes after type, len                            |
//! |---------------------------------|------|--------|--------------------------------------------------|
//! | IPv4 option                     | 31   | 16, 40 | operation(1) padding(1) cport vport cip vip      |
//! | IPv6 destination option (TLV)   | 31   | 12, 36 | cport vport cip vip                              |
//!
//! IPv4 lengths 16/40 (IPv6 option lengths 12/36) carry IPv4/IPv6 addresses; in the IPv4 option, bit 0 of
//! `operation` repeats the address family (0 = IPv4, 1 = IPv6) and must agree with the length.
//!
//! DPVS's UOA IPv4 option uses the same type with the client only, told apart by length:
//!
//! | carrier                         | type | len    | bytes after type, len                            |
//! |---------------------------------|------|--------|--------------------------------------------------|
//! | IPv4 option                     | 31   | 8, 20  | cport(2) caddr(4 or 16)                          |
//!
//! It is read only by the UDP scans ([`scan_udp_ipv4`], which report it as [`Origin::DpvsIpv4Option`], no
//! VIP); the TCP scans ([`scan_ipv4_options`], [`scan_ipv4_header`], [`scan_ip_header`]) skip it. DPVS has
//! no IPv6 option form: an IPv6 destination option 31 of optlen 6/18 (the same payload) is skipped by every
//! scan. Any other length of type 31 is malformed.
//!
//! UDP datagrams ([`scan_udp_ipv4`], [`scan_udp_ipv6`]) are read from the IP header on: the IP header with
//! its options or extension headers, then the UDP header (RFC 768), whose ports come first:
//! sport(2) dport(2) length(2) checksum(2), network byte order.

/// TCP option kind: end of option list (RFC 9293).
pub const TCPOPT_EOL: u8 = 0;
/// TCP option kind: no-operation, one byte (RFC 9293).
pub const TCPOPT_NOP: u8 = 1;
/// TCP option kind 200: Tencent CLB's client IPv4 address (tcpdump shows `unknown-200`).
pub const TCPOPT_TOA_TENCENT: u8 = 200;
/// TCP option kind 253: Tencent CLB's NAT64 client IPv6 address (tcpdump: `unknown-253`); IPv4 for UCloud.
pub const TCPOPT_TOA_NAT64: u8 = 253;
/// TCP option kind 254: LVS FULLNAT / Huawei ELB / DPVS client address (IPv4 or IPv6 by length).
pub const TCPOPT_TOA: u8 = 254;

/// Length of the fixed TCP header in bytes (RFC 9293), before the options.
pub const TCP_HEADER_LEN: usize = 20;

/// A client (or virtual) address as carried on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    /// IPv4 address, network byte order.
    V4([u8; 4]),
    /// IPv6 address, network byte order.
    V6([u8; 16]),
}

impl Addr {
    /// The address as 16 bytes: IPv6 as is, IPv4 as the IPv4-mapped IPv6 address `::ffff:a.b.c.d`
    /// (RFC 4291 section 2.5.5.2), which is what an `AF_INET6` socket reports for an IPv4 peer.
    pub fn to_v6_mapped(self) -> [u8; 16] {
        match self {
            Addr::V6(a) => a,
            Addr::V4(a) => {
                // One 16-byte value, not 16 byte stores: the UDP receive path builds these per datagram.
                // Little-endian, so that it is a plain store on the (little-endian) machines toa runs on:
                // bytes 10 and 11 are 0xff, bytes 12 to 15 the address.
                let mapped = (u128::from(u32::from_le_bytes(a)) << 96) | (0xffff_u128 << 80);
                mapped.to_le_bytes()
            }
        }
    }

    /// The address 16 bytes hold: IPv4 when they are an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`),
    /// else IPv6; the inverse of [`Addr::to_v6_mapped`].
    #[inline]
    pub fn from_v6_mapped(a: [u8; 16]) -> Addr {
        // One 128-bit test of the prefix (bytes 0 to 11), not twelve byte tests; little-endian, so that
        // no byte is swapped.
        let v = u128::from_le_bytes(a);
        if v << 32 == 0xffff_u128 << 112 {
            Addr::V4(((v >> 96) as u32).to_le_bytes())
        } else {
            Addr::V6(a)
        }
    }
}

/// An address and a port, the port in host byte order (converted from network order while parsing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub addr: Addr,
    /// The port, host byte order.
    pub port: u16,
}

/// Where a TOA was found: which option format carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A TCP option of this kind (200, 253 or 254).
    TcpOption(u8),
    /// IPv4 option 31 (the IP-option TOA/UOA design).
    Ipv4Option,
    /// Option 31 of an IPv6 destination-options header (the IP-option TOA/UOA design).
    Ipv6DestOption,
    /// DPVS's UOA IPv4 option: option 31 of length 8 (cport, IPv4 caddr) or 20 (cport, IPv6 caddr), no
    /// VIP. Read only by [`scan_udp_ipv4`]; the TCP scans skip it.
    DpvsIpv4Option,
}

/// What a TOA tells about a connection: the real client, and the virtual address the client connected to
/// when the format carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Toa {
    /// The real client address and port (CIP, cport).
    pub client: Endpoint,
    /// The load balancer's virtual address and port (VIP, vport), when the format carries it.
    pub vip: Option<Endpoint>,
    /// The format that carried it.
    pub origin: Origin,
}

/// Why an option list was rejected as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A TCP header whose data offset is below 5 words or beyond the bytes given.
    BadDataOffset,
    /// An option's kind byte is the last byte: its length byte is missing.
    MissingLength,
    /// An option's length is below 2 (it would not cover its own kind and length bytes).
    LengthTooShort,
    /// An option's length runs past the end of the option space.
    Truncated,
    /// An IP header (or extension header) whose length fields do not fit the bytes given.
    BadIpHeader,
    /// An IP option 31 whose length is neither a TOA's nor a UOA's.
    BadToaLength,
    /// An IPv4 option 31 whose `operation` family bit disagrees with its length.
    FamilyBitMismatch,
}

/// The result of scanning the options of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Well-formed, and no TOA in it.
    NoToa,
    /// Well-formed, with this TOA (the first one, when several are present).
    Found(Toa),
    /// Malformed: ignored as a whole, even if a TOA came before the error.
    Malformed(Malformed),
}

/// Reads a big-endian u16 at `at`; `None` when it would run past `b`.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    let hi = *b.get(at)?;
    let lo = *b.get(at.checked_add(1)?)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// Copies `N` bytes starting at `at`; `None` when they would run past `b`.
fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    b.get(at..end)?.try_into().ok()
}

/// Decodes one TCP option given its whole bytes (`opt[0]` = kind, `opt[1]` = len == `opt.len()`).
/// Returns `None` when (kind, len) is not a TOA format of the table in the module docs.
fn decode_tcp_toa(opt: &[u8]) -> Option<Toa> {
    let kind = *opt.first()?;
    let port = be16(opt, 2)?;
    let origin = Origin::TcpOption(kind);
    let (client, vip) = match (kind, opt.len()) {
        (TCPOPT_TOA_TENCENT | TCPOPT_TOA_NAT64 | TCPOPT_TOA, 8) => (
            Endpoint {
                addr: Addr::V4(array(opt, 4)?),
                port,
            },
            None,
        ),
        (TCPOPT_TOA_NAT64 | TCPOPT_TOA, 20) => (
            Endpoint {
                addr: Addr::V6(array(opt, 4)?),
                port,
            },
            None,
        ),
        (TCPOPT_TOA, 16) => (
            Endpoint {
                addr: Addr::V4(array(opt, 4)?),
                port,
            },
            Some(Endpoint {
                addr: Addr::V4(array(opt, 12)?),
                port: be16(opt, 10)?,
            }),
        ),
        _ => return None,
    };
    Some(Toa {
        client,
        vip,
        origin,
    })
}

/// Scans a TCP option list (the bytes after the 20-byte fixed header, `doff * 4 - 20` of them).
///
/// Walks every option: EOL ends the list, NOP is one byte, every other option must have a length byte
/// of at least 2 that stays inside `opts`. The first TOA wins; any structural error rejects the whole
/// list, TOA included, as the kernel's own option parser stops trusting a list at the first bad length.
pub fn scan_tcp_options(opts: &[u8]) -> Scan {
    walk_tlv(opts, &[TCPOPT_NOP], Some(TCPOPT_EOL), true, |_, opt| {
        decode_tcp_toa(opt).map(Scan::Found)
    })
}

/// Scans a whole TCP header (fixed part and options), as found at the skb's transport header.
///
/// The data offset (high nibble of byte 12, in 32-bit words) must be at least 5 and cover no more than
/// `header`; the options are then scanned with [`scan_tcp_options`].
pub fn scan_tcp_header(header: &[u8]) -> Scan {
    let Some(&off) = header.get(12) else {
        return Scan::Malformed(Malformed::BadDataOffset);
    };
    let doff = usize::from(off >> 4) * 4;
    if doff < TCP_HEADER_LEN {
        return Scan::Malformed(Malformed::BadDataOffset);
    }
    match header.get(TCP_HEADER_LEN..doff) {
        Some(opts) => scan_tcp_options(opts),
        None => Scan::Malformed(Malformed::BadDataOffset),
    }
}

impl core::fmt::Display for Addr {
    /// Dotted quad for IPv4, RFC 5952 text for IPv6.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Addr::V4(a) => core::net::Ipv4Addr::from(a).fmt(f),
            Addr::V6(a) => core::net::Ipv6Addr::from(a).fmt(f),
        }
    }
}

impl core::fmt::Display for Endpoint {
    /// `a.b.c.d:port` or `[v6]:port`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.addr {
            Addr::V4(_) => write!(f, "{}:{}", self.addr, self.port),
            Addr::V6(_) => write!(f, "[{}]:{}", self.addr, self.port),
        }
    }
}

/// IPv4 option type and IPv6 destination option type of the IP-level TOA (the IP-option TOA/UOA
/// design); also the type of DPVS's UOA IPv4 option.
pub const IPOPT_TOA: u8 = 31;
/// IPv4 option: end of option list (RFC 791).
pub const IPOPT_EOL: u8 = 0;
/// IPv4 option: no operation (RFC 791).
pub const IPOPT_NOP: u8 = 1;
/// IPv6 TLV option: one byte of padding (RFC 8200).
pub const IPV6_OPT_PAD1: u8 = 0;
/// IPv6 next header: hop-by-hop options.
pub const NEXTHDR_HOP: u8 = 0;
/// IPv6 next header: routing header.
pub const NEXTHDR_ROUTING: u8 = 43;
/// IPv6 next header: fragment header (8 bytes).
pub const NEXTHDR_FRAGMENT: u8 = 44;
/// IPv6 next header: destination options.
pub const NEXTHDR_DEST: u8 = 60;

/// Decodes `cport vport cip vip` (`v6`: 16-byte addresses, else 4-byte ones).
fn decode_ip_toa(body: &[u8], v6: bool, origin: Origin) -> Option<Toa> {
    let cport = be16(body, 0)?;
    let vport = be16(body, 2)?;
    let (cip, vip) = if v6 {
        (Addr::V6(array(body, 4)?), Addr::V6(array(body, 20)?))
    } else {
        (Addr::V4(array(body, 4)?), Addr::V4(array(body, 8)?))
    };
    Some(Toa {
        client: Endpoint {
            addr: cip,
            port: cport,
        },
        vip: Some(Endpoint {
            addr: vip,
            port: vport,
        }),
        origin,
    })
}

/// The options of a type-length-value list, in order, each as `(type, whole option)`; a structural
/// error ends the list with `Err` (see [`walk_tlv`] for the layout parameters).
struct Tlv<'a> {
    /// The option list.
    opts: &'a [u8],
    /// Where the next option starts.
    at: usize,
    /// The one-byte types.
    single: &'a [u8],
    /// The type that ends the list, if any.
    end: Option<u8>,
    /// Whether the length byte counts the type and length bytes.
    len_covers_header: bool,
}

impl<'a> Iterator for Tlv<'a> {
    type Item = Result<(u8, &'a [u8]), Malformed>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let kind = loop {
            let kind = *self.opts.get(self.at)?;
            if Some(kind) == self.end {
                return None;
            }
            if !self.single.contains(&kind) {
                break kind;
            }
            self.at += 1;
        };
        let i = self.at;
        // After an error, the list ends.
        self.at = self.opts.len();
        let Some(&len) = self.opts.get(i + 1) else {
            return Some(Err(Malformed::MissingLength));
        };
        let total = if self.len_covers_header {
            usize::from(len)
        } else {
            usize::from(len) + 2
        };
        if total < 2 {
            return Some(Err(Malformed::LengthTooShort));
        }
        // `i < opts.len()` and `total <= 257`: no overflow.
        let Some(opt) = self.opts.get(i..i + total) else {
            return Some(Err(Malformed::Truncated));
        };
        self.at = i + total;
        Some(Ok((kind, opt)))
    }
}

/// Walks type-length-value options: `single` is the one-byte kind (EOL/NOP for IPv4, Pad1 for IPv6),
/// `end` the kind that ends the list (EOL for IPv4), `len_covers_header` whether the length byte counts
/// the type and length bytes (IPv4) or only the data (IPv6). Calls `f(type, whole option)` for each
/// option until `f` returns `Some`; after a TOA the rest of the list is still checked for structure.
fn walk_tlv(
    opts: &[u8],
    single: &[u8],
    end: Option<u8>,
    len_covers_header: bool,
    mut f: impl FnMut(u8, &[u8]) -> Option<Scan>,
) -> Scan {
    let mut options = Tlv {
        opts,
        at: 0,
        single,
        end,
        len_covers_header,
    };
    while let Some(option) = options.next() {
        let (kind, opt) = match option {
            Ok(option) => option,
            Err(m) => return Scan::Malformed(m),
        };
        match f(kind, opt) {
            Some(Scan::Malformed(m)) => return Scan::Malformed(m),
            Some(Scan::Found(t)) => {
                // The first TOA wins, if the rest of the list is well-formed.
                return match options.find_map(Result::err) {
                    Some(m) => Scan::Malformed(m),
                    None => Scan::Found(t),
                };
            }
            _ => {}
        }
    }
    Scan::NoToa
}

/// Decodes DPVS's UOA IPv4 option given its whole bytes (`opt[0]` = 31, `opt[1]` = len == `opt.len()`):
/// `cport(2) caddr(4)` for len 8, `cport(2) caddr(16)` for len 20, network byte order; no VIP.
fn decode_dpvs_uoa(opt: &[u8]) -> Option<Toa> {
    let port = be16(opt, 2)?;
    let addr = match opt.len() {
        8 => Addr::V4(array(opt, 4)?),
        20 => Addr::V6(array(opt, 4)?),
        _ => return None,
    };
    Some(Toa {
        client: Endpoint { addr, port },
        vip: None,
        origin: Origin::DpvsIpv4Option,
    })
}

/// The IPv4 option walker of the TCP scans (`dpvs` false: option 31 of len 8/20 is skipped) and of the
/// UDP scans (`dpvs` true: it is read as DPVS's UOA IPv4 option).
fn scan_ipv4_options_mode(opts: &[u8], dpvs: bool) -> Scan {
    walk_tlv(opts, &[IPOPT_NOP], Some(IPOPT_EOL), true, |kind, opt| {
        if kind != IPOPT_TOA {
            return None;
        }
        let v6 = match opt.len() {
            16 => false,
            40 => true,
            // DPVS's UOA IPv4 option: cport + caddr, no VIP.
            8 | 20 if dpvs => return decode_dpvs_uoa(opt).map(Scan::Found),
            8 | 20 => return None,
            _ => return Some(Scan::Malformed(Malformed::BadToaLength)),
        };
        let operation = *opt.get(2)?;
        if (operation & 1 == 1) != v6 {
            return Some(Scan::Malformed(Malformed::FamilyBitMismatch));
        }
        decode_ip_toa(opt.get(4..)?, v6, Origin::Ipv4Option).map(Scan::Found)
    })
}

/// Scans IPv4 options (the bytes after the 20-byte fixed header, `ihl * 4 - 20` of them) for option 31,
/// for a TCP segment.
///
/// Walks every option (EOL ends the list, NOP is one byte, every other length must be at least 2 and
/// stay inside `opts`); the first TOA wins; a structural error or a malformed option 31 rejects the list.
/// DPVS's UOA IPv4 option (len 8/20) is skipped: DPVS sends it on UDP only (see [`scan_udp_ipv4`]).
pub fn scan_ipv4_options(opts: &[u8]) -> Scan {
    scan_ipv4_options_mode(opts, false)
}

/// Scans a whole IPv4 header (fixed part and options), from the skb's network header to its transport
/// header, of a TCP segment: the options are scanned with [`scan_ipv4_options`].
pub fn scan_ipv4_header(header: &[u8]) -> Scan {
    let Some(&vihl) = header.first() else {
        return Scan::Malformed(Malformed::BadIpHeader);
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Scan::Malformed(Malformed::BadIpHeader);
    }
    match header.get(20..ihl) {
        Some(opts) => scan_ipv4_options(opts),
        None => Scan::Malformed(Malformed::BadIpHeader),
    }
}

/// Scans one IPv6 destination-options header (next header, header length in 8-byte units beyond the
/// first 8, then TLV options) for option 31. Pad1 and PadN are walked like any option; the first TOA wins.
pub fn scan_ipv6_dstopts(header: &[u8]) -> Scan {
    let Some(&hdrlen) = header.get(1) else {
        return Scan::Malformed(Malformed::BadIpHeader);
    };
    let len = (usize::from(hdrlen) + 1) * 8;
    let Some(opts) = header.get(2..len) else {
        return Scan::Malformed(Malformed::BadIpHeader);
    };
    walk_tlv(opts, &[IPV6_OPT_PAD1], None, false, |kind, opt| {
        if kind != IPOPT_TOA {
            return None;
        }
        let v6 = match opt.len() - 2 {
            12 => false,
            36 => true,
            6 | 18 => return None, // DPVS UOA: cport + caddr, not a TOA
            _ => return Some(Scan::Malformed(Malformed::BadToaLength)),
        };
        decode_ip_toa(opt.get(2..)?, v6, Origin::Ipv6DestOption).map(Scan::Found)
    })
}

/// Scans the IPv6 header and its extension headers (the bytes from the skb's network header to its
/// transport header) for a destination-options TOA. Hop-by-hop, routing and fragment headers are
/// skipped; every destination-options header is scanned; the first TOA wins.
pub fn scan_ipv6_headers(packet: &[u8]) -> Scan {
    if packet.first().map(|b| b >> 4) != Some(6) {
        return Scan::Malformed(Malformed::BadIpHeader);
    }
    let Some(&first) = packet.get(6) else {
        return Scan::Malformed(Malformed::BadIpHeader);
    };
    let mut next = first;
    let mut off = 40usize;
    loop {
        let len = match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => match packet.get(off + 1) {
                Some(&l) => (usize::from(l) + 1) * 8,
                None => return Scan::Malformed(Malformed::BadIpHeader),
            },
            NEXTHDR_FRAGMENT => 8,
            _ => return Scan::NoToa,
        };
        // `off` only grows by at most 2048 per header inside a slice: no overflow.
        let Some(header) = packet.get(off..off + len) else {
            return Scan::Malformed(Malformed::BadIpHeader);
        };
        if next == NEXTHDR_DEST {
            let scan = scan_ipv6_dstopts(header);
            if scan != Scan::NoToa {
                return scan;
            }
        }
        next = header[0];
        off += len;
    }
}

/// Scans an IPv4 header (with options) or an IPv6 header (with extension headers) of a TCP segment, by its
/// version, for an IP-level TOA: [`scan_ipv4_header`] or [`scan_ipv6_headers`]. UDP datagrams are read
/// with [`scan_udp_ipv4`] and [`scan_udp_ipv6`].
pub fn scan_ip_header(header: &[u8]) -> Scan {
    match header.first().map(|b| b >> 4) {
        Some(4) => scan_ipv4_header(header),
        Some(6) => scan_ipv6_headers(header),
        _ => Scan::Malformed(Malformed::BadIpHeader),
    }
}

/// The source address of an IPv4 or IPv6 header (the bytes from the network header on); `None` when
/// the header is too short or of another version.
pub fn ip_source(header: &[u8]) -> Option<Addr> {
    match header.first()? >> 4 {
        4 => Some(Addr::V4(array(header, 12)?)),
        6 => Some(Addr::V6(array(header, 8)?)),
        _ => None,
    }
}

/// IPv4 protocol number and IPv6 next-header value of UDP (RFC 768).
pub const IPPROTO_UDP: u8 = 17;

/// A UDP datagram's ports and the IP-level TOA/UOA its IP header carries, as read by [`scan_udp_ipv4`]
/// and [`scan_udp_ipv6`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram {
    /// The UDP source port, host byte order (converted from the network-order UDP header).
    pub sport: u16,
    /// The UDP destination port, host byte order.
    pub dport: u16,
    /// The scan of the IP options (IPv4) or destination options (IPv6): the IP-option TOA/UOA design's
    /// option 31 (client and VIP), or, for IPv4 only, DPVS's UOA IPv4 option (client only).
    pub scan: Scan,
}

/// The UDP source and destination ports of the UDP header starting at `at` (host byte order); `None`
/// when those 4 bytes are not all inside `packet`.
fn udp_ports(packet: &[u8], at: usize) -> Option<(u16, u16)> {
    let [s0, s1, d0, d1] = array(packet, at)?;
    Some((u16::from_be_bytes([s0, s1]), u16::from_be_bytes([d0, d1])))
}

/// Reads an IPv4 UDP datagram from its IP header on (the skb's network header; `packet` may end anywhere
/// after the UDP ports): its ports, and the IP-level TOA/UOA of its options.
///
/// `None` unless it is a UDP datagram whose UDP ports are inside `packet`: version 4, ihl of at least 5
/// words, protocol (byte 9) [`IPPROTO_UDP`], fragment offset (low 13 bits of bytes 6-7) zero (a later
/// fragment has no UDP header), and the 4 port bytes at `ihl * 4` given. The options are scanned like
/// [`scan_ipv4_options`] does, except that DPVS's UOA IPv4 option (len 8/20) is read, as a client without
/// VIP ([`Origin::DpvsIpv4Option`]); no options (ihl 5) is [`Scan::NoToa`].
pub fn scan_udp_ipv4(packet: &[u8]) -> Option<UdpDatagram> {
    let vihl = *packet.first()?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || *packet.get(9)? != IPPROTO_UDP {
        return None;
    }
    if be16(packet, 6)? & 0x1fff != 0 {
        return None;
    }
    let (sport, dport) = udp_ports(packet, ihl)?;
    let scan = scan_ipv4_options_mode(packet.get(20..ihl)?, true);
    Some(UdpDatagram { sport, dport, scan })
}

/// Reads an IPv6 UDP datagram from its IP header on (the skb's network header; `packet` may end anywhere
/// after the UDP ports): its ports, and the IP-level TOA/UOA of its destination-options headers.
///
/// The extension headers are walked from the next header of the fixed header (byte 6) like
/// [`scan_ipv6_headers`] walks them: hop-by-hop, routing and fragment (8 bytes) headers are skipped,
/// every destination-options header is scanned with [`scan_ipv6_dstopts`] until one is not
/// [`Scan::NoToa`] (the first TOA wins; a malformed one makes the scan malformed). `None` unless the
/// chain ends in [`IPPROTO_UDP`] with the 4 UDP port bytes inside `packet`: another upper-layer protocol,
/// an extension header running past `packet`, or a fragment header with a non-zero fragment offset (a
/// later fragment has no UDP header) is `None`.
pub fn scan_udp_ipv6(packet: &[u8]) -> Option<UdpDatagram> {
    if packet.first()? >> 4 != 6 {
        return None;
    }
    let mut next = *packet.get(6)?;
    let mut off = 40usize;
    let mut scan = Scan::NoToa;
    loop {
        let len = match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                (usize::from(*packet.get(off.checked_add(1)?)?) + 1) * 8
            }
            NEXTHDR_FRAGMENT => 8,
            IPPROTO_UDP => {
                let (sport, dport) = udp_ports(packet, off)?;
                return Some(UdpDatagram { sport, dport, scan });
            }
            _ => return None,
        };
        let end = off.checked_add(len)?;
        let header = packet.get(off..end)?;
        match next {
            NEXTHDR_DEST if scan == Scan::NoToa => scan = scan_ipv6_dstopts(header),
            // Fragment offset: the high 13 bits of bytes 2-3.
            NEXTHDR_FRAGMENT if be16(header, 2)? & 0xfff8 != 0 => return None,
            _ => {}
        }
        next = *header.first()?;
        off = end;
    }
}
