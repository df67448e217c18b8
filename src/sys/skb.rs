// SPDX-License-Identifier: GPL-2.0

//! Packets (`struct sk_buff`) in receive processing.

use super::layout;
use crate::ffi;
use core::ffi::c_uint;
use core::mem::MaybeUninit;
use kernel::types::Opaque;

/// A received packet (`struct sk_buff`) whose network header is set: one that the IP layer accepted
/// (netfilter `LOCAL_IN`, a transport protocol's receive path).
///
/// # Invariants
///
/// A `&SkBuff` refers to a packet that stays allocated and unchanged for the lifetime of the reference
/// (its owner, netfilter or the receive path, holds it), whose network header is set and lies in its
/// linear area.
#[repr(transparent)]
pub(crate) struct SkBuff(Opaque<ffi::SkBuff>);

impl SkBuff {
    /// The packet at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points at a packet that meets the type invariants for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *const ffi::SkBuff) -> &'a SkBuff {
        // SAFETY: a transparent wrapper; per the function's contract the invariants hold for `'a`.
        unsafe { &*ptr.cast::<SkBuff>() }
    }

    fn as_ptr(&self) -> *mut ffi::SkBuff {
        self.0.get()
    }

    /// `skb->head`, where the header offsets count from.
    #[inline(always)]
    fn head(&self) -> *const u8 {
        // SAFETY: allocated while borrowed (type invariant); `head` does not change while the owner
        // holds the packet without reallocating it.
        unsafe { layout::SKB_HEAD.read_once(self.as_ptr()) }
    }

    /// `skb->network_header`: the IP header's offset from [`SkBuff::head`].
    #[inline(always)]
    fn network_offset(&self) -> usize {
        // SAFETY: as in `head`.
        usize::from(unsafe { layout::SKB_NETWORK_HEADER.read_once(self.as_ptr()) })
    }

    /// `skb->transport_header`: the transport header's offset from [`SkBuff::head`].
    #[inline(always)]
    fn transport_offset(&self) -> usize {
        // SAFETY: as in `head`.
        usize::from(unsafe { layout::SKB_TRANSPORT_HEADER.read_once(self.as_ptr()) })
    }

    /// `skb->tail`: the end of the linear data, as an offset from [`SkBuff::head`].
    #[inline(always)]
    fn tail_offset(&self) -> usize {
        // SAFETY: as in `head`.
        unsafe { layout::SKB_TAIL.read_once(self.as_ptr()) as usize }
    }

    /// `skb_network_header()`.
    #[inline(always)]
    fn network_header(&self) -> *const u8 {
        // SAFETY: the network header is set and lies in the buffer (type invariant).
        unsafe { self.head().add(self.network_offset()) }
    }

    /// The bytes from the network header to the end of the linear area (IP header first).
    pub(crate) fn linear_from_network(&self) -> &[u8] {
        // SAFETY: by the type invariant the network header lies in the linear area, and the bytes from
        // it to the tail are readable and unchanged while `self` is borrowed.
        unsafe {
            core::slice::from_raw_parts(
                self.network_header(),
                self.tail_offset().saturating_sub(self.network_offset()),
            )
        }
    }

    /// Up to `buf.len()` bytes from the network header on: borrowed in place when the linear area holds
    /// them (the common case: the IP layer pulled the IP header, and small packets are linear), else
    /// copied into `buf` from the linear and paged data (`skb_copy_bits`); fewer when the packet is
    /// shorter. Empty if the copy fails.
    pub(crate) fn headers<'a>(&'a self, buf: &'a mut [MaybeUninit<u8>]) -> &'a [u8] {
        let want = buf.len();
        let linear = self.linear_from_network();
        if linear.len() >= want {
            return &linear[..want];
        }
        // SAFETY: by the type invariant the packet is allocated and its network header set.
        let avail = unsafe { ffi::toa_skb_len_from_network(self.as_ptr()) } as usize;
        let n = avail.min(want);
        let p = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: `n` bytes exist from the network header on (paged data included), and `buf` has
        // room for them.
        if unsafe { ffi::toa_skb_copy_from_network(self.as_ptr(), p.cast(), n as c_uint) } < 0 {
            return &[];
        }
        // SAFETY: the first `n` bytes of `buf` were just written.
        unsafe { core::slice::from_raw_parts(p, n) }
    }

    /// The packet as an IPv4 one.
    ///
    /// # Safety
    ///
    /// The packet is IPv4 and passed `ip_rcv` (its 20-byte fixed header is linear): a packet at an IPv4
    /// netfilter hook after `PRE_ROUTING`.
    #[inline(always)]
    pub(crate) unsafe fn as_ipv4(&self) -> &Ipv4SkBuff {
        // SAFETY: a transparent wrapper; per the function's contract its extra invariants hold.
        unsafe { &*core::ptr::from_ref(self).cast::<Ipv4SkBuff>() }
    }

    /// The packet as an IPv6 one.
    ///
    /// # Safety
    ///
    /// The packet is IPv6 and passed `ipv6_rcv` (its 40-byte fixed header is linear): a packet at an
    /// IPv6 netfilter hook after `PRE_ROUTING`.
    #[inline(always)]
    pub(crate) unsafe fn as_ipv6(&self) -> &Ipv6SkBuff {
        // SAFETY: as in `as_ipv4`.
        unsafe { &*core::ptr::from_ref(self).cast::<Ipv6SkBuff>() }
    }

    /// The packet as one that TCP is receiving (transport header set on its TCP header).
    ///
    /// # Safety
    ///
    /// The packet is in TCP's receive path: its transport header is set, its IP header with options or
    /// extension headers and its TCP header were pulled into the linear area.
    pub(crate) unsafe fn as_tcp(&self) -> &TcpSkBuff {
        // SAFETY: a transparent wrapper; per the function's contract its extra invariants hold.
        unsafe { &*core::ptr::from_ref(self).cast::<TcpSkBuff>() }
    }
}

