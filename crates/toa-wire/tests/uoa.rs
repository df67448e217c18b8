//! Unit tests of the UDP path (UOA): DPVS's UOA IPv4 option read by the UDP-mode scan (and skipped by
//! the TCP scans), and whole IPv4 / IPv6 UDP datagrams ([`scan_udp_ipv4`], [`scan_udp_ipv6`]).

mod common;

use common::*;
use toa_wire::*;

/// The client port of every option here (0x9c41).
const CPORT: u16 = 40001;
/// The UDP ports of every datagram here.
const SPORT: u16 = 5353;
const DPORT: u16 = 53;

/// DPVS's UOA IPv4 option: 31, len 8 (IPv4 client) or 20 (IPv6 client), cport, caddr.
fn dpvs(v6: bool) -> Vec<u8> {
    let mut o = vec![31, if v6 { 20 } else { 8 }, 0x9c, 0x41];
    if v6 {
        o.extend_from_slice(&CIP6);
    } else {
        o.extend_from_slice(&CIP4);
    }
    o
}

/// A UDP header (ports SPORT, DPORT) and 4 bytes of payload.
fn udp() -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&SPORT.to_be_bytes());
    u.extend_from_slice(&DPORT.to_be_bytes());
    u.extend_from_slice(&12u16.to_be_bytes());
    u.extend_from_slice(&[0, 0, b'p', b'i', b'n', b'g']);
    u
}

/// An IPv4 datagram of protocol `proto` with `opts` (padded with EOL to 4 bytes) and a UDP header.
fn ipv4(opts: &[u8], proto: u8) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(0);
    }
    assert!(o.len() <= 40, "IPv4 options are at most 40 bytes");
    let ihl = (20 + o.len()) / 4;
    let total = (20 + o.len() + udp().len()) as u16;
    let mut p = vec![0x40 | ihl as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&[192, 0, 2, 2, 192, 0, 2, 1]);
    p.extend(o);
    p.extend(udp());
    p
}

/// A destination-options (or hop-by-hop) header of next header `next` around `tlvs`, padded to 8 bytes
/// with PadN (or Pad1).
fn opts_header(next: u8, tlvs: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(tlvs);
    match (8 - h.len() % 8) % 8 {
        0 => {}
        1 => h.push(0),
        n => {
            h.push(1);
            h.push((n - 2) as u8);
            h.extend(std::iter::repeat_n(0, n - 2));
        }
    }
    h[1] = (h.len() / 8 - 1) as u8;
    h
}

/// A fragment header of next header `next`, fragment offset `offset` (8-byte units), M flag set.
fn fragment(next: u8, offset: u16) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | 1).to_be_bytes());
    h.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    h
}

/// An IPv6 packet: fixed header (next header `first`), then `rest` (extension headers, UDP header...).
fn ipv6(first: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    p.extend_from_slice(&[first, 64]);
    p.extend_from_slice(&CIP6);
    p.extend_from_slice(&VIP6);
    p.extend_from_slice(rest);
    p
}

fn found(s: Scan) -> Toa {
    match s {
        Scan::Found(t) => t,
        other => panic!("expected a TOA, got {other:?}"),
    }
}

fn datagram(d: Option<UdpDatagram>) -> UdpDatagram {
    let d = d.expect("expected a UDP datagram");
    assert_eq!((d.sport, d.dport), (SPORT, DPORT));
    d
}

/// The UDP-mode option scan, through a whole datagram (the shared walker is private).
fn udp_scan(opts: &[u8]) -> Scan {
    datagram(scan_udp_ipv4(&ipv4(opts, IPPROTO_UDP))).scan
}

fn tcp_scan(opts: &[u8]) -> Scan {
    let p = ipv4(opts, 6);
    let s = scan_ipv4_options(&p[20..usize::from(p[0] & 0xf) * 4]);
    assert_eq!(scan_ipv4_header(&p), s);
    assert_eq!(scan_ip_header(&p), s);
    s
}

