// SPDX-License-Identifier: GPL-2.0

//! `/proc/net/uoa_table`, in every network namespace: the live UDP flow mappings of the namespace.
//!
//! A header line `lb local client vip idle`, then one line per mapping: the load balancer's address:port
//! (the datagrams' source), the local address:port, the client address:port, the VIP:vport (`-` when the
//! option carried none, as DPVS's layout) and the seconds since the flow's last datagram or lookup.
//! Addresses use the kernel's `%pISpc` format (`1.2.3.4:53`, `[2001:db8::1]:53`); an IPv4 flow is shown
//! with IPv4 addresses whatever socket receives it.
//!
//! It is streamed bucket by bucket: each bucket's lock is taken only while that bucket is looked at,
//! never across lines or `read()` calls, so a dump of 100 000 mappings never holds up the receive path for
//! more than one chain. An open file remembers the bucket and the flow of its last line and goes on after
//! it; if that flow is gone meanwhile, its bucket is listed again from the start, so a mapping that lives
//! through the whole dump is listed, possibly twice, never skipped.

use super::flows::{self, FlowKey, Row};
use crate::ffi;
use crate::sockaddr::Sockaddr;
use crate::sys::net::Net;
use crate::sys::proc::{seq_callbacks, Format, NetSeqOps, Record, SeqFile, SeqOps, Shown};
use crate::wire::Endpoint;
use core::ffi::{c_uint, CStr};
use core::ptr::NonNull;
use kernel::prelude::*;

const NAME: &CStr = c"uoa_table";

/// Where a dump stands: the line at seq_file position `pos` (0: the header) and its bucket.
#[repr(C)]
struct Walker {
    pos: i64,
    bucket: u32,
    row: Option<Row>,
}

impl Walker {
    /// Moves to the line after the current one in namespace `inum`; returns it, or `None` at the end.
    fn advance(&mut self, inum: u32) -> Option<Record<NonNull<Row>>> {
        let next = match (&self.row, self.pos) {
            (_, 0) => flows::next_row(inum, 0, None),
            (Some(row), _) => flows::next_row(inum, self.bucket, Some(row.key)),
            (None, _) => None,
        };
        self.pos += 1;
        self.row = next.map(|(b, row)| {
            self.bucket = b;
            row
        });
        self.current()
    }

    fn current(&mut self) -> Option<Record<NonNull<Row>>> {
        self.row
            .as_mut()
            .map(|row| Record::Item(NonNull::from(row)))
    }
}

/// `/proc/net/uoa_table`.
struct UoaTable;

// SAFETY: an item is the walker's current row, which only `start` and `next` (`advance`) change.
unsafe impl SeqOps for UoaTable {
    type State = Walker;
    type Item = Row;

    #[inline(always)]
    fn start(net: &Net, w: &mut Walker, pos: i64) -> Option<Record<NonNull<Row>>> {
        let inum = net.inum();
        if pos == 0 {
            w.pos = 0;
            w.row = None;
            return Some(Record::Header);
        }
        if pos == w.pos {
            // The line that did not fit in the last read.
            return w.current();
        }
        if pos != w.pos + 1 {
            // A seek: walk from the start.
            w.pos = 0;
            w.row = None;
            while w.pos + 1 < pos && w.advance(inum).is_some() {}
        }
        w.advance(inum)
    }

    #[inline(always)]
    fn next(
        net: &Net,
        w: &mut Walker,
        _prev: Record<NonNull<Row>>,
        pos: &mut i64,
    ) -> Option<Record<NonNull<Row>>> {
        let v = w.advance(net.inum());
        *pos = w.pos;
        v
    }

    /// Nothing is held between calls.
    fn stop(_w: &mut Walker) {}

    #[inline(always)]
    fn show(seq: &SeqFile, record: Record<&Row>) -> Shown {
        let row = match record {
            Record::Header => {
                seq.puts(c"lb local client vip idle\n");
                return Shown::Printed;
            }
            Record::Item(row) => row,
        };
        let FlowKey {
            lb,
            lb_port,
            local,
            local_port,
        } = row.key;
        seq.printf(&FIRST, (&Sockaddr::of(&endpoint(lb, lb_port)),));
        seq.printf(&NEXT, (&Sockaddr::of(&endpoint(local, local_port)),));
        seq.printf(&NEXT, (&Sockaddr::of(&row.mapping.client),));
        match &row.mapping.vip {
            Some(vip) => seq.printf(&NEXT, (&Sockaddr::of(vip),)),
            None => seq.puts(c" -"),
        }
        seq.printf(&IDLE, (c_uint::from(row.idle_secs),));
        Shown::Printed
    }
}

// SAFETY: all zero bits are a valid `Walker` (integers, byte arrays and enums whose first variant is 0),
// which needs no drop; its `row` is only used once a `start` at position 0 or a walk from the start has
// set it. The shim's `toa_uoa_table_seq_ops` names the callbacks defined here for `UoaTable`, as a `net`
// file, and `toa_uoa_iter_size` is the size of its `struct toa_uoa_iter`.
unsafe impl NetSeqOps for UoaTable {
    fn seq_ops() -> *const ffi::SeqOperations {
        core::ptr::addr_of!(ffi::toa_uoa_table_seq_ops)
    }

    fn state_size() -> c_uint {
        // SAFETY: a constant of the shim.
        unsafe { ffi::toa_uoa_iter_size }
    }
}

seq_callbacks!(net UoaTable {
    start: toa_uoa_table_seq_start,
    next: toa_uoa_table_seq_next,
    stop: toa_uoa_table_seq_stop,
    show: toa_uoa_table_seq_show,
});

/// The first address of a line.
const FIRST: Format<(&Sockaddr,)> = Format::new(c"%pISpc");
/// The next addresses of a line.
const NEXT: Format<(&Sockaddr,)> = Format::new(c" %pISpc");
/// The idle time, ending the line.
const IDLE: Format<(c_uint,)> = Format::new(c" %u\n");

fn endpoint(addr: [u8; 16], port: u16) -> Endpoint {
    Endpoint {
        addr: flows::addr_of16(addr),
        port,
    }
}

/// Creates `net`'s `/proc/net/uoa_table` (`ENOMEM` on failure); it stays until [`remove_from`].
pub(crate) fn create_in(net: &Net) -> Result {
    net.proc_net().create_net::<UoaTable>(NAME)?.keep();
    Ok(())
}

/// Removes `net`'s `/proc/net/uoa_table`, waiting for the calls in progress on it.
///
/// # Safety
///
/// [`create_in`] succeeded for `net`, and the file was not removed since.
pub(crate) unsafe fn remove_from(net: &Net) {
    // SAFETY: per the function's contract.
    unsafe { net.proc_net().remove(NAME) };
}
