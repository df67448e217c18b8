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

use crate::ffi::{self, AF_INET};
use crate::hooks;
use crate::redirect;
use crate::sockaddr::{Sockaddr, SockaddrIn, SockaddrIn6};
use crate::stats::{self, Counter};
use crate::store::{self, BucketGuard, Entry, LockedChain};
use crate::sys::net::Net;
use crate::sys::percpu::Cpu;
use crate::sys::pernet::{pernet_callbacks, PernetOps, PernetRegistration};
use crate::sys::proc::{
    seq_callbacks, Format, Hashed, PrivateSeqOps, Record, SeqFile, SeqOps, Shown, SingleShow,
};
use crate::sys::sock::Sock;
use crate::wire::Origin;
use core::ffi::CStr;
use core::ptr::NonNull;
use kernel::prelude::*;

const STATS_NAME: &CStr = c"toa_stats";
const TABLE_NAME: &CStr = c"toa_table";

/// `toa_stats`' header: 34 spaces.
const STATS_INDENT: Format<(&CStr,)> = Format::new(c"%34s");
/// `toa_stats`' header: a CPU's column.
const STATS_CPU: Format<(core::ffi::c_int,)> = Format::new(c"CPU%-8d");
/// `toa_stats`: a row's name.
const STATS_NAME_COL: Format<(&CStr,)> = Format::new(c"%-25s:");
/// `toa_stats`: a row's value for a CPU.
const STATS_VALUE: Format<(u64,)> = Format::new(c"%10llu ");

/// Prints one `toa_stats` row: `%-25s:` then `%10llu ` per possible CPU.
fn stats_row(seq: &SeqFile, name: &CStr, value: impl Fn(Cpu) -> u64) {
    seq.printf(&STATS_NAME_COL, (name,));
    for cpu in Cpu::possible() {
        seq.printf(&STATS_VALUE, (value(cpu),));
    }
    seq.puts(c"\n");
}

/// Kernel-wide hook misses, as (row name, count).
fn probe_misses() -> [(&'static CStr, u64); 4] {
    let (listen_start, listen_stop, tcp_set_ulp) = redirect::missed();
    [
        (c"missed_listen_start", listen_start),
        (c"missed_listen_stop", listen_stop),
        (c"missed_tcp_set_ulp", tcp_set_ulp),
        (c"missed_sock_destruct", hooks::destruct_missed()),
    ]
}

/// `/proc/net/toa_stats` (`proc_create_net_single`).
struct StatsFile;

impl SingleShow for StatsFile {
    fn show(seq: &SeqFile, net: &Net) {
        seq.printf(&STATS_INDENT, (c"",));
        for cpu in Cpu::possible() {
            seq.printf(&STATS_CPU, (cpu.id(),));
        }
        seq.puts(c"\n");
        let (tcp, udp) = Counter::ALL.split_at(Counter::TCP_ROWS);
        let counter_rows = |rows: &[(Counter, &CStr)]| {
            stats::with_counters(net, |counters| {
                for &(counter, name) in rows {
                    stats_row(seq, name, |cpu| {
                        counters.map_or(0, |c| c.read(counter, cpu))
                    });
                }
            })
        };
        counter_rows(tcp);
        let first = Cpu::possible().next();
        for (name, total) in probe_misses() {
            stats_row(seq, name, |cpu| if Some(cpu) == first { total } else { 0 });
        }
        counter_rows(udp);
    }
}

/// The state of an open `toa_table`: where the dump stands.
struct TableIter {
    /// The bucket of the current entry (the one `start` or `next` returned last).
    bucket: u32,
    /// The socket of the current entry: only compared, never read.
    sk: *const ffi::Sock,
    /// The seq_file position of the current entry (0: the header).
    last_pos: i64,
    /// The lock of `bucket`, held from the `start` or `next` that returned an entry to `stop` or to the
    /// `next` that leaves the bucket.
    held: Option<BucketGuard>,
}

/// Whether `e` belongs to a socket of namespace `net`.
///
/// # Safety
///
/// `e` is an entry of a bucket whose lock the caller holds, and no socket destruction was missed.
unsafe fn is_ours(net: &Net, e: *const Entry) -> bool {
    // SAFETY: per the function's contract, `e` and its socket are live for this call.
    unsafe {
        let sk = Entry::sk_of(e);
        !sk.is_null() && core::ptr::eq(Sock::from_raw(sk).net(), net)
    }
}

impl TableIter {
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

    /// The first entry of namespace `net` from bucket `b` on, null at the end; on an entry, its bucket's
    /// lock is held (`self.held`). With `resume`, bucket `b` is where the previous `read()` stopped: the
    /// entry of `resume` if it is still there (entries go in at the head of a chain, so the ones after it
    /// are the ones not listed yet), else the bucket from its start.
    fn find_from(&mut self, net: &Net, mut b: u32, resume: Option<*const ffi::Sock>) -> *mut Entry {
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
                            LockedChain::of(b).find(|&e| Entry::sk_of(e) == sk && is_ours(net, e))
                        })
                        .or_else(|| LockedChain::of(b).find(|&e| is_ours(net, e)))
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

    /// The entry of namespace `net` after `e`; null at the end.
    ///
    /// # Safety
    ///
    /// `e` is the current entry, returned by `find_from` or `next_after` (its bucket's lock is held,
    /// `self.held`).
    unsafe fn next_after(&mut self, net: &Net, e: *const Entry) -> *mut Entry {
        // SAFETY: per the function's contract the chain of `e` is locked, and `find_from` checked that no
        // destruction was missed.
        let next = unsafe { LockedChain::after(e).find(|&n| is_ours(net, n)) };
        match next {
            Some(n) => {
                // SAFETY: as above, `n` is live.
                self.sk = unsafe { Entry::sk_of(n) };
                n
            }
            None => self.find_from(net, self.bucket + 1, None),
        }
    }
}