#[test]
fn dpvs_option_read_in_udp_mode() {
    let t = found(udp_scan(&dpvs(false)));
    assert_eq!(
        t,
        Toa {
            client: Endpoint {
                addr: Addr::V4(CIP4),
                port: CPORT
            },
            vip: None,
            origin: Origin::DpvsIpv4Option,
        }
    );
    let t = found(udp_scan(&dpvs(true)));
    assert_eq!(
        t,
        Toa {
            client: Endpoint {
                addr: Addr::V6(CIP6),
                port: CPORT
            },
            vip: None,
            origin: Origin::DpvsIpv4Option,
        }
    );
}

#[test]
fn dpvs_option_skipped_by_tcp_scans() {
    for v6 in [false, true] {
        assert_eq!(scan_ipv4_options(&dpvs(v6)), Scan::NoToa);
        assert_eq!(tcp_scan(&dpvs(v6)), Scan::NoToa);
        // Skipped, so a later TOA of the IP-option TOA/UOA design is what the TCP scan finds...
        let mut o = dpvs(v6);
        o.extend(v4opt(false));
        assert_eq!(found(tcp_scan(&o)).origin, Origin::Ipv4Option);
        // ...while the UDP scan stops at the DPVS option (first wins).
        assert_eq!(found(udp_scan(&o)).origin, Origin::DpvsIpv4Option);
    }
}

#[test]
fn ip_option_toa_in_udp_mode() {
    for v6 in [false, true] {
        let t = found(udp_scan(&v4opt(v6)));
        assert_eq!(t.origin, Origin::Ipv4Option);
        assert_eq!(t.client.port, CPORT);
        assert_eq!(
            t.client.addr,
            if v6 { Addr::V6(CIP6) } else { Addr::V4(CIP4) }
        );
        assert_eq!(
            t.vip,
            Some(Endpoint {
                addr: if v6 { Addr::V6(VIP6) } else { Addr::V4(VIP4) },
                port: 80
            })
        );
        assert_eq!(found(tcp_scan(&v4opt(v6))), t);
        // The operation bit must agree with the length, in both modes.
        let mut bad = v4opt(v6);
        bad[2] ^= 1;
        assert_eq!(
            udp_scan(&bad),
            Scan::Malformed(Malformed::FamilyBitMismatch)
        );
        assert_eq!(
            tcp_scan(&bad),
            Scan::Malformed(Malformed::FamilyBitMismatch)
        );
        // Only bit 0 counts.
        let mut other_bits = v4opt(v6);
        other_bits[2] |= 0xfe;
        assert_eq!(found(udp_scan(&other_bits)), t);
    }
}

#[test]
fn nop_eol_walking() {
    // NOPs, a record-route style option (7, len 7), NOP, then the DPVS option, then EOL.
    let mut o = vec![1, 1, 7, 7, 4, 0, 0, 0, 0, 1];
    o.extend(dpvs(false));
    o.push(0);
    assert_eq!(found(udp_scan(&o)).client.addr, Addr::V4(CIP4));
    assert_eq!(tcp_scan(&o), Scan::NoToa);
    // After EOL nothing counts, not even bytes that would be malformed.
    let mut o = vec![1, 0];
    o.extend(dpvs(false));
    o.extend([31, 9]);
    assert_eq!(udp_scan(&o), Scan::NoToa);
    // Only NOPs.
    assert_eq!(udp_scan(&[1, 1, 1, 1]), Scan::NoToa);
}

#[test]
fn first_toa_wins() {
    let mut o = dpvs(true);
    o.extend(dpvs(false));
    assert_eq!(found(udp_scan(&o)).client.addr, Addr::V6(CIP6));
    let mut o = v4opt(false);
    o.extend(dpvs(false));
    assert_eq!(found(udp_scan(&o)).origin, Origin::Ipv4Option);
    let mut o = dpvs(false);
    o.extend(v4opt(false));
    let t = found(udp_scan(&o));
    assert_eq!(t.origin, Origin::DpvsIpv4Option);
    assert_eq!(t.vip, None);
    // A structural error after the TOA still rejects the whole list.
    let mut o = dpvs(false);
    o.extend([7, 9, 0]);
    assert_eq!(udp_scan(&o), Scan::Malformed(Malformed::Truncated));
}

