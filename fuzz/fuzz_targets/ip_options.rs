//! Fuzz target: the IP-level TOA parsers of toa.ko (src/wire.rs, the IP-option TOA/UOA design): IPv4 header + options and
//! IPv6 header + extension headers. Properties: never panics (overflow checks on), and a reported TOA
//! always carries a VIP of the client's family and comes from an IP option.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toa_wire::{scan_ipv4_header, scan_ipv4_options, scan_ipv6_dstopts, scan_ipv6_headers, Addr, Origin, Scan, Toa};

fn check(s: Scan) {
    if let Scan::Found(Toa { client, vip, origin }) = s {
        assert!(matches!(origin, Origin::Ipv4Option | Origin::Ipv6DestOption));
        let vip = vip.expect("IP-option TOA without VIP");
        assert_eq!(matches!(client.addr, Addr::V6(_)), matches!(vip.addr, Addr::V6(_)));
    }
}

fuzz_target!(|data: &[u8]| {
    check(scan_ipv4_options(data));
    check(scan_ipv4_header(data));
    check(scan_ipv6_dstopts(data));
    check(scan_ipv6_headers(data));
});
