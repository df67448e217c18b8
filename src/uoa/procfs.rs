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
use crate::ffi::{self, Net, SeqFile, SEQ_START_TOKEN};
use crate::sockaddr::Sockaddr;
use crate::wire::Endpoint;
use core::ffi::{c_int, c_void, CStr};
use kernel::prelude::*;

const NAME: &CStr = c"uoa_table";

/// Where a dump stands: the line at seq_file position `pos` (0: the header) and its bucket.
#[repr(C)]
struct Walker {
    pos: i64,
    bucket: u32,
    row: Option<Row>,
}

/// `TOA_UOA_WALKER_WORDS` of `src/toa_shim.h`: the room the shim reserves for a [`Walker`].
const WALKER_ROOM: usize = 16 * 8;
const _: () = assert!(core::mem::size_of::<Walker>() <= WALKER_ROOM);
const _: () = assert!(core::mem::align_of::<Walker>() <= 8);

/// The walker of `seq` and the namespace number of its file.
///
/// # Safety
///
/// `seq` is an open `uoa_table` seq_file (created by [`create`]), and seq_file does not use its state
/// elsewhere for the returned lifetime (it serialises the calls on a file).
unsafe fn walker<'a>(seq: *mut SeqFile) -> (&'a mut Walker, u32) {
    // SAFETY: per the function's contract, the shim's `struct toa_uoa_iter` holds a walker of the right
    // size and alignment, allocated zeroed by `seq_open_net` for this file. All zero bits are a valid
    // `Walker` (integers, byte arrays and enums whose first variant is 0); its `row` is only used once a
    // `start` at position 0 or a walk from the start has set it.
    unsafe {
        let w = &mut *ffi::toa_uoa_walker(seq).cast::<Walker>();
        (
            w,
            flows::inum_of(crate::sys::net::Net::from_raw(ffi::toa_seq_file_net(seq))),
        )
    }
}

impl Walker {
    /// Moves to the line after the current one; returns it, or null at the end.
    fn advance(&mut self, inum: u32) -> *mut c_void {
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

    fn current(&mut self) -> *mut c_void {
        match &mut self.row {
            Some(row) => (row as *mut Row).cast(),
            None => core::ptr::null_mut(),
        }
    }
}

/// `seq_operations::start`.
///
/// # Safety
///
/// Only called by seq_file, for a `uoa_table` file.
#[no_mangle]
unsafe extern "C" fn toa_uoa_table_seq_start(seq: *mut SeqFile, pos: *mut i64) -> *mut c_void {
    // SAFETY: per the function's contract.
    let ((w, inum), pos) = unsafe { (walker(seq), *pos) };
    if pos == 0 {
        w.pos = 0;
        w.row = None;
        return SEQ_START_TOKEN;
    }
    if pos == w.pos {
        // The line that did not fit in the last read.
        return w.current();
    }
    if pos != w.pos + 1 {
        // A seek: walk from the start.
        w.pos = 0;
        w.row = None;
        while w.pos + 1 < pos && !w.advance(inum).is_null() {}
    }
    w.advance(inum)
}

/// `seq_operations::next`.
///
/// # Safety
///
/// Only called by seq_file, for a `uoa_table` file.
#[no_mangle]
unsafe extern "C" fn toa_uoa_table_seq_next(
    seq: *mut SeqFile,
    _v: *mut c_void,
    pos: *mut i64,
) -> *mut c_void {
    // SAFETY: per the function's contract.
    let (w, inum) = unsafe { walker(seq) };
    let v = w.advance(inum);
    // SAFETY: seq_file's position, which `next` must move on.
    unsafe { *pos = w.pos };
    v
}

/// `seq_operations::stop`: nothing is held between calls.
///
/// # Safety
///
/// Only called by seq_file.
#[no_mangle]
unsafe extern "C" fn toa_uoa_table_seq_stop(_seq: *mut SeqFile, _v: *mut c_void) {}

/// Prints `ep` with `%pISpc`.
///
/// # Safety
///
/// `seq` is the seq_file being shown.
unsafe fn print(seq: *mut SeqFile, fmt: &CStr, ep: &Endpoint) {
    // SAFETY: per the function's contract; `%pISpc` takes a `struct sockaddr *`.
    unsafe { ffi::seq_printf(seq, fmt.as_ptr(), Sockaddr::of(ep).as_ptr()) };
}

fn endpoint(addr: [u8; 16], port: u16) -> Endpoint {
    Endpoint {
        addr: flows::addr_of16(addr),
        port,
    }
}

/// `seq_operations::show`: the header, or one mapping.
///
/// # Safety
///
/// Only called by seq_file, with what `start`/`next` returned.
#[no_mangle]
unsafe extern "C" fn toa_uoa_table_seq_show(seq: *mut SeqFile, v: *mut c_void) -> c_int {
    if v == SEQ_START_TOKEN {
        // SAFETY: the seq_file being shown.
        unsafe { ffi::toa_seq_puts(seq, c"lb local client vip idle\n".as_ptr()) };
        return 0;
    }
    // SAFETY: `start`/`next` return a `Row` of the file's walker.
    let row = unsafe { &*v.cast::<Row>() };
    let FlowKey {
        lb,
        lb_port,
        local,
        local_port,
    } = row.key;
    // SAFETY: the seq_file being shown; the formats match their arguments.
    unsafe {
        print(seq, c"%pISpc", &endpoint(lb, lb_port));
        print(seq, c" %pISpc", &endpoint(local, local_port));
        print(seq, c" %pISpc", &row.mapping.client);
        match &row.mapping.vip {
            Some(vip) => print(seq, c" %pISpc", vip),
            None => ffi::toa_seq_puts(seq, c" -".as_ptr()),
        }
        ffi::seq_printf(
            seq,
            c" %u\n".as_ptr(),
            core::ffi::c_uint::from(row.idle_secs),
        );
    }
    0
}

/// Creates `net`'s `/proc/net/uoa_table`; a negative errno on failure.
pub(crate) fn create(net: *mut Net) -> c_int {
    // SAFETY: a live namespace being set up; the shim's static seq_operations and state size.
    let pde = unsafe {
        ffi::proc_create_net_data(
            NAME.as_ptr(),
            0o444,
            ffi::toa_net_proc_dir(net),
            core::ptr::addr_of!(ffi::toa_uoa_table_seq_ops),
            ffi::toa_uoa_iter_size,
            core::ptr::null_mut(),
        )
    };
    if pde.is_null() {
        return ENOMEM.to_errno();
    }
    0
}

/// Removes `net`'s `/proc/net/uoa_table`, waiting for the calls in progress on it.
pub(crate) fn remove(net: *mut Net) {
    // SAFETY: created by `create` for this namespace.
    unsafe { ffi::remove_proc_entry(NAME.as_ptr(), ffi::toa_net_proc_dir(net)) };
}
