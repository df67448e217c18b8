//! Fuzz target: the UDP datagram readers of toa.ko (src/wire.rs): `scan_udp_ipv4` (IPv4 header, options
//! with DPVS's UOA IPv4 option read, UDP ports) and `scan_udp_ipv6` (IPv6 header, extension headers, UDP
//! ports). Properties: never panics (overflow checks on); a reported TOA comes from an IP option: the
//! IP-option TOA/UOA design's (a VIP of the client's family) or, from `scan_udp_ipv4` only, DPVS's UOA
//! IPv4 option (no VIP); and the scans agree with the TCP scans (`scan_ipv4_header`,
//! `scan_ipv6_headers`) wherever the formats they read agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toa_wire::{
    scan_ipv4_header, scan_ipv6_headers, scan_udp_ipv4, scan_udp_ipv6, Addr, Origin, Scan, Toa,
};

/// Checks a reported TOA; `dpvs_allowed` for the IPv4 reader.
fn check(s: Scan, dpvs_allowed: bool) {
    if let Scan::Found(Toa {
        client,
        vip,
        origin,
    }) = s
    {
        match origin {
            Origin::Ipv4Option | Origin::Ipv6DestOption => {
                let vip = vip.expect("IP-option TOA without VIP");
                assert_eq!(
                    matches!(client.addr, Addr::V6(_)),
                    matches!(vip.addr, Addr::V6(_))
                );
            }
            Origin::DpvsIpv4Option => {
                assert!(
                    dpvs_allowed,
                    "DPVS's IPv4 option reported by the IPv6 reader"
                );
                assert!(vip.is_none(), "DPVS's IPv4 option with a VIP");
            }
            Origin::TcpOption(_) => panic!("a TCP option reported by a UDP reader"),
        }
    }
}

/// Whether the IPv4 options of `p` (bytes 20 to ihl * 4) may hold DPVS's option: any byte 31 followed
/// by 8 or 20. Conservative (a match inside another option counts too), so the differential below only
/// compares lists without one.
fn may_hold_dpvs(p: &[u8]) -> bool {
    let ihl = usize::from(p.first().map_or(0, |b| b & 0x0f)) * 4;
    p.get(20..ihl)
        .unwrap_or(&[])
        .windows(2)
        .any(|w| w[0] == 31 && matches!(w[1], 8 | 20))
}

fuzz_target!(|data: &[u8]| {
    if let Some(d) = scan_udp_ipv4(data) {
        check(d.scan, true);
        assert!(!matches!(
            d.scan,
            Scan::Found(Toa {
                origin: Origin::Ipv6DestOption,
                ..
            })
        ));
        let tcp = scan_ipv4_header(data);
        if !may_hold_dpvs(data) {
            assert_eq!(d.scan, tcp);
        }
        // No DPVS option reached: the walk is the TCP one.
        if matches!(
            d.scan,
            Scan::NoToa
                | Scan::Found(Toa {
                    origin: Origin::Ipv4Option,
                    ..
                })
        ) {
            assert_eq!(d.scan, tcp);
        }
    }
    if let Some(d) = scan_udp_ipv6(data) {
        check(d.scan, false);
        assert!(!matches!(
            d.scan,
            Scan::Found(Toa {
                origin: Origin::Ipv4Option,
                ..
            })
        ));
        assert_eq!(d.scan, scan_ipv6_headers(data));
    }
});
