// SPDX-License-Identifier: GPL-2.0

//! `/proc/net/toa_stats` and `/proc/net/toa_table`, created in every network namespace.
//!
//! `toa_stats` (classic layout of the existing TOA modules, parsed by monitoring scripts): a header of 34
//! spaces then `CPU<n>` left-aligned in 11 columns for each possible CPU; then one row per counter, the
//! name left-aligned in 25 columns, `:`, and per CPU the value right-aligned in 10 columns and a space.
//! The seven counters of seed 000 come first, in its order; toa's own rows follow. The probe-miss rows
//! (`missed_*`) are kernel-wide totals, not per-CPU: they are shown in the first CPU column, 0 elsewhere,
//! so that summing a row still gives the total.
//!
//! `toa_table`: a header line `sk local lb client vip origin`, then one line per stored TOA of a socket
//! of this namespace: the socket (`%p`, the kernel's hashed pointer), the local address:port, the load
//! balancer's address:port (the kernel's peer), the client address:port from the TOA, the VIP:vport when
//! the TOA carried one (`-` otherwise), and the option that carried it (`tcp200`, `tcp253`, `tcp254`,
//! `ip4opt31`, `ip6opt31`). Addresses use the kernel's `%pISpc` format (`1.2.3.4:80`,
//! `[2001:db8::1]:80`). It is streamed with an rhashtable walker that an open file keeps from one
//! `read()` to the next, so a whole dump costs one pass over the table (linear in its size). No lock is held
//! across the dump, only RCU for the length of one `read()`. Entries inserted or removed during a dump may
//! or may not be listed; a table resize during a dump starts the walk over, listing some entries twice.

use crate::ffi::{self, Net, SeqFile, Sock, AF_INET, SEQ_START_TOKEN};
use crate::pernet::PernetRegistration;
use crate::sockaddr::{Sockaddr, SockaddrIn, SockaddrIn6};
use crate::stats::{self, Counter};
use crate::store::Entry;
use crate::wire::Origin;
use core::ffi::{c_int, c_void, CStr};
use kernel::prelude::*;

const STATS_NAME: &CStr = c"toa_stats";
const TABLE_NAME: &CStr = c"toa_table";

/// Prints one `toa_stats` row: `%-25s:` then `%10llu ` per possible CPU.
///
/// # Safety
///
/// `seq` is the seq_file being shown.
unsafe fn stats_row(seq: *mut SeqFile, name: &CStr, value: impl Fn(c_int) -> u64) {
    // SAFETY: per the function's contract; the formats match their arguments.
    unsafe {
        ffi::seq_printf(seq, c"%-25s:".as_ptr(), name.as_ptr());
        for cpu in stats::possible_cpus() {
            ffi::seq_printf(seq, c"%10llu ".as_ptr(), value(cpu));
        }
        ffi::toa_seq_puts(seq, c"\n".as_ptr());
    }
}

