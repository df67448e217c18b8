// SPDX-License-Identifier: GPL-2.0

//! `/proc/net/toa_stats` and `/proc/net/toa_table`, created in every network namespace.
//!
//! `toa_stats` (classic layout of the existing TOA modules, parsed by monitoring scripts): a header of 34
//! spaces then `CPU<n>` left-aligned in 11 columns for each possible CPU; then one row per counter, the
//! name left-aligned in 25 columns, `:`, and per CPU the value right-aligned in 10 columns and a space.
//! The seven counters of Tencent Cloud CLB's TOA module come first, in its order; toa's own rows
//! follow, then the probe-miss rows, then the UDP (UOA) rows. The probe-miss rows
//! (`missed_*`) are kernel-wide totals, not per-CPU: they are shown in the first CPU column, 0 elsewhere,
//! so that summing a row still gives the total.
//!
//! `toa_table`: a header line `sk local lb client vip origin`, then one line per stored TOA of a socket
//! of this namespace: the socket (`%p`, the kernel's hashed pointer), the local address:port, the load
//! balancer's address:port (the kernel's peer), the client address:port from the TOA, the VIP:vport when
//! the TOA carried one (`-` otherwise), and the option that carried it (`tcp200`, `tcp253`, `tcp254`,
//! `ip4opt31`, `ip6opt31`). Addresses use the kernel's `%pISpc` format (`1.2.3.4:80`,
//! `[2001:db8::1]:80`). It is streamed bucket by bucket, as `/proc/net/tcp` is: an open file remembers the
//! bucket and the entry where the last `read()` stopped and goes on from there, so a whole dump costs one
//! pass over the table (linear in its size). Each bucket's lock is held (BHs off) only while that bucket's
//! entries are printed, and never across `read()` calls. Entries inserted or removed during a dump may or
//! may not be listed; every other entry is listed, once, unless the entry a `read()` stopped at is removed
//! before the next `read()`: that one then lists the entries before it in its bucket again.

use crate::ffi::{self, Net, SeqFile, Sock, AF_INET, SEQ_START_TOKEN};
use crate::hooks;
use crate::pernet::PernetRegistration;
use crate::sockaddr::{Sockaddr, SockaddrIn, SockaddrIn6};
use crate::stats::{self, Counter};
use crate::store::{self, BucketGuard, Entry, LockedChain};
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
    let krp = |rp| unsafe { ffi::toa_kretprobe_nmissed(rp) };
    use core::ptr::addr_of;
    [
        (
            c"missed_v4_syn_recv_sock",
            krp(addr_of!(ffi::toa_krp_tcp_v4_syn_recv_sock)),
        ),
        (
            c"missed_v6_syn_recv_sock",
            krp(addr_of!(ffi::toa_krp_tcp_v6_syn_recv_sock)),
        ),
        (
            c"missed_inet_getname",
            krp(addr_of!(ffi::toa_krp_inet_getname)),
        ),
        (
            c"missed_inet6_getname",
            krp(addr_of!(ffi::toa_krp_inet6_getname)),
        ),
        (c"missed_sock_destruct", hooks::destruct_missed()),
    ]
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
        let (tcp, udp) = Counter::ALL.split_at(Counter::TCP_ROWS);
        let net = ffi::toa_seq_single_net(seq);
        let counter_rows = |rows: &[(Counter, &CStr)]| {
            stats::with_counters(net, |read| {
                for &(counter, name) in rows {
                    stats_row(seq, name, |cpu| read(counter, cpu));
                }
            })
        };
        counter_rows(tcp);
        let first = stats::possible_cpus().next();
        for (name, total) in probe_misses() {
            stats_row(seq, name, |cpu| if Some(cpu) == first { total } else { 0 });
        }
        counter_rows(udp);
    }
    0
}

/// What `show` returns to have seq_file skip a record.
const SEQ_SKIP: c_int = 1;

/// The private state of an open `toa_table` (`seq->private`, allocated by `__seq_open_private` in
/// [`toa_table_open`]): its namespace, and where the dump stands.
#[repr(C)]
struct TableIter {
    /// The file's namespace, referenced from open to release.
    net: *mut Net,
    /// The bucket of the current entry (the one `start` or `next` returned last).
    bucket: u32,
    /// The socket of the current entry: only compared, never read.
    sk: *const Sock,
    /// The seq_file position of the current entry (0: the header).
    last_pos: i64,
    /// The lock of `bucket`, held from the `start` or `next` that returned an entry to `stop` or to the
    /// `next` that leaves the bucket.
    held: Option<BucketGuard>,
}