#[test]
fn malformed_lengths() {
    // Option 31 of a length that is neither DPVS's nor the IP-option TOA/UOA design's.
    for len in [2u8, 3, 4, 7, 9, 12, 15, 17, 19, 21, 24, 36, 39] {
        let mut o = vec![31, len];
        o.resize(usize::from(len), 0);
        assert_eq!(
            udp_scan(&o),
            Scan::Malformed(Malformed::BadToaLength),
            "len {len}"
        );
        assert_eq!(
            tcp_scan(&o),
            Scan::Malformed(Malformed::BadToaLength),
            "len {len}"
        );
    }
    // Lengths 0 and 1 do not even cover the type and length bytes.
    for len in [0u8, 1] {
        assert_eq!(
            udp_scan(&[31, len, 0, 0]),
            Scan::Malformed(Malformed::LengthTooShort),
            "len {len}"
        );
        assert_eq!(
            tcp_scan(&[31, len, 0, 0]),
            Scan::Malformed(Malformed::LengthTooShort),
            "len {len}"
        );
    }
    // Lengths beyond the option area: the DPVS option cut short, and lengths past 40.
    let d = dpvs(true);
    let p = ipv4(&d[..16], IPPROTO_UDP);
    assert_eq!(
        datagram(scan_udp_ipv4(&p)).scan,
        Scan::Malformed(Malformed::Truncated)
    );
    let mut o = vec![1, 1, 31, 41];
    o.resize(40, 0);
    assert_eq!(udp_scan(&o), Scan::Malformed(Malformed::Truncated));
    let mut o = vec![31, 255];
    o.resize(40, 0);
    assert_eq!(udp_scan(&o), Scan::Malformed(Malformed::Truncated));
    // The kind as the last byte of the options: its length is missing.
    assert_eq!(
        udp_scan(&[1, 1, 1, 31]),
        Scan::Malformed(Malformed::MissingLength)
    );
}

#[test]
fn ipv4_datagram_without_options() {
    let p = ipv4(&[], IPPROTO_UDP);
    assert_eq!(p[0], 0x45);
    assert_eq!(
        scan_udp_ipv4(&p),
        Some(UdpDatagram {
            sport: SPORT,
            dport: DPORT,
            scan: Scan::NoToa
        })
    );
    // Cut right after the ports, or inside the UDP header after them: still read.
    assert!(scan_udp_ipv4(&p[..24]).is_some());
    assert!(scan_udp_ipv4(&p[..26]).is_some());
    // Ports cut off.
    for len in 0..24 {
        assert_eq!(scan_udp_ipv4(&p[..len]), None, "{len} bytes");
    }
}

#[test]
fn ipv4_datagram_with_options() {
    let mut o = vec![1];
    o.extend(dpvs(true));
    let p = ipv4(&o, IPPROTO_UDP);
    assert_eq!(p[0], 0x4b);
    let d = datagram(scan_udp_ipv4(&p));
    assert_eq!(found(d.scan).client.addr, Addr::V6(CIP6));
    // The TCP-mode header scan of the same bytes skips it.
    assert_eq!(scan_ipv4_header(&p), Scan::NoToa);
    // Ports cut off: the header is there, the ports are not (or only partly).
    let ihl = usize::from(p[0] & 0xf) * 4;
    for len in [ihl, ihl + 1, ihl + 3] {
        assert_eq!(scan_udp_ipv4(&p[..len]), None, "{len} bytes");
    }
    assert!(scan_udp_ipv4(&p[..ihl + 4]).is_some());
    // Options cut short (ihl beyond the bytes given).
    assert_eq!(scan_udp_ipv4(&p[..30]), None);
    // The largest header: 40 bytes of options.
    let mut o = v4opt(true);
    assert_eq!(o.len(), 40);
    let p = ipv4(&o, IPPROTO_UDP);
    assert_eq!(p[0], 0x4f);
    assert_eq!(
        found(datagram(scan_udp_ipv4(&p)).scan).origin,
        Origin::Ipv4Option
    );
    o.truncate(8);
    o[1] = 8;
    assert_eq!(
        found(datagram(scan_udp_ipv4(&ipv4(&o, IPPROTO_UDP))).scan).origin,
        Origin::DpvsIpv4Option
    );
}

