//! What the IP-option tests share: the client and VIP of every option, and the options of the IP-option
//! TOA/UOA design (client port 40001, vport 80).
#![allow(dead_code)]

pub const CIP4: [u8; 4] = [198, 51, 100, 7];
pub const VIP4: [u8; 4] = [203, 0, 113, 9];
pub const CIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0xc1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
];
pub const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0x76, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
];

/// The IP-option TOA/UOA design's IPv4 option: 31, len 16/40, operation, padding, cport vport cip vip.
pub fn v4opt(v6: bool) -> Vec<u8> {
    let mut o = vec![
        31,
        if v6 { 40 } else { 16 },
        u8::from(v6),
        0,
        0x9c,
        0x41,
        0x00,
        0x50,
    ];
    if v6 {
        o.extend_from_slice(&CIP6);
        o.extend_from_slice(&VIP6);
    } else {
        o.extend_from_slice(&CIP4);
        o.extend_from_slice(&VIP4);
    }
    o
}

/// The IP-option TOA/UOA design's IPv6 destination option: 31, optlen 12/36, cport vport cip vip.
pub fn v6tlv(v6: bool) -> Vec<u8> {
    let mut o = vec![31, if v6 { 36 } else { 12 }, 0x9c, 0x41, 0x00, 0x50];
    if v6 {
        o.extend_from_slice(&CIP6);
        o.extend_from_slice(&VIP6);
    } else {
        o.extend_from_slice(&CIP4);
        o.extend_from_slice(&VIP4);
    }
    o
}