/// Kernel-wide probe misses, as (row name, count).
fn probe_misses() -> [(&'static CStr, u64); 5] {
    // SAFETY: reads counters of the shim's static probe objects (always valid memory).
    unsafe {
        use core::ptr::addr_of;
        [
            (
                c"missed_v4_syn_recv_sock",
                ffi::toa_kretprobe_nmissed(addr_of!(ffi::toa_krp_tcp_v4_syn_recv_sock)),
            ),
            (
                c"missed_v6_syn_recv_sock",
                ffi::toa_kretprobe_nmissed(addr_of!(ffi::toa_krp_tcp_v6_syn_recv_sock)),
            ),
            (
                c"missed_inet_getname",
                ffi::toa_kretprobe_nmissed(addr_of!(ffi::toa_krp_inet_getname)),
            ),
            (
                c"missed_inet6_getname",
                ffi::toa_kretprobe_nmissed(addr_of!(ffi::toa_krp_inet6_getname)),
            ),
            (
                c"missed_sock_destruct",
                ffi::toa_kretprobe_nmissed(addr_of!(ffi::toa_krp_inet_sock_destruct)),
            ),
        ]
    }
}

/// `show` of `/proc/net/toa_stats` (single_open).
///
/// # Safety
///
/// Only called by seq_file, for a `toa_stats` file created by [`toa_net_init`].
unsafe extern "C" fn toa_stats_show(seq: *mut SeqFile, _v: *mut c_void) -> c_int {
    // SAFETY: called by seq_file for `toa_stats`; the formats match their arguments.
    unsafe {
        ffi::seq_printf(seq, c"%34s".as_ptr(), c"".as_ptr());
        for cpu in stats::possible_cpus() {
            ffi::seq_printf(seq, c"CPU%-8d".as_ptr(), cpu);
        }
        ffi::toa_seq_puts(seq, c"\n".as_ptr());
        stats::with_counters(ffi::toa_seq_single_net(seq), |read| {
            for (counter, name) in Counter::ALL {
                stats_row(seq, name, |cpu| read(counter, cpu));
            }
        });
        let first = stats::possible_cpus().next();
        for (name, total) in probe_misses() {
            stats_row(seq, name, |cpu| if Some(cpu) == first { total } else { 0 });
        }
    }
    0
}

/// What `show` returns to have seq_file skip a record.
const SEQ_SKIP: c_int = 1;

/// `IS_ERR()` for the pointers `rhashtable_walk_next` returns.
fn is_err(p: *mut c_void) -> bool {
    (p as usize) >= (-4095isize) as usize
}

/// `-EAGAIN` as an error pointer: the table was resized under the walker, which goes on.
const EAGAIN_PTR: *mut c_void = -11isize as *mut c_void;

/// Socket destructions the destructor probe missed (a probe that could not run). Each may have left an
/// entry whose socket is gone: while any were missed, the dump lists nothing rather than read a socket
/// that may be freed memory (lookups stay safe: they only compare the socket's address and identity).
fn destruct_missed() -> u64 {
    // SAFETY: reads a counter of the shim's static probe object.
    unsafe { ffi::toa_kretprobe_nmissed(core::ptr::addr_of!(ffi::toa_krp_inet_sock_destruct)) }
}

/// The private state of an open `toa_table` (`struct toa_table_iter` of `src/toa_shim.c`): its namespace,
/// its rhashtable walker, and the seq_file position of the walker's current entry.
#[derive(Clone, Copy)]
struct TableIter(*mut ffi::TableIter);

impl TableIter {
    /// The state of `seq`.
    ///
    /// # Safety
    ///
    /// `seq` is a `toa_table` seq_file opened by [`toa_table_open`] and not yet released.
    unsafe fn of(seq: *mut SeqFile) -> Self {
        // SAFETY: per the function's contract, `seq->private` is a `struct toa_table_iter`.
        TableIter(unsafe { ffi::toa_seq_table_iter(seq) })
    }

    fn walker(self) -> *mut ffi::RhashtableIter {
        // SAFETY: `self.0` is a live `struct toa_table_iter` (see `of`).
        unsafe { ffi::toa_table_iter_walker(self.0) }
    }

    fn net(self) -> *mut Net {
        // SAFETY: as above; set once by `toa_table_open`.
        unsafe { *ffi::toa_table_iter_net(self.0) }
    }

    /// Where the walker is: the seq_file position of the entry it returned last, 0 if it has not moved
    /// since it was entered.
    fn pos(self) -> i64 {
        // SAFETY: as above; seq_file serialises the calls on one file.
        unsafe { *ffi::toa_table_iter_pos(self.0) }
    }

    fn set_pos(self, pos: i64) {
        // SAFETY: as above.
        unsafe { *ffi::toa_table_iter_pos(self.0) = pos };
    }

    /// Enters the walker into the table, before its first entry. Only when it is not entered.
    fn enter(self) {
        // SAFETY: the table lives as long as the module, which outlives every open file (see
        // `toa_table_release`); the walker is not entered, per the function's contract.
        unsafe {
            ffi::rhashtable_walk_enter(core::ptr::addr_of_mut!(ffi::toa_store_table), self.walker())
        };
        self.set_pos(0);
    }

    /// Puts the walker back before the first entry. Only between `stop` and `start`.
    fn rewind(self) {
        // SAFETY: the walker was entered by `toa_table_open` and is not started (no RCU section).
        unsafe { ffi::rhashtable_walk_exit(self.walker()) };
        self.enter();
    }

    /// Whether `obj` (an object of the walk) is an entry of this file's namespace.
    ///
    /// # Safety
    ///
    /// `obj` was returned by the walker in the current RCU section.
    unsafe fn is_ours(self, obj: *mut c_void) -> bool {
        // SAFETY: per the function's contract the entry, and (typesafe by RCU) its socket, are readable;
        // a free entry has no socket.
        unsafe {
            let sk = Entry::sk_of(obj.cast());
            !sk.is_null() && ffi::toa_sk_net(sk) == self.net()
        }
    }

    /// The walker's next entry of this namespace, or null at the end. Only between `start` and `stop`.
    fn next_entry(self) -> *mut c_void {
        if destruct_missed() > 0 {
            return core::ptr::null_mut();
        }
        loop {
            // SAFETY: the walker is started (RCU held), see `toa_table_seq_start`.
            let obj = unsafe { ffi::rhashtable_walk_next(self.walker()) };
            if obj == EAGAIN_PTR {
                continue;
            }
            if obj.is_null() || is_err(obj) {
                return core::ptr::null_mut();
            }
            // SAFETY: `obj` was just returned by the started walker.
            if unsafe { self.is_ours(obj) } {
                return obj;
            }
        }
    }

    /// The entry the walker stands on (the one the previous `read()` stopped at, when it is still in the
    /// table; else the one after it), or null at the end. Only between `start` and `stop`.
    fn current_entry(self) -> *mut c_void {
        if destruct_missed() > 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: the walker is started (RCU held).
        let obj = unsafe { ffi::rhashtable_walk_peek(self.walker()) };
        if obj.is_null() || (is_err(obj) && obj != EAGAIN_PTR) {
            return core::ptr::null_mut();
        }
        // SAFETY: `obj`, when not an error, was just returned by the started walker.
        if obj != EAGAIN_PTR && unsafe { self.is_ours(obj) } {
            return obj;
        }
        self.next_entry()
    }
}

/// `proc_ops::proc_open` of `/proc/net/toa_table`: the seq_file, a reference on the namespace (the file's
/// proc data) and the walker, entered here and exited in [`toa_table_release`].
///
/// # Safety
///
/// Only called by procfs, for a `toa_table` file created by [`toa_net_init`].
#[no_mangle]
unsafe extern "C" fn toa_table_open(inode: *mut ffi::Inode, file: *mut ffi::File) -> c_int {
    // SAFETY: the file's proc data is its namespace (`toa_net_init`), alive while the entry exists;
    // `__seq_open_private` allocates a zeroed `struct toa_table_iter` of `toa_table_iter_size` bytes.
    unsafe {
        let net = ffi::toa_maybe_get_net(ffi::toa_pde_data(inode).cast());
        if net.is_null() {
            return ENXIO.to_errno();
        }
        let it = ffi::__seq_open_private(
            file,
            core::ptr::addr_of!(ffi::toa_table_seq_ops),
            ffi::toa_table_iter_size as c_int,
        )
        .cast::<ffi::TableIter>();
        if it.is_null() {
            ffi::toa_put_net(net);
            return ENOMEM.to_errno();
        }
        *ffi::toa_table_iter_net(it) = net;
        TableIter(it).enter();
    }
    0
}

/// `proc_ops::proc_release` of `/proc/net/toa_table`: exits the walker, drops the namespace and frees the
/// seq_file. Also called by `remove_proc_entry` for files still open when the namespace or the module
/// goes away.
///
/// # Safety
///
/// Only called by procfs, once, for a file [`toa_table_open`] opened.
#[no_mangle]
unsafe extern "C" fn toa_table_release(inode: *mut ffi::Inode, file: *mut ffi::File) -> c_int {
    // SAFETY: the file was opened by `toa_table_open`; no read is in progress (procfs waits for them).
    unsafe {
        let it = TableIter::of(ffi::toa_file_seq(file));
        ffi::rhashtable_walk_exit(it.walker());
        ffi::toa_put_net(it.net());
        ffi::seq_release_private(inode, file)
    }
}

/// `seq_operations::start` of `/proc/net/toa_table`: starts the walker (takes `rcu_read_lock`) where the
/// previous `read()` left it. A read that continues the previous one costs nothing more; only a jump
/// (`lseek`, or reading again from 0) walks from the beginning.
///
/// # Safety
///
/// Only called by seq_file, for a `toa_table` file opened by [`toa_table_open`].
#[no_mangle]
unsafe extern "C" fn toa_table_seq_start(seq: *mut SeqFile, pos: *mut i64) -> *mut c_void {
    // SAFETY: seq_file calls start/next/show/stop in sequence on one file and passes its position.
    let (it, pos) = unsafe { (TableIter::of(seq), *pos) };
    if pos != it.pos() && it.pos() != 0 {
        it.rewind();
    }
    // SAFETY: the walker was entered (at open or by `rewind`); `stop`, which always follows, stops it.
    // -EAGAIN only says the table was resized since the last read: the walker starts over by itself.
    let _ = unsafe { ffi::rhashtable_walk_start_check(it.walker()) };
    if pos == 0 {
        return SEQ_START_TOKEN;
    }
    if pos == it.pos() {
        return it.current_entry();
    }
    let mut obj = core::ptr::null_mut();
    for _ in 0..pos {
        obj = it.next_entry();
        if obj.is_null() {
            break;
        }
    }
    it.set_pos(pos);
    obj
}

/// `seq_operations::next` of `/proc/net/toa_table`.
///
/// # Safety
///
/// Only called by seq_file, between `start` and `stop`.
#[no_mangle]
unsafe extern "C" fn toa_table_seq_next(
    seq: *mut SeqFile,
    _v: *mut c_void,
    pos: *mut i64,
) -> *mut c_void {
    // SAFETY: between `start` and `stop`: see `toa_table_seq_start`.
    unsafe {
        *pos += 1;
        let it = TableIter::of(seq);
        let obj = it.next_entry();
        it.set_pos(*pos);
        obj
    }
}

/// `seq_operations::stop` of `/proc/net/toa_table`: stops the walker (leaves its RCU section); it stays
/// entered, at its place, for the next `read()`.
///
/// # Safety
///
/// Only called by seq_file, after `start`.
#[no_mangle]
unsafe extern "C" fn toa_table_seq_stop(seq: *mut SeqFile, _v: *mut c_void) {
    // SAFETY: the walker was started by `toa_table_seq_start`.
    unsafe { ffi::rhashtable_walk_stop(TableIter::of(seq).walker()) };
}

/// The local and remote (load balancer) socket addresses of `sk`, in its own family.
///
/// # Safety
///
/// `sk` is readable (under RCU: TCP sockets are `SLAB_TYPESAFE_BY_RCU`).
unsafe fn sk_endpoints(sk: *const Sock) -> (Sockaddr, Sockaddr) {
    // SAFETY: per the function's contract; plain field reads.
    unsafe {
        let lport = ffi::toa_sk_num(sk);
        let rport = u16::from_be(ffi::toa_sk_dport(sk));
        if ffi::toa_sk_family(sk) == AF_INET {
            let l = ffi::toa_sk_rcv_saddr(sk).to_ne_bytes();
            let r = ffi::toa_sk_daddr(sk).to_ne_bytes();
            (
                Sockaddr::V4(SockaddrIn::new(l, lport)),
                Sockaddr::V4(SockaddrIn::new(r, rport)),
            )
        } else {
            let l = *ffi::toa_sk_v6_rcv_saddr(sk);
            let r = *ffi::toa_sk_v6_daddr(sk);
            (
                Sockaddr::V6(SockaddrIn6::new(l, lport)),
                Sockaddr::V6(SockaddrIn6::new(r, rport)),
            )
        }
    }
}

/// The `origin` column of `toa_table`.
fn origin_name(o: Origin) -> &'static CStr {
    match o {
        Origin::TcpOption(200) => c"tcp200",
        Origin::TcpOption(253) => c"tcp253",
        Origin::TcpOption(_) => c"tcp254",
        Origin::Ipv4Option => c"ip4opt31",
        Origin::Ipv6DestOption => c"ip6opt31",
    }
}