#[test]
fn ipv4_not_a_udp_datagram() {
    // Another protocol (TCP, ICMP).
    for proto in [6, 1] {
        assert_eq!(scan_udp_ipv4(&ipv4(&dpvs(false), proto)), None);
    }
    // Another version, an ihl below 5.
    let mut p = ipv4(&dpvs(false), IPPROTO_UDP);
    p[0] = 0x67;
    assert_eq!(scan_udp_ipv4(&p), None);
    p[0] = 0x44;
    assert_eq!(scan_udp_ipv4(&p), None);
    p[0] = 0x40;
    assert_eq!(scan_udp_ipv4(&p), None);
    // An IPv6 packet is not read by the IPv4 function, and the other way round.
    assert_eq!(scan_udp_ipv4(&ipv6(IPPROTO_UDP, &udp())), None);
    assert_eq!(scan_udp_ipv6(&ipv4(&[], IPPROTO_UDP)), None);
}

#[test]
fn ipv4_fragments() {
    let mut p = ipv4(&dpvs(false), IPPROTO_UDP);
    // DF set (the builder's default), then first fragment (MF, offset 0): UDP header present.
    assert!(scan_udp_ipv4(&p).is_some());
    p[6] = 0x20;
    p[7] = 0;
    assert!(scan_udp_ipv4(&p).is_some());
    // A later fragment (offset 1, 0x1fff, with and without MF): no UDP header.
    for (hi, lo) in [(0x00, 0x01), (0x20, 0xb9), (0x1f, 0xff), (0x01, 0x00)] {
        p[6] = hi;
        p[7] = lo;
        assert_eq!(scan_udp_ipv4(&p), None, "{hi:#x} {lo:#x}");
    }
}

#[test]
fn ipv6_plain_udp() {
    let p = ipv6(IPPROTO_UDP, &udp());
    assert_eq!(
        scan_udp_ipv6(&p),
        Some(UdpDatagram {
            sport: SPORT,
            dport: DPORT,
            scan: Scan::NoToa
        })
    );
    assert!(scan_udp_ipv6(&p[..44]).is_some());
    for len in 0..44 {
        assert_eq!(scan_udp_ipv6(&p[..len]), None, "{len} bytes");
    }
}

#[test]
fn ipv6_dest_options() {
    for v6 in [false, true] {
        // Pad1, PadN(3), then the TOA.
        let mut tlvs = vec![0, 1, 1, 0];
        tlvs.extend(v6tlv(v6));
        let mut rest = opts_header(IPPROTO_UDP, &tlvs);
        rest.extend(udp());
        let p = ipv6(NEXTHDR_DEST, &rest);
        let d = datagram(scan_udp_ipv6(&p));
        let t = found(d.scan);
        assert_eq!(t.origin, Origin::Ipv6DestOption);
        assert_eq!(t.client.port, CPORT);
        assert_eq!(
            t.client.addr,
            if v6 { Addr::V6(CIP6) } else { Addr::V4(CIP4) }
        );
        assert_eq!(
            t.vip,
            Some(Endpoint {
                addr: if v6 { Addr::V6(VIP6) } else { Addr::V4(VIP4) },
                port: 80
            })
        );
        assert_eq!(d.scan, scan_ipv6_headers(&p));
    }
}

