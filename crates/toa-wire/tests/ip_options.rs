//! Unit tests of the IP-option TOA parsers (the IP-option TOA/UOA design): IPv4 option 31 and IPv6 destination option 31.

mod common;

use common::*;
use toa_wire::*;

/// A destination-options header around `tlvs`, padded to 8 bytes with PadN (or Pad1).
fn dstopts(tlvs: &[u8]) -> Vec<u8> {
    let mut h = vec![6, 0];
    h.extend_from_slice(tlvs);
    let pad = (8 - h.len() % 8) % 8;
    match pad {
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

fn ipv6_packet(ext: &[u8], first: u8) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 0, first, 64];
    p.extend_from_slice(&[0; 32]);
    p.extend_from_slice(ext);
    p
}

fn found(s: Scan) -> Toa {
    match s {
        Scan::Found(t) => t,
        other => panic!("expected a TOA, got {other:?}"),
    }
}

#[test]
fn ipv4_option_both_payload_families() {
    let t = found(scan_ipv4_options(&v4opt(false)));
    assert_eq!(
        t.client,
        Endpoint {
            addr: Addr::V4(CIP4),
            port: 40001
        }
    );
    assert_eq!(
        t.vip,
        Some(Endpoint {
            addr: Addr::V4(VIP4),
            port: 80
        })
    );
    assert_eq!(t.origin, Origin::Ipv4Option);
    let t = found(scan_ipv4_options(&v4opt(true)));
    assert_eq!(
        t.client,
        Endpoint {
            addr: Addr::V6(CIP6),
            port: 40001
        }
    );
    assert_eq!(
        t.vip,
        Some(Endpoint {
            addr: Addr::V6(VIP6),
            port: 80
        })
    );
}

#[test]
fn ipv4_option_walk_nop_eol_and_others() {
    // NOP, a record-route style option (7, len 7), the TOA, EOL.
    let mut o = vec![1, 7, 7, 4, 0, 0, 0, 0];
    o.extend(v4opt(false));
    o.push(0);
    assert_eq!(found(scan_ipv4_options(&o)).client.port, 40001);
    // After EOL nothing counts.
    let mut o = vec![0];
    o.extend(v4opt(false));
    assert_eq!(scan_ipv4_options(&o), Scan::NoToa);
}

#[test]
fn ipv4_option_malformed_and_uoa() {
    let mut bad_bit = v4opt(false);
    bad_bit[2] = 1;
    assert_eq!(
        scan_ipv4_options(&bad_bit),
        Scan::Malformed(Malformed::FamilyBitMismatch)
    );
    let mut bad_len = v4opt(false);
    bad_len[1] = 12;
    bad_len.truncate(12);
    assert_eq!(
        scan_ipv4_options(&bad_len),
        Scan::Malformed(Malformed::BadToaLength)
    );
    assert_eq!(
        scan_ipv4_options(&v4opt(false)[..10]),
        Scan::Malformed(Malformed::Truncated)
    );
    assert_eq!(
        scan_ipv4_options(&[1, 31]),
        Scan::Malformed(Malformed::MissingLength)
    );
    assert_eq!(
        scan_ipv4_options(&[31, 1]),
        Scan::Malformed(Malformed::LengthTooShort)
    );
    // DPVS UOA (len 8: cport + cip4) is not a TOA, and not malformed.
    assert_eq!(
        scan_ipv4_options(&[31, 8, 0x9c, 0x41, 198, 51, 100, 7]),
        Scan::NoToa
    );
}

#[test]
fn ipv4_header() {
    let mut h = vec![
        0x45 + 4,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        64,
        6,
        0,
        0,
        192,
        0,
        2,
        2,
        192,
        0,
        2,
        1,
    ];
    h.extend(v4opt(false));
    assert_eq!(found(scan_ipv4_header(&h)).origin, Origin::Ipv4Option);
    h[0] = 0x45 + 5; // claims more than given
    assert_eq!(
        scan_ipv4_header(&h),
        Scan::Malformed(Malformed::BadIpHeader)
    );
    h[0] = 0x44;
    assert_eq!(
        scan_ipv4_header(&h),
        Scan::Malformed(Malformed::BadIpHeader)
    );
    assert_eq!(
        scan_ipv4_header(&[0x45]),
        Scan::Malformed(Malformed::BadIpHeader)
    );
}

