//! Replays the fuzz seed corpora and every saved fuzz regression (`fuzz/seeds/*/*`,
//! `fuzz/regressions/*/*`) through every parser, with the fuzz targets' properties: no panic, and a
//! reported TOA is of the scanned carrier.

use std::path::Path;
use toa_wire::{
    scan_ip_header, scan_ipv4_header, scan_ipv4_options, scan_ipv6_dstopts, scan_ipv6_headers,
    scan_tcp_header, scan_tcp_options, Origin, Scan,
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
        inputs.len() >= 17,
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
    }
}