/// `seq_operations::show` of `/proc/net/toa_table`: the header, or one entry.
///
/// # Safety
///
/// Only called by seq_file, between `start` and `stop`, with a value `start`/`next` returned.
#[no_mangle]
unsafe extern "C" fn toa_table_seq_show(seq: *mut SeqFile, v: *mut c_void) -> c_int {
    // SAFETY: `v` is `SEQ_START_TOKEN` or an entry returned by `next_entry` under the walker's RCU
    // section; the formats match their arguments.
    unsafe {
        if v == SEQ_START_TOKEN {
            ffi::toa_seq_puts(seq, c"sk local lb client vip origin\n".as_ptr());
            let missed = destruct_missed();
            if missed > 0 {
                ffi::seq_printf(
                    seq,
                    c"# entries not listed: %llu socket destructions were missed (see README)\n"
                        .as_ptr(),
                    missed,
                );
            }
            return 0;
        }
        // An entry freed or reused since the walker passed it is skipped.
        let Some(e) = Entry::snapshot(v.cast()) else {
            return SEQ_SKIP;
        };
        let (local, lb) = sk_endpoints(e.sk);
        let client = Sockaddr::of(&e.toa.client);
        ffi::seq_printf(
            seq,
            c"%p %pISpc %pISpc %pISpc ".as_ptr(),
            e.sk,
            local.as_ptr(),
            lb.as_ptr(),
            client.as_ptr(),
        );
        match e.toa.vip {
            Some(vip) => ffi::seq_printf(seq, c"%pISpc".as_ptr(), Sockaddr::of(&vip).as_ptr()),
            None => ffi::toa_seq_puts(seq, c"-".as_ptr()),
        }
        ffi::seq_printf(seq, c" %s\n".as_ptr(), origin_name(e.toa.origin).as_ptr());
    }
    0
}