/// Defines a received packet type of one IP version, whose fixed header of `$len` bytes is linear.
macro_rules! ip_skbuff {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        ///
        /// # Invariants
        ///
        /// Those of [`SkBuff`]; in addition the packet is of this IP version and its fixed header is in
        /// the linear area.
        #[repr(transparent)]
        pub(crate) struct $name(SkBuff);

        impl core::ops::Deref for $name {
            type Target = SkBuff;

            fn deref(&self) -> &SkBuff {
                &self.0
            }
        }

        impl $name {
            /// The fixed IP header (options and extension headers follow it).
            #[inline(always)]
            pub(crate) fn header(&self) -> &[u8; $len] {
                // SAFETY: by the type invariants the fixed header is linear, readable and unchanged
                // while `self` is borrowed.
                unsafe { &*self.network_header().cast::<[u8; $len]>() }
            }
        }
    };
}

ip_skbuff!(
    /// An IPv4 packet at an IPv4 netfilter hook.
    Ipv4SkBuff,
    20
);
ip_skbuff!(
    /// An IPv6 packet at an IPv6 netfilter hook.
    Ipv6SkBuff,
    40
);

/// A TCP segment in TCP's receive path (`tcp_v4_rcv` onwards).
///
/// # Invariants
///
/// Those of [`SkBuff`]; in addition its transport header is set on the TCP header, and the bytes from
/// the network header to the end of the TCP header are linear.
#[repr(transparent)]
pub(crate) struct TcpSkBuff(SkBuff);

impl core::ops::Deref for TcpSkBuff {
    type Target = SkBuff;

    fn deref(&self) -> &SkBuff {
        &self.0
    }
}

impl TcpSkBuff {
    /// The IP header with its options or extension headers: from the network header to the transport
    /// header.
    pub(crate) fn ip_header(&self) -> &[u8] {
        // SAFETY: by the type invariants those bytes are linear, readable and unchanged while `self`
        // is borrowed.
        unsafe {
            core::slice::from_raw_parts(
                self.network_header(),
                self.transport_offset()
                    .saturating_sub(self.network_offset()),
            )
        }
    }

    /// The TCP header: from the transport header, at most 60 bytes (the largest TCP header), never past
    /// the linear data.
    pub(crate) fn tcp_header(&self) -> &[u8] {
        // SAFETY: by the type invariants the bytes from the transport header to the tail of the linear
        // area are readable, and the slice stays inside them.
        unsafe {
            let th = self.head().add(self.transport_offset());
            let avail = self.tail_offset().saturating_sub(self.transport_offset());
            core::slice::from_raw_parts(th, avail.min(60))
        }
    }
}
