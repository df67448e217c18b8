// SPDX-License-Identifier: GPL-2.0

//! The trusted load-balancer sources (`trusted_sources` module parameter): which packet source addresses
//! may carry a TOA.
//!
//! Pure code without kernel types (host-tested in `crates/toa-wire`): a comma-separated list of IPv4
//! and IPv6 prefixes in CIDR notation (`10.0.0.0/8,2001:db8::/32`; a bare address is a /32 or /128), at
//! most [`MAX_PREFIXES`]. An empty list trusts every source: that is what existing TOA modules do, and
//! it lets any client that reaches the server directly forge its address, so the README recommends
//! setting it to the load balancers' ranges.

use crate::wire::Addr;
use core::net::{Ipv4Addr, Ipv6Addr};

/// How many prefixes the list holds at most.
pub const MAX_PREFIXES: usize = 32;

/// One prefix: the address bits (network order, IPv4 in the first 4 bytes) and the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    v6: bool,
    addr: [u8; 16],
    len: u8,
}

impl Prefix {
    /// Whether `a` is inside this prefix (families must match; a v4-mapped IPv6 source is matched as
    /// IPv4 by the caller).
    pub fn contains(&self, a: &Addr) -> bool {
        let bytes: &[u8] = match (a, self.v6) {
            (Addr::V4(b), false) => b,
            (Addr::V6(b), true) => b,
            _ => return false,
        };
        let full = usize::from(self.len / 8);
        let rest = self.len % 8;
        if bytes.get(..full) != self.addr.get(..full) {
            return false;
        }
        if rest == 0 {
            return true;
        }
        let mask = 0xffu8 << (8 - rest);
        match (bytes.get(full), self.addr.get(full)) {
            (Some(x), Some(y)) => x & mask == y & mask,
            _ => false,
        }
    }
}

/// Why a `trusted_sources` value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// An entry is not an IPv4 or IPv6 address.
    BadAddress,
    /// A prefix length is not a number within the family's bits.
    BadLength,
    /// More than [`MAX_PREFIXES`] entries.
    TooMany,
}

/// The parsed list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustList {
    prefixes: [Prefix; MAX_PREFIXES],
    n: usize,
}

impl TrustList {
    /// Parses a comma-separated prefix list (spaces around entries allowed; empty entries skipped).
    /// On error, also returns the 0-based index of the offending entry.
    pub fn parse(text: &str) -> Result<TrustList, (usize, ParseError)> {
        let empty = Prefix {
            v6: false,
            addr: [0; 16],
            len: 0,
        };
        let mut list = TrustList {
            prefixes: [empty; MAX_PREFIXES],
            n: 0,
        };
        for (i, entry) in text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (addr, len) = match entry.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (entry, None),
            };
            let (v6, bytes, max) = if let Ok(a) = addr.parse::<Ipv4Addr>() {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (false, b, 32u8)
            } else if let Ok(a) = addr.parse::<Ipv6Addr>() {
                (true, a.octets(), 128u8)
            } else {
                return Err((i, ParseError::BadAddress));
            };
            let len = match len {
                None => max,
                Some(l) => match l.parse::<u8>() {
                    Ok(l) if l <= max => l,
                    _ => return Err((i, ParseError::BadLength)),
                },
            };
            let slot = list
                .prefixes
                .get_mut(list.n)
                .ok_or((i, ParseError::TooMany))?;
            *slot = Prefix {
                v6,
                addr: bytes,
                len,
            };
            list.n += 1;
        }
        Ok(list)
    }

    /// Whether the list is empty (every source trusted).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether a packet from `source` may carry a TOA: always with an empty list; otherwise when a prefix
    /// contains it. An IPv4-mapped IPv6 source (`::ffff:a.b.c.d`) is matched as the IPv4 address.
    pub fn trusts(&self, source: &Addr) -> bool {
        if self.is_empty() {
            return true;
        }
        let source = match *source {
            Addr::V6(a) => Addr::from_v6_mapped(a),
            v4 => v4,
        };
        self.prefixes
            .iter()
            .take(self.n)
            .any(|p| p.contains(&source))
    }
}
