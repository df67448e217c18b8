//! Replays the fuzz seed corpora and every saved fuzz regression (`fuzz/seeds/*/*`,
//! `fuzz/regressions/*/*`) through every parser, with the fuzz targets' properties: no panic, a
//! reported TOA is of the scanned carrier, and the UDP readers agree with the TCP scans where the formats
//! they read agree.

use std::path::Path;
use toa_wire::{
    scan_ip_header, scan_ipv4_header, scan_ipv4_options, scan_ipv6_dstopts, scan_ipv6_headers,
    scan_tcp_header, scan_tcp_options, scan_udp_ipv4, scan_udp_ipv6, Addr, Origin, Scan, Toa,
};

fn inputs() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for corpus in ["seeds", "regressions"] {
        for target in std::fs::read_dir(root.join(corpus)).unwrap().flatten() {
            if !target.path().is_dir() {
                continue;
            }
            for f in std::fs::read_dir(target.path()).unwrap().flatten() {
                out.push((
                    f.path().display().to_string(),
                    std::fs::read(f.path()).unwrap(),
                ));
            }
        }
    }
    out
}

#[test]
fn replay_seeds_and_regressions() {
    let inputs = inputs();
    assert!(
        inputs.len() >= 33,
        "fuzz corpora missing: {} files",
        inputs.len()
    );
    for (name, data) in inputs {
        for s in [scan_tcp_options(&data), scan_tcp_header(&data)] {
            if let Scan::Found(t) = s {
                assert!(
                    matches!(t.origin, Origin::TcpOption(200 | 253 | 254)),
                    "{name}"
                );
            }
        }
        for s in [
            scan_ipv4_options(&data),
            scan_ipv4_header(&data),
            scan_ipv6_dstopts(&data),
            scan_ipv6_headers(&data),
            scan_ip_header(&data),
        ] {
            if let Scan::Found(t) = s {
                assert!(
                    matches!(t.origin, Origin::Ipv4Option | Origin::Ipv6DestOption),
                    "{name}"
                );
                assert!(t.vip.is_some(), "{name}");
            }
        }
        // The UDP readers (fuzz target udp_datagrams).
        if let Some(d) = scan_udp_ipv4(&data) {
            if let Scan::Found(t) = d.scan {
                match t.origin {
                    Origin::Ipv4Option => assert!(same_family_vip(&t), "{name}"),
                    Origin::DpvsIpv4Option => assert!(t.vip.is_none(), "{name}"),
                    other => panic!("{name}: {other:?} from scan_udp_ipv4"),
                }
            }
            let tcp = scan_ipv4_header(&data);
            if !may_hold_dpvs(&data)
                || matches!(
                    d.scan,
                    Scan::NoToa
                        | Scan::Found(Toa {
                            origin: Origin::Ipv4Option,
                            ..
                        })
                )
            {
                assert_eq!(d.scan, tcp, "{name}");
            }
        }
        if let Some(d) = scan_udp_ipv6(&data) {
            if let Scan::Found(t) = d.scan {
                assert_eq!(t.origin, Origin::Ipv6DestOption, "{name}");
                assert!(same_family_vip(&t), "{name}");
            }
            assert_eq!(d.scan, scan_ipv6_headers(&data), "{name}");
        }
    }
}

/// A VIP is present, of the client's family.
fn same_family_vip(t: &Toa) -> bool {
    t.vip
        .is_some_and(|vip| matches!(t.client.addr, Addr::V6(_)) == matches!(vip.addr, Addr::V6(_)))
}

/// Whether the IPv4 options of `p` may hold DPVS's UOA IPv4 option (a byte 31 followed by 8 or 20).
fn may_hold_dpvs(p: &[u8]) -> bool {
    let ihl = usize::from(p.first().map_or(0, |b| b & 0x0f)) * 4;
    p.get(20..ihl)
        .unwrap_or(&[])
        .windows(2)
        .any(|w| w[0] == 31 && matches!(w[1], 8 | 20))
}

/// The UDP seeds are what their names say (the corpus is not silently empty or wrong).
#[test]
fn udp_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/udp_datagrams");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let origin = |d: Option<toa_wire::UdpDatagram>| match d.map(|d| d.scan) {
        Some(Scan::Found(t)) => Some(t.origin),
        _ => None,
    };
    for n in ["v4_dpvs_v4", "v4_dpvs_v6", "v4_nop_dpvs"] {
        assert_eq!(
            origin(scan_udp_ipv4(&read(n))),
            Some(Origin::DpvsIpv4Option),
            "{n}"
        );
    }
    for n in ["v4_toa_v4", "v4_toa_v6"] {
        assert_eq!(
            origin(scan_udp_ipv4(&read(n))),
            Some(Origin::Ipv4Option),
            "{n}"
        );
    }
    for n in ["v6_dst_v4", "v6_dst_v6", "v6_hop_frag_dst"] {
        assert_eq!(
            origin(scan_udp_ipv6(&read(n))),
            Some(Origin::Ipv6DestOption),
            "{n}"
        );
    }
    assert_eq!(
        scan_udp_ipv4(&read("v4_plain")).map(|d| (d.sport, d.dport, d.scan)),
        Some((40123, 53, Scan::NoToa))
    );
    assert_eq!(
        scan_udp_ipv6(&read("v6_plain")).map(|d| (d.sport, d.dport, d.scan)),
        Some((40123, 53, Scan::NoToa))
    );
    assert_eq!(
        scan_udp_ipv6(&read("v6_dst_len6")).map(|d| d.scan),
        Some(Scan::NoToa)
    );
    assert!(matches!(
        scan_udp_ipv4(&read("v4_bad_len9")).map(|d| d.scan),
        Some(Scan::Malformed(_))
    ));
    assert_eq!(scan_udp_ipv4(&read("v4_later_fragment")), None);
    assert_eq!(scan_udp_ipv6(&read("v6_later_fragment")), None);
}
