//! Unit tests of the TCP-option TOA parser on the real formats and on malformed lists.

use toa_wire::*;

const CIP4: [u8; 4] = [198, 51, 100, 7];
const CIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xef,
];

fn toa4(kind: u8, port: u16) -> Vec<u8> {
    let mut v = vec![kind, 8];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&CIP4);
    v
}

fn toa6(kind: u8, port: u16) -> Vec<u8> {
    let mut v = vec![kind, 20];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&CIP6);
    v
}

fn found(s: Scan) -> Toa {
    match s {
        Scan::Found(t) => t,
        other => panic!("expected a TOA, got {other:?}"),
    }
}

#[test]
fn every_ipv4_format() {
    for kind in [200, 253, 254] {
        let t = found(scan_tcp_options(&toa4(kind, 40000)));
        assert_eq!(
            t.client,
            Endpoint {
                addr: Addr::V4(CIP4),
                port: 40000
            }
        );
        assert_eq!(t.origin, Origin::TcpOption(kind));
        assert_eq!(t.vip, None);
    }
}

#[test]
fn every_ipv6_format() {
    for kind in [253, 254] {
        let t = found(scan_tcp_options(&toa6(kind, 443)));
        assert_eq!(
            t.client,
            Endpoint {
                addr: Addr::V6(CIP6),
                port: 443
            }
        );
        assert_eq!(t.origin, Origin::TcpOption(kind));
    }
}

#[test]
fn kind_200_len_20_is_not_a_toa() {
    assert_eq!(scan_tcp_options(&toa6(200, 1)), Scan::NoToa);
}

#[test]
fn bytedance_client_and_vip() {
    let opt = [
        254, 16, 0x1f, 0x90, 198, 51, 100, 7, 0, 0, 0x00, 0x50, 203, 0, 113, 9,
    ];
    let t = found(scan_tcp_options(&opt));
    assert_eq!(
        t.client,
        Endpoint {
            addr: Addr::V4(CIP4),
            port: 8080
        }
    );
    assert_eq!(
        t.vip,
        Some(Endpoint {
            addr: Addr::V4([203, 0, 113, 9]),
            port: 80
        })
    );
}

#[test]
fn walks_past_nop_timestamps_and_unknown_kinds() {
    // NOP NOP TS(10) | experimental TFO 254/4 | unknown 99/3 | TOA 200/8
    let mut opts = vec![
        1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 254, 4, 0xf9, 0x89, 99, 3, 7,
    ];
    opts.extend(toa4(200, 1234));
    let t = found(scan_tcp_options(&opts));
    assert_eq!(t.client.port, 1234);
}

#[test]
fn first_toa_wins() {
    let mut opts = toa4(254, 1);
    opts.extend(toa6(253, 2));
    assert_eq!(found(scan_tcp_options(&opts)).client.port, 1);
}

#[test]
fn eol_ends_the_list() {
    let mut opts = vec![0];
    opts.extend(toa4(200, 1));
    assert_eq!(scan_tcp_options(&opts), Scan::NoToa);
}

#[test]
fn empty_and_padding_only() {
    assert_eq!(scan_tcp_options(&[]), Scan::NoToa);
    assert_eq!(scan_tcp_options(&[1, 1, 1, 0]), Scan::NoToa);
}

#[test]
fn malformed_lists_are_rejected_whole() {
    let mut after_toa = toa4(200, 1);
    after_toa.extend([5, 1]); // SACK with length 1 after a good TOA
    assert_eq!(
        scan_tcp_options(&after_toa),
        Scan::Malformed(Malformed::LengthTooShort)
    );
    assert_eq!(
        scan_tcp_options(&[200]),
        Scan::Malformed(Malformed::MissingLength)
    );
    assert_eq!(
        scan_tcp_options(&[1, 200, 0]),
        Scan::Malformed(Malformed::LengthTooShort)
    );
    assert_eq!(
        scan_tcp_options(&[200, 8, 0, 1, 2, 3]),
        Scan::Malformed(Malformed::Truncated)
    );
    assert_eq!(
        scan_tcp_options(&[254, 255, 0]),
        Scan::Malformed(Malformed::Truncated)
    );
}

#[test]
fn tcp_header_data_offset() {
    let mut hdr = vec![0u8; 20];
    hdr[12] = 7 << 4; // 28 bytes: 8 bytes of options
    hdr.extend(toa4(254, 7));
    assert_eq!(found(scan_tcp_header(&hdr)).client.port, 7);
    hdr[12] = 4 << 4;
    assert_eq!(
        scan_tcp_header(&hdr),
        Scan::Malformed(Malformed::BadDataOffset)
    );
    hdr[12] = 8 << 4; // claims 32 bytes, only 28 given
    assert_eq!(
        scan_tcp_header(&hdr),
        Scan::Malformed(Malformed::BadDataOffset)
    );
    assert_eq!(
        scan_tcp_header(&hdr[..10]),
        Scan::Malformed(Malformed::BadDataOffset)
    );
}

#[test]
fn v4_mapped() {
    assert_eq!(
        Addr::V4([1, 2, 3, 4]).to_v6_mapped(),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]
    );
    assert_eq!(Addr::V6(CIP6).to_v6_mapped(), CIP6);
    // And back: only the exact `::ffff:0:0/96` prefix is IPv4.
    for a in [[1, 2, 3, 4], [0, 0, 0, 0], [255, 255, 255, 255]] {
        assert_eq!(
            Addr::from_v6_mapped(Addr::V4(a).to_v6_mapped()),
            Addr::V4(a)
        );
    }
    assert_eq!(Addr::from_v6_mapped(CIP6), Addr::V6(CIP6));
    for i in 0..12 {
        let mut a = Addr::V4([192, 0, 2, 1]).to_v6_mapped();
        a[i] ^= 1;
        assert_eq!(Addr::from_v6_mapped(a), Addr::V6(a), "byte {i} changed");
    }
}

/// Every option list of up to 2 bytes, and random longer ones: the parser never panics, and a TOA it
/// reports is always one of the table's formats.
#[test]
fn exhaustive_short_and_random_lists() {
    for n in 0..=2usize {
        let total = 1usize << (8 * n);
        for x in 0..total {
            let bytes: Vec<u8> = (0..n).map(|i| (x >> (8 * i)) as u8).collect();
            let _ = scan_tcp_options(&bytes);
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 41) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (seed >> (i % 8 * 8)) as u8 ^ (i as u8).wrapping_mul(31))
            .collect();
        if let Scan::Found(t) = scan_tcp_options(&bytes) {
            assert!(matches!(t.origin, Origin::TcpOption(200 | 253 | 254)));
        }
    }
}