/// An entry as a seq_file record.
fn item(e: *mut Entry) -> Option<Record<NonNull<Entry>>> {
    NonNull::new(e).map(Record::Item)
}

/// `/proc/net/toa_table`: a seq_file over the store's entries of the file's namespace.
struct TableFile;

// SAFETY: an entry `start` or `next` returns is in a bucket whose lock `TableIter::held` holds until the
// following `next` (which moves on) or `stop` (which drops it): it is not freed nor written meanwhile
// (removal takes the lock), and the store is dropped only after the `/proc` files are gone. The callbacks
// and the shim's operations are tied below.
unsafe impl SeqOps for TableFile {
    type State = TableIter;
    type Item = Entry;

    /// A read that continues the previous one goes on from the bucket and place where it stopped; only a
    /// jump (`lseek`, or reading again from 0) walks from the beginning.
    #[inline(always)]
    fn start(net: &Net, it: &mut TableIter, pos: i64) -> Option<Record<NonNull<Entry>>> {
        if pos == 0 {
            it.last_pos = 0;
            return Some(Record::Header);
        }
        let e = if pos == it.last_pos {
            // The entry the previous read could not fit.
            it.find_from(net, it.bucket, Some(it.sk))
        } else {
            let mut e = it.find_from(net, 0, None);
            for _ in 1..pos {
                if e.is_null() {
                    break;
                }
                // SAFETY: `e` was just returned by `find_from` or `next_after`.
                e = unsafe { it.next_after(net, e) };
            }
            e
        };
        it.last_pos = pos;
        item(e)
    }

    #[inline(always)]
    fn next(
        net: &Net,
        it: &mut TableIter,
        prev: Record<NonNull<Entry>>,
        pos: &mut i64,
    ) -> Option<Record<NonNull<Entry>>> {
        *pos += 1;
        let e = match prev {
            Record::Header => it.find_from(net, 0, None),
            // SAFETY: `e` is what `start` or `next` returned last: the current entry.
            Record::Item(e) => unsafe { it.next_after(net, e.as_ptr()) },
        };
        it.last_pos = *pos;
        item(e)
    }

    /// Releases the bucket lock, if one is held.
    fn stop(it: &mut TableIter) {
        it.held = None;
    }

