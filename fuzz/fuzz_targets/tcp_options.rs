//! Fuzz target: the TCP-option TOA parser of toa.ko (src/wire.rs) on arbitrary option lists and headers.
//! Properties: never panics (overflow checks on), and a reported TOA is one of the accepted formats with
//! its bytes really present in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toa_wire::{scan_tcp_header, scan_tcp_options, Addr, Origin, Scan};

fuzz_target!(|data: &[u8]| {
    if let Scan::Found(t) = scan_tcp_options(data) {
        let Origin::TcpOption(kind) = t.origin else {
            panic!("the TCP-option scan reported {:?}", t.origin);
        };
        assert!(matches!(kind, 200 | 253 | 254));
        let needle: Vec<u8> = match t.client.addr {
            Addr::V4(a) => [&t.client.port.to_be_bytes()[..], &a[..]].concat(),
            Addr::V6(a) => [&t.client.port.to_be_bytes()[..], &a[..]].concat(),
        };
        assert!(data.windows(needle.len()).any(|w| w == needle.as_slice()));
    }
    let _ = scan_tcp_header(data);
});
