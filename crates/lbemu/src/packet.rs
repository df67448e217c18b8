//! IPv4/IPv6 + TCP segments: encoding with correct checksums (RFC 791, RFC 8200, RFC 9293) and decoding
//! of the kernel's replies.

use std::net::IpAddr;

/// Address family on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A TCP header and payload.
#[derive(Clone, Debug, Default)]
pub struct Tcp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with [`Tcp::ACK`]).
    pub ack: u32,
    /// Flags: [`Tcp::FIN`], [`Tcp::SYN`], ...
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// Option bytes, sent as given and padded with EOL (0) to a multiple of 4 (at most 40 bytes).
    pub options: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Tcp {
    /// FIN flag.
    pub const FIN: u8 = 0x01;
    /// SYN flag.
    pub const SYN: u8 = 0x02;
    /// RST flag.
    pub const RST: u8 = 0x04;
    /// PSH flag.
    pub const PSH: u8 = 0x08;
    /// ACK flag.
    pub const ACK: u8 = 0x10;
}

/// One IP packet carrying a TCP segment.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Source address (the family of both addresses is the packet's).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 option bytes (IPv4 only), padded with EOL to a multiple of 4 (at most 40 bytes).
    pub ipv4_options: Vec<u8>,
    /// A whole IPv6 destination-options header (IPv6 only); its next-header byte is set to TCP.
    pub ipv6_dstopts: Vec<u8>,
    /// The TCP segment.
    pub tcp: Tcp,
}

/// The Internet checksum (RFC 1071) of `data`, starting from `sum`.
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pad4(mut v: Vec<u8>) -> Vec<u8> {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

impl Segment {
    /// Encodes the packet, checksums included.
    pub fn encode(&self) -> Vec<u8> {
        let t = &self.tcp;
        let opts = pad4(t.options.clone());
        let mut tcp = Vec::with_capacity(20 + opts.len() + t.payload.len());
        tcp.extend_from_slice(&t.sport.to_be_bytes());
        tcp.extend_from_slice(&t.dport.to_be_bytes());
        tcp.extend_from_slice(&t.seq.to_be_bytes());
        tcp.extend_from_slice(&t.ack.to_be_bytes());
        tcp.push((((20 + opts.len()) / 4) as u8) << 4);
        tcp.push(t.flags);
        tcp.extend_from_slice(&t.window.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(&opts);
        tcp.extend_from_slice(&t.payload);

        let mut pseudo = 0u32;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                pseudo += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                add(&s.octets());
                add(&d.octets());
                add(&[0, 6]);
                add(&(tcp.len() as u16).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                add(&s.octets());
                add(&d.octets());
                add(&(tcp.len() as u32).to_be_bytes());
                add(&[0, 0, 0, 6]);
            }
            _ => panic!("mixed address families"),
        }
        let sum = checksum(pseudo, &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());

        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ipo = pad4(self.ipv4_options.clone());
                let hl = 20 + ipo.len();
                let total = hl + tcp.len();
                let mut p = Vec::with_capacity(total);
                p.push(0x40 | (hl / 4) as u8);
                p.push(0);
                p.extend_from_slice(&(total as u16).to_be_bytes());
                p.extend_from_slice(&[0, 0, 0x40, 0]); // id, DF
                p.push(64);
                p.push(6);
                p.extend_from_slice(&[0, 0]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&ipo);
                let sum = checksum(0, &p[..hl]);
                p[10..12].copy_from_slice(&sum.to_be_bytes());
                p.extend_from_slice(&tcp);
                p
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ext = self.ipv6_dstopts.clone();
                if let Some(nh) = ext.first_mut() {
                    *nh = 6;
                }
                let mut p = Vec::with_capacity(40 + ext.len() + tcp.len());
                p.extend_from_slice(&[0x60, 0, 0, 0]);
                p.extend_from_slice(&((ext.len() + tcp.len()) as u16).to_be_bytes());
                p.push(if ext.is_empty() { 6 } else { 60 });
                p.push(64);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&ext);
                p.extend_from_slice(&tcp);
                p
            }
            _ => unreachable!(),
        }
    }

    /// Decodes a TCP packet the kernel sent (no IPv6 extension headers); `None` for anything else.
    pub fn decode(p: &[u8]) -> Option<Segment> {
        let (src, dst, l4): (IpAddr, IpAddr, &[u8]) = match p.first()? >> 4 {
            4 => {
                let hl = usize::from(p[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
                if *p.get(9)? != 6 || hl < 20 || total > p.len() || hl > total {
                    return None;
                }
                let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
                let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
                (IpAddr::from(s), IpAddr::from(d), &p[hl..total])
            }
            6 => {
                let plen = usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?]));
                if *p.get(6)? != 6 {
                    return None;
                }
                let s: [u8; 16] = p.get(8..24)?.try_into().ok()?;
                let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
                (IpAddr::from(s), IpAddr::from(d), p.get(40..40 + plen)?)
            }
            _ => return None,
        };
        let doff = usize::from(*l4.get(12)? >> 4) * 4;
        if doff < 20 || doff > l4.len() {
            return None;
        }
        let be32 = |i: usize| u32::from_be_bytes([l4[i], l4[i + 1], l4[i + 2], l4[i + 3]]);
        Some(Segment {
            src,
            dst,
            ipv4_options: Vec::new(),
            ipv6_dstopts: Vec::new(),
            tcp: Tcp {
                sport: u16::from_be_bytes([l4[0], l4[1]]),
                dport: u16::from_be_bytes([l4[2], l4[3]]),
                seq: be32(4),
                ack: be32(8),
                flags: l4[13],
                window: u16::from_be_bytes([l4[14], l4[15]]),
                options: l4[20..doff].to_vec(),
                payload: l4[doff..].to_vec(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksums() {
        for (src, dst) in [
            (IpAddr::from([192, 0, 2, 2]), IpAddr::from([192, 0, 2, 1])),
            (
                "2001:db8::2".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ),
        ] {
            let seg = Segment {
                src,
                dst,
                ipv4_options: vec![],
                ipv6_dstopts: vec![],
                tcp: Tcp {
                    sport: 1,
                    dport: 2,
                    seq: 3,
                    ack: 4,
                    flags: Tcp::ACK,
                    window: 5,
                    options: vec![200, 8, 0, 1, 1, 2, 3, 4],
                    payload: b"hi!".to_vec(),
                },
            };
            let raw = seg.encode();
            let back = Segment::decode(&raw).unwrap();
            assert_eq!(back.tcp.options, seg.tcp.options);
            assert_eq!(back.tcp.payload, b"hi!");
            // The TCP checksum over pseudo-header + segment verifies to 0.
            let l4 = if src.is_ipv4() {
                &raw[20..]
            } else {
                &raw[40..]
            };
            let mut pseudo = 0u32;
            let mut add = |b: &[u8]| {
                b.chunks(2)
                    .for_each(|c| pseudo += u32::from(u16::from_be_bytes([c[0], c[1]])))
            };
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    add(&s.octets());
                    add(&d.octets());
                    add(&[0, 6]);
                    add(&(l4.len() as u16).to_be_bytes());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    add(&s.octets());
                    add(&d.octets());
                    add(&(l4.len() as u32).to_be_bytes());
                    add(&[0, 0, 0, 6]);
                }
                _ => unreachable!(),
            }
            assert_eq!(checksum(pseudo, l4), 0);
            if src.is_ipv4() {
                assert_eq!(checksum(0, &raw[..20]), 0);
            }
        }
    }
}