/// `pernet_operations::init`: creates the namespace's `/proc/net/toa_*` files.
///
/// # Safety
///
/// Only called by the pernet core, for a live namespace.
#[no_mangle]
unsafe extern "C" fn toa_net_init(net: *mut Net) -> c_int {
    // SAFETY: called by the pernet core for a namespace being set up (or every existing one at
    // registration); `net->proc_net` exists.
    unsafe {
        let dir = ffi::toa_net_proc_dir(net);
        if ffi::proc_create_net_single(
            STATS_NAME.as_ptr(),
            0o444,
            dir,
            toa_stats_show,
            core::ptr::null_mut(),
        )
        .is_null()
        {
            return ENOMEM.to_errno();
        }
        let table = ffi::proc_create_data(
            TABLE_NAME.as_ptr(),
            0o444,
            dir,
            core::ptr::addr_of!(ffi::toa_table_proc_ops),
            net.cast(),
        );
        if table.is_null() {
            ffi::remove_proc_entry(STATS_NAME.as_ptr(), dir);
            return ENOMEM.to_errno();
        }
    }
    0
}

/// `pernet_operations::exit`: removes the namespace's `/proc/net/toa_*` files.
///
/// # Safety
///
/// Only called by the pernet core, for a namespace `toa_net_init` set up.
#[no_mangle]
unsafe extern "C" fn toa_net_exit(net: *mut Net) {
    // SAFETY: the namespace's files were created by `toa_net_init`; removal waits for open readers.
    unsafe {
        let dir = ffi::toa_net_proc_dir(net);
        ffi::remove_proc_entry(TABLE_NAME.as_ptr(), dir);
        ffi::remove_proc_entry(STATS_NAME.as_ptr(), dir);
    }
}

/// The files in every namespace: created by [`ProcRegistration::register`], all removed on drop.
pub(crate) struct ProcRegistration {
    _registration: PernetRegistration,
}

impl ProcRegistration {
    /// Registers `toa_proc_net_ops` (`src/toa_shim.c`), whose `init`/`exit` are `toa_net_init`/`toa_net_exit`.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: the shim's static ops, registered once here.
        unsafe { PernetRegistration::register(core::ptr::addr_of_mut!(ffi::toa_proc_net_ops)) }
            .map(|r| Self { _registration: r })
    }
}