#[test]
fn ipv6_dpvs_lengths_skipped() {
    // optlen 6 / 18 (cport + caddr): DPVS has no IPv6 option form, skipped like in the TCP scan.
    for tlv in [
        [&[31u8, 6, 0x9c, 0x41][..], &CIP4[..]].concat(),
        [&[31u8, 18, 0x9c, 0x41][..], &CIP6[..]].concat(),
    ] {
        let mut rest = opts_header(IPPROTO_UDP, &tlv);
        rest.extend(udp());
        let p = ipv6(NEXTHDR_DEST, &rest);
        assert_eq!(datagram(scan_udp_ipv6(&p)).scan, Scan::NoToa);
        assert_eq!(scan_ipv6_headers(&p), Scan::NoToa);
    }
}

#[test]
fn ipv6_chains() {
    // Hop-by-hop (PadN) before the destination options.
    let mut rest = opts_header(NEXTHDR_DEST, &[1, 4, 0, 0, 0, 0]);
    rest.extend(opts_header(IPPROTO_UDP, &v6tlv(true)));
    rest.extend(udp());
    let p = ipv6(NEXTHDR_HOP, &rest);
    assert_eq!(
        found(datagram(scan_udp_ipv6(&p)).scan).client.addr,
        Addr::V6(CIP6)
    );
    // Hop-by-hop, fragment (offset 0, first fragment), destination options, UDP.
    let mut rest = opts_header(NEXTHDR_FRAGMENT, &[1, 4, 0, 0, 0, 0]);
    rest.extend(fragment(NEXTHDR_DEST, 0));
    rest.extend(opts_header(IPPROTO_UDP, &v6tlv(false)));
    rest.extend(udp());
    let p = ipv6(NEXTHDR_HOP, &rest);
    let d = datagram(scan_udp_ipv6(&p));
    assert_eq!(found(d.scan).client.addr, Addr::V4(CIP4));
    assert_eq!(d.scan, scan_ipv6_headers(&p));
    // The same with a later fragment: no UDP header.
    let mut rest = opts_header(NEXTHDR_FRAGMENT, &[1, 4, 0, 0, 0, 0]);
    rest.extend(fragment(NEXTHDR_DEST, 1));
    rest.extend(opts_header(IPPROTO_UDP, &v6tlv(false)));
    rest.extend(udp());
    assert_eq!(scan_udp_ipv6(&ipv6(NEXTHDR_HOP, &rest)), None);
    // Fragment then UDP directly, offset 0 and 0x1fff.
    let mut rest = fragment(IPPROTO_UDP, 0);
    rest.extend(udp());
    assert_eq!(
        datagram(scan_udp_ipv6(&ipv6(NEXTHDR_FRAGMENT, &rest))).scan,
        Scan::NoToa
    );
    let mut rest = fragment(IPPROTO_UDP, 0x1fff);
    rest.extend(udp());
    assert_eq!(scan_udp_ipv6(&ipv6(NEXTHDR_FRAGMENT, &rest)), None);
    // Routing header (type 0 layout, 8 bytes, no address) before the destination options.
    let mut rest = vec![NEXTHDR_DEST, 0, 0, 0, 0, 0, 0, 0];
    rest.extend(opts_header(IPPROTO_UDP, &v6tlv(false)));
    rest.extend(udp());
    assert!(matches!(
        datagram(scan_udp_ipv6(&ipv6(NEXTHDR_ROUTING, &rest))).scan,
        Scan::Found(_)
    ));
    // Two destination-options headers: the first TOA wins.
    let mut rest = opts_header(NEXTHDR_DEST, &v6tlv(true));
    rest.extend(opts_header(IPPROTO_UDP, &v6tlv(false)));
    rest.extend(udp());
    let p = ipv6(NEXTHDR_DEST, &rest);
    assert_eq!(
        found(datagram(scan_udp_ipv6(&p)).scan).client.addr,
        Addr::V6(CIP6)
    );
    // A first header without TOA, the second with one.
    let mut rest = opts_header(NEXTHDR_DEST, &[1, 2, 0, 0]);
    rest.extend(opts_header(IPPROTO_UDP, &v6tlv(false)));
    rest.extend(udp());
    assert_eq!(
        found(datagram(scan_udp_ipv6(&ipv6(NEXTHDR_DEST, &rest))).scan)
            .client
            .addr,
        Addr::V4(CIP4)
    );
}