#[test]
fn ipv6_dest_option_both_payload_families() {
    for v6 in [false, true] {
        let h = dstopts(&v6tlv(v6));
        assert_eq!(h[1], if v6 { 4 } else { 1 }, "the design's hdrlen");
        let t = found(scan_ipv6_dstopts(&h));
        assert_eq!(t.origin, Origin::Ipv6DestOption);
        assert_eq!(t.client.port, 40001);
        assert_eq!(t.vip.unwrap().port, 80);
        assert_eq!(
            t.client.addr,
            if v6 { Addr::V6(CIP6) } else { Addr::V4(CIP4) }
        );
    }
}

#[test]
fn ipv6_dest_option_padding_and_uoa() {
    // Pad1, PadN(3), then the TOA.
    let mut tlvs = vec![0, 1, 1, 0];
    tlvs.extend(v6tlv(false));
    assert_eq!(
        found(scan_ipv6_dstopts(&dstopts(&tlvs))).client.addr,
        Addr::V4(CIP4)
    );
    // DPVS UOA option 31 len 6: ignored.
    assert_eq!(
        scan_ipv6_dstopts(&dstopts(&[31, 6, 0x9c, 0x41, 198, 51, 100, 7])),
        Scan::NoToa
    );
    // A TOA length that is neither: malformed.
    assert_eq!(
        scan_ipv6_dstopts(&dstopts(&[31, 4, 0, 0, 0, 0])),
        Scan::Malformed(Malformed::BadToaLength)
    );
    // An option running past the header.
    let mut h = dstopts(&v6tlv(false));
    h[3] = 40;
    assert_eq!(scan_ipv6_dstopts(&h), Scan::Malformed(Malformed::Truncated));
    // hdrlen beyond the bytes given.
    let mut h = dstopts(&v6tlv(false));
    h[1] = 3;
    assert_eq!(
        scan_ipv6_dstopts(&h),
        Scan::Malformed(Malformed::BadIpHeader)
    );
}

#[test]
fn ipv6_header_chain() {
    let dst = dstopts(&v6tlv(true));
    assert_eq!(
        found(scan_ipv6_headers(&ipv6_packet(&dst, 60))).client.addr,
        Addr::V6(CIP6)
    );
    // Behind a hop-by-hop header (8 bytes of PadN).
    let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0];
    chain.extend(&dst);
    assert_eq!(
        found(scan_ipv6_headers(&ipv6_packet(&chain, 0)))
            .vip
            .unwrap()
            .port,
        80
    );
    // No extension header: no TOA.
    assert_eq!(scan_ipv6_headers(&ipv6_packet(&[], 6)), Scan::NoToa);
    // A destination-options header cut short.
    assert_eq!(
        scan_ipv6_headers(&ipv6_packet(&dst[..10], 60)),
        Scan::Malformed(Malformed::BadIpHeader)
    );
    // Not IPv6.
    assert_eq!(
        scan_ipv6_headers(&[0x45; 60]),
        Scan::Malformed(Malformed::BadIpHeader)
    );
}

/// Random bytes never panic any parser.
#[test]
fn random_inputs() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..100_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 97) as usize;
        let mut bytes: Vec<u8> = (0..len)
            .map(|i| (seed >> (i % 8 * 8)) as u8 ^ (i as u8).wrapping_mul(13))
            .collect();
        let _ = scan_ipv4_options(&bytes);
        let _ = scan_ipv4_header(&bytes);
        let _ = scan_ipv6_dstopts(&bytes);
        if let Some(b) = bytes.first_mut() {
            *b = 0x60;
        }
        let _ = scan_ipv6_headers(&bytes);
    }
}