    #[inline(always)]
    fn show(seq: &SeqFile, record: Record<&Entry>) -> Shown {
        let e = match record {
            Record::Header => {
                seq.puts(c"sk local lb client vip origin\n");
                let missed = hooks::destruct_missed();
                if missed > 0 {
                    seq.printf(&TABLE_MISSED, (missed,));
                }
                return Shown::Printed;
            }
            Record::Item(e) => e,
        };
        // Under the bucket lock the entry cannot be freed; checked all the same.
        // SAFETY: an entry of a bucket whose lock is held (`SeqOps`' contract above).
        let Some(e) = (unsafe { Entry::snapshot(e) }) else {
            return Shown::Skipped;
        };
        // SAFETY: the entry's socket, which cannot be destroyed while its entry is in a locked bucket
        // (the destructor hook removes the entry first, under the lock), and no destruction was missed
        // (`find_from`).
        let sk = unsafe { Sock::from_raw(e.sk) };
        let (local, lb) = sk_endpoints(sk);
        let client = Sockaddr::of(&e.toa.client);
        seq.printf(&TABLE_ROW, (Hashed(e.sk.cast()), &local, &lb, &client));
        match e.toa.vip {
            Some(vip) => seq.printf(&TABLE_VIP, (&Sockaddr::of(&vip),)),
            None => seq.puts(c"-"),
        }
        seq.printf(&TABLE_ORIGIN, (origin_name(e.toa.origin),));
        Shown::Printed
    }
}

// SAFETY: the shim's `toa_table_proc_ops` and `toa_table_seq_ops` name the callbacks defined here for
// `TableFile`, as a private file.
unsafe impl PrivateSeqOps for TableFile {
    fn proc_ops() -> *const ffi::ProcOps {
        core::ptr::addr_of!(ffi::toa_table_proc_ops)
    }

    fn seq_ops() -> *const ffi::SeqOperations {
        core::ptr::addr_of!(ffi::toa_table_seq_ops)
    }

    fn new_state() -> TableIter {
        TableIter {
            bucket: 0,
            sk: core::ptr::null(),
            last_pos: 0,
            held: None,
        }
    }
}

seq_callbacks!(private TableFile {
    open: toa_table_open,
    release: toa_table_release,
    start: toa_table_seq_start,
    next: toa_table_seq_next,
    stop: toa_table_seq_stop,
    show: toa_table_seq_show,
});

/// `toa_table`'s header, when destructions were missed.
const TABLE_MISSED: Format<(u64,)> =
    Format::new(c"# entries not listed: %llu socket destructions were missed (see README)\n");
/// `toa_table`: the socket and its addresses.
const TABLE_ROW: Format<(Hashed, &Sockaddr, &Sockaddr, &Sockaddr)> =
    Format::new(c"%p %pISpc %pISpc %pISpc ");
/// `toa_table`: the VIP.
const TABLE_VIP: Format<(&Sockaddr,)> = Format::new(c"%pISpc");
/// `toa_table`: the origin, ending the line.
const TABLE_ORIGIN: Format<(&CStr,)> = Format::new(c" %s\n");

/// The local and remote (load balancer) socket addresses of `sk`, in its own family.
#[inline(always)]
fn sk_endpoints(sk: &Sock) -> (Sockaddr, Sockaddr) {
    let lport = sk.num();
    let rport = u16::from_be(sk.dport_be());
    if sk.family() == AF_INET {
        (
            Sockaddr::V4(SockaddrIn::new(sk.rcv_saddr(), lport)),
            Sockaddr::V4(SockaddrIn::new(sk.daddr(), rport)),
        )
    } else {
        (
            Sockaddr::V6(SockaddrIn6::new(sk.v6_rcv_saddr(), lport)),
            Sockaddr::V6(SockaddrIn6::new(sk.v6_daddr(), rport)),
        )
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

/// The `/proc/net/toa_*` files' per-namespace callbacks (`toa_proc_net_ops` in `src/toa_shim.c`).
struct ProcFiles;

impl PernetOps for ProcFiles {
    /// Creates the namespace's `/proc/net/toa_*` files.
    fn init(net: &Net) -> Result {
        let dir = net.proc_net();
        let stats = dir.create_single::<StatsFile>(STATS_NAME)?;
        // On failure, `stats` is removed as it drops.
        let table = dir.create_private::<TableFile>(TABLE_NAME)?;
        stats.keep();
        table.keep();
        Ok(())
    }

    /// Removes the namespace's `/proc/net/toa_*` files (waiting for the calls in progress on them).
    fn exit(net: &Net) {
        let dir = net.proc_net();
        // SAFETY: both created and kept by `init`, which succeeded for this namespace.
        unsafe {
            dir.remove(TABLE_NAME);
            dir.remove(STATS_NAME);
        }
    }
}

pernet_callbacks!(ProcFiles {
    init: toa_net_init,
    exit: toa_net_exit,
});

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