impl TableIter {
    /// The state of `seq`.
    ///
    /// # Safety
    ///
    /// `seq` is a `toa_table` seq_file opened by [`toa_table_open`] and not yet released, and seq_file
    /// does not use its state elsewhere for the returned lifetime (seq_file serialises the calls on a
    /// file).
    unsafe fn of<'a>(seq: *mut SeqFile) -> &'a mut TableIter {
        // SAFETY: per the function's contract, `seq->private` is the `TableIter` written by
        // `toa_table_open`.
        unsafe { &mut *ffi::toa_seq_private(seq).cast::<TableIter>() }
    }

    /// Whether `e` belongs to a socket of this namespace.
    ///
    /// # Safety
    ///
    /// `e` is an entry of a bucket whose lock the caller holds, and no socket destruction was missed.
    unsafe fn is_ours(&self, e: *const Entry) -> bool {
        // SAFETY: per the function's contract, `e` and its socket are live.
        unsafe {
            let sk = Entry::sk_of(e);
            !sk.is_null() && ffi::toa_sk_net(sk) == self.net
        }
    }

    /// Makes `e` the current entry.
    ///
    /// # Safety
    ///
    /// `e` is an entry of this namespace in bucket `b`, whose lock `guard` holds.
    unsafe fn stand_on(&mut self, b: u32, e: *mut Entry, guard: BucketGuard) -> *mut Entry {
        self.bucket = b;
        // SAFETY: per the function's contract, `e` is live.
        self.sk = unsafe { Entry::sk_of(e) };
        self.held = Some(guard);
        e
    }

    /// The first entry of this namespace from bucket `b` on, null at the end; on an entry, its bucket's
    /// lock is held (`self.held`). With `resume`, bucket `b` is where the previous `read()` stopped: the
    /// entry of `resume` if it is still there (entries go in at the head of a chain, so the ones after it
    /// are the ones not listed yet), else the bucket from its start.
    fn find_from(&mut self, mut b: u32, resume: Option<*const Sock>) -> *mut Entry {
        self.held = None;
        // Each missed destruction may have left an entry whose socket is gone: list nothing rather than
        // read a socket that may be freed memory (lookups stay safe: they only compare the socket's
        // address and identity).
        if hooks::destruct_missed() > 0 {
            return core::ptr::null_mut();
        }
        let mut resume = resume;
        while b < store::buckets() {
            // `resume` needs its bucket's lock even to learn that the entry is gone.
            if resume.is_some() || !store::bucket_is_empty(b) {
                let guard = BucketGuard::lock(b);
                // SAFETY: the bucket's lock is held while the chain is walked; its entries are this
                // table's and, no destruction missed, their sockets are live.
                let found = unsafe {
                    resume
                        .and_then(|sk| {
                            LockedChain::of(b).find(|&e| Entry::sk_of(e) == sk && self.is_ours(e))
                        })
                        .or_else(|| LockedChain::of(b).find(|&e| self.is_ours(e)))
                };
                if let Some(e) = found {
                    // SAFETY: `e` is an entry of this namespace in bucket `b`, locked by `guard`.
                    return unsafe { self.stand_on(b, e, guard) };
                }
            }
            resume = None;
            b += 1;
        }
        // At the end: a `read()` after this one resumes here, past the last bucket.
        self.bucket = b;
        core::ptr::null_mut()
    }

    /// The entry of this namespace after `e`; null at the end.
    ///
    /// # Safety
    ///
    /// `e` is the current entry, returned by `find_from` or `next_after` (its bucket's lock is held,
    /// `self.held`).
    unsafe fn next_after(&mut self, e: *const Entry) -> *mut Entry {
        // SAFETY: per the function's contract the chain of `e` is locked, and `find_from` checked that no
        // destruction was missed.
        let next = unsafe { LockedChain::after(e).find(|&n| self.is_ours(n)) };
        match next {
            Some(n) => {
                // SAFETY: as above, `n` is live.
                self.sk = unsafe { Entry::sk_of(n) };
                n
            }
            None => self.find_from(self.bucket + 1, None),
        }
    }
}

/// `proc_ops::proc_open` of `/proc/net/toa_table`: the seq_file, with a [`TableIter`] holding a reference
/// on the namespace (the file's proc data) until [`toa_table_release`].
///
/// # Safety
///
/// Only called by procfs, for a `toa_table` file created by [`toa_net_init`].
#[no_mangle]
unsafe extern "C" fn toa_table_open(inode: *mut ffi::Inode, file: *mut ffi::File) -> c_int {
    // SAFETY: the file's proc data is its namespace (`toa_net_init`), alive while the entry exists;
    // `__seq_open_private` allocates `size_of::<TableIter>()` bytes (kmalloc: aligned for it), written
    // whole before any use.
    unsafe {
        let net = ffi::toa_maybe_get_net(ffi::toa_pde_data(inode).cast());
        if net.is_null() {
            return ENXIO.to_errno();
        }
        let it = ffi::__seq_open_private(
            file,
            core::ptr::addr_of!(ffi::toa_table_seq_ops),
            core::mem::size_of::<TableIter>() as c_int,
        )
        .cast::<TableIter>();
        if it.is_null() {
            ffi::toa_put_net(net);
            return ENOMEM.to_errno();
        }
        it.write(TableIter {
            net,
            bucket: 0,
            sk: core::ptr::null(),
            last_pos: 0,
            held: None,
        });
    }
    0
}