#[test]
fn ipv6_not_a_udp_datagram() {
    // The chain ends in TCP (6), in ICMPv6 (58), in no next header (59).
    for last in [6, 58, 59] {
        let mut rest = opts_header(last, &v6tlv(false));
        rest.extend(udp());
        assert_eq!(scan_udp_ipv6(&ipv6(NEXTHDR_DEST, &rest)), None, "{last}");
        assert_eq!(scan_udp_ipv6(&ipv6(last, &udp())), None, "{last}");
    }
    // The chain runs past the bytes given, before the UDP header.
    let mut rest = opts_header(IPPROTO_UDP, &v6tlv(true));
    rest.extend(udp());
    let p = ipv6(NEXTHDR_DEST, &rest);
    let ports_end = 40 + rest.len() - udp().len() + 4;
    for len in 40..ports_end {
        assert_eq!(scan_udp_ipv6(&p[..len]), None, "{len} bytes");
    }
    assert!(scan_udp_ipv6(&p[..ports_end]).is_some());
    // Another version.
    let mut p = ipv6(IPPROTO_UDP, &udp());
    p[0] = 0x45;
    assert_eq!(scan_udp_ipv6(&p), None);
}

#[test]
fn ipv6_malformed_dest_options() {
    // Option 31 of a length that is no TOA's.
    let mut rest = opts_header(IPPROTO_UDP, &[31, 4, 0, 0, 0, 0]);
    rest.extend(udp());
    let p = ipv6(NEXTHDR_DEST, &rest);
    assert_eq!(
        datagram(scan_udp_ipv6(&p)).scan,
        Scan::Malformed(Malformed::BadToaLength)
    );
    assert_eq!(scan_ipv6_headers(&p), datagram(scan_udp_ipv6(&p)).scan);
    // An option running past its header (the header itself is inside the packet).
    let mut h = opts_header(IPPROTO_UDP, &v6tlv(false));
    h[3] = 40;
    h.extend(udp());
    assert_eq!(
        datagram(scan_udp_ipv6(&ipv6(NEXTHDR_DEST, &h))).scan,
        Scan::Malformed(Malformed::Truncated)
    );
    // A malformed second header after a first without TOA.
    let mut rest = opts_header(NEXTHDR_DEST, &[1, 2, 0, 0]);
    rest.extend(opts_header(IPPROTO_UDP, &[31, 7, 0, 0, 0, 0, 0, 0, 0]));
    rest.extend(udp());
    assert_eq!(
        datagram(scan_udp_ipv6(&ipv6(NEXTHDR_DEST, &rest))).scan,
        Scan::Malformed(Malformed::BadToaLength)
    );
}

/// Random bytes never panic the UDP functions, and their scans agree with the TCP scans where the
/// formats agree.
#[test]
fn random_datagrams() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..100_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 113) as usize;
        let mut bytes: Vec<u8> = (0..len)
            .map(|j| (seed >> (j % 8 * 8)) as u8 ^ (j as u8).wrapping_mul(29))
            .collect();
        if bytes.len() > 9 {
            if i % 2 == 0 {
                // IPv4, UDP, not a later fragment.
                bytes[0] = 0x40 | (bytes[0] & 0xf);
                bytes[6] &= 0xe0;
                bytes[7] = 0;
                bytes[9] = IPPROTO_UDP;
            } else {
                // IPv6, a first next header that is walked.
                bytes[0] = 0x60;
                bytes[6] = [0, IPPROTO_UDP, 60, 44][i as usize / 2 % 4];
            }
        }
        if let Some(d) = scan_udp_ipv4(&bytes) {
            assert!(!matches!(
                d.scan,
                Scan::Found(Toa {
                    origin: Origin::Ipv6DestOption | Origin::TcpOption(_),
                    ..
                })
            ));
        }
        if let Some(d) = scan_udp_ipv6(&bytes) {
            assert_eq!(d.scan, scan_ipv6_headers(&bytes));
        }
    }
}
