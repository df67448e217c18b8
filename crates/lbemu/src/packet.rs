//! IPv4/IPv6 packets carrying TCP segments or UDP datagrams: encoding with correct checksums (RFC 791,
//! RFC 8200, RFC 9293, RFC 768) and decoding of the kernel's TCP replies.

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

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 next-header value of a destination-options header.
const NEXTHDR_DEST: u8 = 60;

/// The one's-complement sum (not yet folded) of the pseudo-header that TCP and UDP checksums cover:
/// RFC 9293 section 3.1 for IPv4 (src, dst, zero, protocol, length), RFC 8200 section 8.1 for IPv6 (src,
/// dst, upper-layer length, zeros, next header).
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut sum = 0u32;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&[0, proto]);
            add(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&(len as u32).to_be_bytes());
            add(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    sum
}

/// Wraps the transport bytes `l4` (checksum set) in an IP header from `src` to `dst`: IPv4 with
/// `ipv4_options` (padded with EOL to a multiple of 4) and its header checksum, or IPv6 with the
/// destination-options header `ipv6_dstopts` (when not empty; its next-header byte is set to `proto`).
fn ip_packet(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ipv4_options: &[u8],
    ipv6_dstopts: &[u8],
    l4: &[u8],
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ipo = pad4(ipv4_options.to_vec());
            let hl = 20 + ipo.len();
            let total = hl + l4.len();
            let mut p = Vec::with_capacity(total);
            p.push(0x40 | (hl / 4) as u8);
            p.push(0);
            p.extend_from_slice(&(total as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x40, 0]); // id, DF
            p.push(64);
            p.push(proto);
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&ipo);
            let sum = checksum(0, &p[..hl]);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
            p.extend_from_slice(l4);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ext = ipv6_dstopts.to_vec();
            if let Some(nh) = ext.first_mut() {
                *nh = proto;
            }
            let mut p = Vec::with_capacity(40 + ext.len() + l4.len());
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
            p.push(if ext.is_empty() { proto } else { NEXTHDR_DEST });
            p.push(64);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&ext);
            p.extend_from_slice(l4);
            p
        }
        _ => panic!("mixed address families"),
    }
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
        let pseudo = pseudo_header_sum(self.src, self.dst, IPPROTO_TCP, tcp.len());
        let sum = checksum(pseudo, &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        ip_packet(
            self.src,
            self.dst,
            IPPROTO_TCP,
            &self.ipv4_options,
            &self.ipv6_dstopts,
            &tcp,
        )
    }

    /// Decodes a TCP packet the kernel sent (no IPv6 extension headers); `None` for anything else.
    pub fn decode(p: &[u8]) -> Option<Segment> {
        let (src, dst, l4): (IpAddr, IpAddr, &[u8]) = match p.first()? >> 4 {
            4 => {
                let hl = usize::from(p[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
                if *p.get(9)? != IPPROTO_TCP || hl < 20 || total > p.len() || hl > total {
                    return None;
                }
                let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
                let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
                (IpAddr::from(s), IpAddr::from(d), &p[hl..total])
            }
            6 => {
                let plen = usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?]));
                if *p.get(6)? != IPPROTO_TCP {
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

/// One IP packet carrying a UDP datagram (RFC 768).
#[derive(Clone, Debug)]
pub struct Datagram {
    /// Source address (the family of both addresses is the packet's).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 option bytes (IPv4 only), padded with EOL to a multiple of 4 (at most 40 bytes).
    pub ipv4_options: Vec<u8>,
    /// A whole IPv6 destination-options header (IPv6 only); its next-header byte is set to UDP.
    pub ipv6_dstopts: Vec<u8>,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Datagram {
    /// Encodes the packet, checksums included (a UDP checksum that computes to 0 is sent as 0xffff,
    /// RFC 768: 0 would mean "no checksum", which IPv6 forbids).
    pub fn encode(&self) -> Vec<u8> {
        let len = 8 + self.payload.len();
        let mut udp = Vec::with_capacity(len);
        udp.extend_from_slice(&self.sport.to_be_bytes());
        udp.extend_from_slice(&self.dport.to_be_bytes());
        udp.extend_from_slice(&(len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]); // checksum
        udp.extend_from_slice(&self.payload);
        let pseudo = pseudo_header_sum(self.src, self.dst, IPPROTO_UDP, len);
        let sum = match checksum(pseudo, &udp) {
            0 => 0xffff,
            s => s,
        };
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
        ip_packet(
            self.src,
            self.dst,
            IPPROTO_UDP,
            &self.ipv4_options,
            &self.ipv6_dstopts,
            &udp,
        )
    }

    /// Decodes a UDP packet: IPv4 (options kept as sent, padding included) or IPv6 with at most one
    /// destination-options header; `None` for anything else. Checksums are not verified.
    pub fn decode(p: &[u8]) -> Option<Datagram> {
        let (src, dst, ipv4_options, ipv6_dstopts, l4): (IpAddr, IpAddr, _, _, &[u8]) =
            match p.first()? >> 4 {
                4 => {
                    let hl = usize::from(p[0] & 0x0f) * 4;
                    let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
                    if *p.get(9)? != IPPROTO_UDP || hl < 20 || total > p.len() || hl > total {
                        return None;
                    }
                    let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
                    let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
                    let opts = p[20..hl].to_vec();
                    (
                        IpAddr::from(s),
                        IpAddr::from(d),
                        opts,
                        Vec::new(),
                        &p[hl..total],
                    )
                }
                6 => {
                    let plen = usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?]));
                    let s: [u8; 16] = p.get(8..24)?.try_into().ok()?;
                    let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
                    let rest = p.get(40..40 + plen)?;
                    let (ext, l4) = match *p.get(6)? {
                        IPPROTO_UDP => (&rest[..0], rest),
                        NEXTHDR_DEST => {
                            let n = (usize::from(*rest.get(1)?) + 1) * 8;
                            let ext = rest.get(..n)?;
                            if ext[0] != IPPROTO_UDP {
                                return None;
                            }
                            (ext, &rest[n..])
                        }
                        _ => return None,
                    };
                    (
                        IpAddr::from(s),
                        IpAddr::from(d),
                        Vec::new(),
                        ext.to_vec(),
                        l4,
                    )
                }
                _ => return None,
            };
        let ulen = usize::from(u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]));
        if ulen < 8 || ulen > l4.len() {
            return None;
        }
        Some(Datagram {
            src,
            dst,
            ipv4_options,
            ipv6_dstopts,
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
            payload: l4[8..ulen].to_vec(),
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

    fn udp(src: &str, dst: &str, ipv4_options: Vec<u8>, ipv6_dstopts: Vec<u8>) -> Datagram {
        Datagram {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ipv4_options,
            ipv6_dstopts,
            sport: 20001,
            dport: 8001,
            payload: b"hello".to_vec(),
        }
    }

    /// IPv4 option 31 (client 198.51.100.7:40001, VIP 203.0.113.9:80).
    const OPT31: [u8; 16] = [
        31, 16, 0, 0, 0x9c, 0x41, 0, 80, 198, 51, 100, 7, 203, 0, 113, 9,
    ];

    /// The UDP checksum over the pseudo-header verifies to 0 (RFC 1071's check).
    fn udp_verifies(d: &Datagram, l4: &[u8]) -> bool {
        checksum(pseudo_header_sum(d.src, d.dst, IPPROTO_UDP, l4.len()), l4) == 0
    }

    #[test]
    fn udp_ipv4_known_answer() {
        // Expected values computed independently (Python, RFC 768/791 by hand).
        let d = udp("192.0.2.2", "192.0.2.1", OPT31.to_vec(), vec![]);
        let raw = d.encode();
        assert_eq!(raw.len(), 20 + 16 + 8 + 5);
        assert_eq!(raw[0], 0x49, "version 4, IHL 9 words");
        assert_eq!(u16::from_be_bytes([raw[2], raw[3]]), 49, "total length");
        assert_eq!(raw[9], IPPROTO_UDP);
        assert_eq!(
            u16::from_be_bytes([raw[10], raw[11]]),
            0x90d1,
            "header checksum"
        );
        assert_eq!(&raw[20..36], &OPT31);
        let l4 = &raw[36..];
        assert_eq!(l4[..6], [0x4e, 0x21, 0x1f, 0x41, 0, 13]);
        assert_eq!(u16::from_be_bytes([l4[6], l4[7]]), 0xca9b, "UDP checksum");
        assert_eq!(&l4[8..], b"hello");
        assert_eq!(checksum(0, &raw[..36]), 0);
        assert!(udp_verifies(&d, l4));
    }

    #[test]
    fn udp_ipv6_known_answer_with_dstopts() {
        // A destination-options header of 8 bytes: next header (set by encode), length 0, PadN of 4.
        let dstopts = vec![99, 0, 1, 4, 0, 0, 0, 0];
        let d = udp("2001:db8::2", "2001:db8::1", vec![], dstopts);
        let raw = d.encode();
        assert_eq!(raw.len(), 40 + 8 + 8 + 5);
        assert_eq!(u16::from_be_bytes([raw[4], raw[5]]), 21, "payload length");
        assert_eq!(raw[6], 60, "next header: destination options");
        assert_eq!(raw[40], IPPROTO_UDP, "the options header's next header");
        assert_eq!(raw[41..48], [0, 1, 4, 0, 0, 0, 0]);
        let l4 = &raw[48..];
        assert_eq!(u16::from_be_bytes([l4[4], l4[5]]), 13, "UDP length");
        assert_eq!(u16::from_be_bytes([l4[6], l4[7]]), 0xf32a, "UDP checksum");
        assert!(udp_verifies(&d, l4));
        // Without extension header: UDP right after the fixed header, same checksum.
        let plain = udp("2001:db8::2", "2001:db8::1", vec![], vec![]).encode();
        assert_eq!(plain[6], IPPROTO_UDP);
        assert_eq!(&plain[40..], l4);
    }

    #[test]
    fn udp_round_trip() {
        for d in [
            udp("192.0.2.2", "192.0.2.1", vec![], vec![]),
            udp(
                "192.0.2.10",
                "192.0.2.1",
                vec![1, 1, 31, 8, 0x9c, 0x41, 1, 2, 3, 4],
                vec![],
            ),
            udp("2001:db8::2", "2001:db8::1", vec![], vec![]),
            udp(
                "2001:db8::2",
                "2001:db8::1",
                vec![],
                [vec![0, 1, 1, 12], vec![0; 12]].concat(),
            ),
        ] {
            let raw = d.encode();
            let back = Datagram::decode(&raw).unwrap();
            assert_eq!((back.src, back.dst), (d.src, d.dst));
            assert_eq!((back.sport, back.dport), (20001, 8001));
            assert_eq!(back.payload, b"hello");
            // Options come back padded with EOL to 4 bytes; the extension header as sent, but for its
            // next-header byte.
            assert_eq!(back.ipv4_options, pad4(d.ipv4_options.clone()));
            assert_eq!(back.ipv6_dstopts.get(1..), d.ipv6_dstopts.get(1..));
            let hl = raw.len() - 13;
            assert!(udp_verifies(&d, &raw[hl..]));
            if d.src.is_ipv4() {
                assert_eq!(checksum(0, &raw[..hl]), 0);
            }
            // The TCP decoder, which reads the kernel's replies, passes over UDP.
            assert!(Segment::decode(&raw).is_none());
        }
    }

    #[test]
    fn udp_checksum_zero_is_sent_as_ffff() {
        // The 2 payload bytes that make the one's-complement sum all ones (checksum 0).
        let mut d = udp("192.0.2.2", "192.0.2.1", vec![], vec![]);
        d.payload = vec![0, 0];
        let c = u16::from_be_bytes(d.encode()[26..28].try_into().unwrap());
        d.payload = c.to_be_bytes().to_vec();
        let raw = d.encode();
        assert_eq!(raw[26..28], [0xff, 0xff]);
        assert!(udp_verifies(&d, &raw[20..]));
    }

    #[test]
    fn tcp_decoder_passes_over_icmp() {
        // ICMPv4 port unreachable and ICMPv6 echo reply headers: not TCP.
        let mut v4 = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
        ];
        v4.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        assert!(Segment::decode(&v4).is_none());
        assert!(Datagram::decode(&v4).is_none());
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        v6.extend_from_slice(&[0; 32]);
        v6.extend_from_slice(&[129, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Segment::decode(&v6).is_none());
        assert!(Datagram::decode(&v6).is_none());
        assert!(Segment::decode(&[]).is_none() && Datagram::decode(&[0x45]).is_none());
    }
}