/// `proc_ops::proc_release` of `/proc/net/toa_table`: drops the namespace and frees the seq_file. Also
/// called by `remove_proc_entry` for files still open when the namespace or the module goes away.
///
/// # Safety
///
/// Only called by procfs, once, for a file [`toa_table_open`] opened.
#[no_mangle]
unsafe extern "C" fn toa_table_release(inode: *mut ffi::Inode, file: *mut ffi::File) -> c_int {
    // SAFETY: the file was opened by `toa_table_open`; no read is in progress (procfs waits for them), so
    // no lock is held (`stop` releases it).
    unsafe {
        let it = TableIter::of(ffi::toa_file_seq(file));
        ffi::toa_put_net(it.net);
        ffi::seq_release_private(inode, file)
    }
}

/// `seq_operations::start` of `/proc/net/toa_table`: the entry at `*pos`. A read that continues the
/// previous one goes on from the bucket and place where it stopped; only a jump (`lseek`, or reading
/// again from 0) walks from the beginning.
///
/// # Safety
///
/// Only called by seq_file, for a `toa_table` file opened by [`toa_table_open`].
#[no_mangle]
unsafe extern "C" fn toa_table_seq_start(seq: *mut SeqFile, pos: *mut i64) -> *mut c_void {
    // SAFETY: seq_file calls start/next/show/stop in sequence on one file and passes its position.
    let (it, pos) = unsafe { (TableIter::of(seq), *pos) };
    if pos == 0 {
        it.last_pos = 0;
        return SEQ_START_TOKEN;
    }
    let e = if pos == it.last_pos {
        // The entry the previous read could not fit.
        it.find_from(it.bucket, Some(it.sk))
    } else {
        let mut e = it.find_from(0, None);
        for _ in 1..pos {
            if e.is_null() {
                break;
            }
            // SAFETY: `e` was just returned by `find_from` or `next_after`.
            e = unsafe { it.next_after(e) };
        }
        e
    };
    it.last_pos = pos;
    e.cast()
}

/// `seq_operations::next` of `/proc/net/toa_table`.
///
/// # Safety
///
/// Only called by seq_file, between `start` and `stop`.
#[no_mangle]
unsafe extern "C" fn toa_table_seq_next(
    seq: *mut SeqFile,
    v: *mut c_void,
    pos: *mut i64,
) -> *mut c_void {
    // SAFETY: between `start` and `stop`: see `toa_table_seq_start`; `v` is what start or next returned.
    unsafe {
        *pos += 1;
        let it = TableIter::of(seq);
        let e = if v == SEQ_START_TOKEN {
            it.find_from(0, None)
        } else {
            it.next_after(v.cast())
        };
        it.last_pos = *pos;
        e.cast()
    }
}

/// `seq_operations::stop` of `/proc/net/toa_table`: releases the bucket lock, if one is held.
///
/// # Safety
///
/// Only called by seq_file, after `start`.
#[no_mangle]
unsafe extern "C" fn toa_table_seq_stop(seq: *mut SeqFile, _v: *mut c_void) {
    // SAFETY: see `toa_table_seq_start`.
    unsafe { TableIter::of(seq).held = None };
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
        Origin::DpvsIpv4Option => c"dpvsopt31",
    }
}

/// `seq_operations::show` of `/proc/net/toa_table`: the header, or one entry.
///
/// # Safety
///
/// Only called by seq_file, between `start` and `stop`, with a value `start`/`next` returned.
#[no_mangle]
unsafe extern "C" fn toa_table_seq_show(seq: *mut SeqFile, v: *mut c_void) -> c_int {
    // SAFETY: `v` is `SEQ_START_TOKEN` or an entry returned by `find_from`/`next_after` with its
    // bucket's lock held; the formats match their arguments.
    unsafe {
        if v == SEQ_START_TOKEN {
            ffi::toa_seq_puts(seq, c"sk local lb client vip origin\n".as_ptr());
            let missed = hooks::destruct_missed();
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
        // Under the bucket lock the entry cannot be freed; checked all the same.
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
