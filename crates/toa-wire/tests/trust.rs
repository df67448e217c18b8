//! Unit tests of the trusted-sources list (`trusted_sources` module parameter).

use toa_wire::trust::{ParseError, TrustList, MAX_PREFIXES};
use toa_wire::{ip_source, Addr};

#[test]
fn empty_trusts_everyone() {
    let l = TrustList::parse("").unwrap();
    assert!(l.is_empty());
    assert!(l.trusts(&Addr::V4([1, 2, 3, 4])));
    assert!(TrustList::parse(" , ,").unwrap().is_empty());
}

#[test]
fn prefixes_of_both_families() {
    let l = TrustList::parse("192.0.2.0/24, 10.1.2.3 ,2001:db8::/33,100.64.0.0/10").unwrap();
    assert!(l.trusts(&Addr::V4([192, 0, 2, 200])));
    assert!(!l.trusts(&Addr::V4([192, 0, 3, 1])));
    assert!(l.trusts(&Addr::V4([10, 1, 2, 3])));
    assert!(!l.trusts(&Addr::V4([10, 1, 2, 4])));
    assert!(l.trusts(&Addr::V4([100, 127, 255, 255])));
    assert!(!l.trusts(&Addr::V4([100, 128, 0, 0])));
    let mut a = [
        0x20, 0x01, 0x0d, 0xb8, 0x7f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    assert!(l.trusts(&Addr::V6(a)));
    a[4] = 0x80;
    assert!(!l.trusts(&Addr::V6(a)));
    // v4-mapped sources match as IPv4.
    assert!(l.trusts(&Addr::V6([
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9
    ])));
    // /0 trusts the whole family only.
    let all4 = TrustList::parse("0.0.0.0/0").unwrap();
    assert!(all4.trusts(&Addr::V4([8, 8, 8, 8])));
    assert!(!all4.trusts(&Addr::V6([0x20; 16])));
}

#[test]
fn bad_lists() {
    assert_eq!(
        TrustList::parse("192.0.2.0/24,nope"),
        Err((1, ParseError::BadAddress))
    );
    assert_eq!(
        TrustList::parse("192.0.2.0/33"),
        Err((0, ParseError::BadLength))
    );
    assert_eq!(
        TrustList::parse("2001:db8::/129"),
        Err((0, ParseError::BadLength))
    );
    assert_eq!(
        TrustList::parse("192.0.2.0/x"),
        Err((0, ParseError::BadLength))
    );
    assert_eq!(
        TrustList::parse("10.0.0.1/"),
        Err((0, ParseError::BadLength))
    );
    let many = vec!["10.0.0.0/8"; MAX_PREFIXES + 1].join(",");
    assert_eq!(
        TrustList::parse(&many),
        Err((MAX_PREFIXES, ParseError::TooMany))
    );
}

#[test]
fn packet_sources() {
    let mut v4 = vec![0x45u8; 20];
    v4[12..16].copy_from_slice(&[192, 0, 2, 2]);
    assert_eq!(ip_source(&v4), Some(Addr::V4([192, 0, 2, 2])));
    let mut v6 = vec![0x60u8; 40];
    v6[8..24].copy_from_slice(&[0x20; 16]);
    assert_eq!(ip_source(&v6), Some(Addr::V6([0x20; 16])));
    assert_eq!(ip_source(&v4[..10]), None);
    assert_eq!(ip_source(&[]), None);
}
