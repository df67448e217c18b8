//! `toa-vmtest bench`: what toa costs, measured side by side in one run on the plain kernel and printed
//! as ratios (absolute figures under TCG are shown as context only). Rows 1 to 5 measure TCP's TOA, rows
//! 6 to 10 UDP's UOA (datagrams, lookups, the flow map's memory and size) and what UOA's netfilter hooks
//! cost TCP's data path.

use crate::env::{self, Stats};
use crate::fixture::*;
use crate::sys::Sock;
use lbemu::packet::{Datagram, Family, Segment, Tcp};
use lbemu::{Conn, Options, SERVER_V4};
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// A measured figure against its goal.
struct Row {
    what: String,
    ratio: f64,
    goal: Goal,
    context: String,
}

/// What a row's ratio must be.
#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, ratio: f64) -> bool {
        match self {
            Goal::AtLeast(g) => ratio >= g,
            Goal::AtMost(g) => ratio <= g,
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Up to 3 decimals, trailing zeros dropped: ">= 0.97", ">= 0.995", "<= 1", "<= 972".
        let (op, g) = match self {
            Goal::AtLeast(g) => (">=", g),
            Goal::AtMost(g) => ("<=", g),
        };
        let text = format!("{g:.3}");
        write!(
            f,
            "{op} {}",
            text.trim_end_matches('0').trim_end_matches('.')
        )
    }
}

fn entries() -> usize {
    std::env::var("TOA_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// Raises the open-file limit so that `n` sockets fit.
fn allow_fds(n: usize) {
    let lim = libc::rlimit {
        rlim_cur: (n + 1024) as u64,
        rlim_max: (n + 1024) as u64,
    };
    // SAFETY: plain syscall on a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

/// `/proc/meminfo` field in KiB.
fn meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Kernel memory that toa's store can use: slab (the entry caches, and the bucket array while `kvmalloc`
/// takes it from kmalloc: up to 4 MiB) and vmalloc (a larger bucket array).
fn kernel_kib() -> u64 {
    meminfo("Slab:") + meminfo("VmallocUsed:")
}

/// Waits `time` for memory that earlier work freed late (RCU callbacks, deferred frees) to leave
/// /proc/meminfo before [`kernel_kib`] reads it. A settling time for a measure, not a wait for state:
/// when the last deferred free has run is not observable, so there is nothing to poll.
fn settle(time: Duration) {
    std::thread::sleep(time);
}

/// The server side. The LB emulator has one address and 40 000 source ports: each time its port
/// counter wraps, connections go to a new listener, so no 4-tuple is ever used twice in a run (a
/// reused one would meet a live socket, or the LB emulator's stale segments).
pub(crate) struct Server {
    listeners: Vec<(Sock, u16)>,
    last_sport: u16,
}

impl Server {
    pub(crate) fn new() -> Server {
        Server {
            listeners: Vec::new(),
            last_sport: u16::MAX,
        }
    }

    /// Opens `n` connections (IPv4 on the wire; a TCP option 200 with a client port per connection
    /// when `with_toa`, else an unknown option of the same length, so that both handshakes cost the
    /// kernel and the LB emulator the same) and accepts them: returns the accepted sockets and the
    /// connections per second.
    pub(crate) fn open(
        &mut self,
        ctx: &mut Ctx,
        n: usize,
        with_toa: bool,
    ) -> Result<(Vec<Sock>, f64), String> {
        let start = Instant::now();
        let mut socks = Vec::with_capacity(n);
        for i in 0..n {
            let opts = if with_toa {
                ack_opts(toa4(200, CIP4, (i % 60000) as u16 + 1))
            } else {
                ack_opts(vec![99, 8, 0, 0, 0, 0, 0, 0])
            };
            socks.push(self.connect(ctx, opts)?);
        }
        Ok((socks, n as f64 / start.elapsed().as_secs_f64()))
    }

    /// Opens one connection (IPv4 on the wire) carrying `opts` and accepts it.
    fn connect(&mut self, ctx: &mut Ctx, opts: Options) -> Result<Sock, String> {
        let mut c = Conn::new(&mut ctx.lb, Family::V4, 0, opts);
        if c.sport < self.last_sport {
            let port = ctx.port();
            let l = io(
                Sock::listen((Ipv4Addr::UNSPECIFIED, port).into(), false),
                "listen",
            )?;
            self.listeners.push((l, port));
        }
        self.last_sport = c.sport;
        let (listener, port) = self.listeners.last().expect("a listener");
        c.dport = *port;
        io(c.connect(&mut ctx.lb, &[]), "handshake")?;
        io(listener.accept(WAIT), "accept").map(|(s, _)| s)
    }

    /// Closes `socks` with RST (SO_LINGER 0, so none lingers in FIN_WAIT), drops the RSTs the LB
    /// emulator receives for them, and waits until toa (if loaded) has freed every entry: the next
    /// measure starts from a quiet system. `socks` must be every TOA socket still open.
    pub(crate) fn close(&mut self, ctx: &mut Ctx, socks: Vec<Sock>) -> TestResult {
        socks.into_iter().for_each(Sock::abort);
        io(ctx.lb.drain(Duration::from_millis(300)), "drain")?;
        if env::loaded() {
            env::wait_all_freed()?;
        }
        Ok(())
    }

    /// After the module was loaded or unloaded: translated code and caches settle (under TCG, code
    /// patched by probe registration is translated again) before anything is timed.
    fn warm_up(&mut self, ctx: &mut Ctx) -> TestResult {
        let (s, _) = self.open(ctx, 300, true)?;
        self.close(ctx, s)
    }
}

/// Calls per second of `f` over `n` calls.
fn rate(n: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `toa-vmtest workload accept|getpeername|udp|udp-later|tcp-data N`: one of the benchmark's loads
/// alone, with the module in whatever state it is (loaded or not), for a profiler to sample
/// (`scripts/profile.sh`).
pub(crate) fn workload(ctx: &mut Ctx, what: &str, n: usize) -> i32 {
    allow_fds(n + 4096);
    let mut server = Server::new();
    let r = match what {
        // The sockets are closed with RST afterwards, so that loads can follow each other in one VM.
        "accept" => server
            .warm_up(ctx)
            .and_then(|_| server.open(ctx, n, true))
            .and_then(|(socks, r)| server.close(ctx, socks).map(|_| r))
            .map(|r| format!("{r:.0} conn/s")),
        "getpeername" => server
            .open(ctx, 1, true)
            .map(|(s, _)| format!("{:.0} calls/s", lookup_rate(&s, n))),
        // Datagrams with a UOA over row 6's flows (after a pass that creates their mappings when toa
        // is loaded), and data segments on one connection, as rows 6 and 7 send them.
        "udp" => udp_workload(ctx, n, false).map(|r| format!("{r:.0} datagrams/s")),
        "udp-later" => udp_workload(ctx, n, true).map(|r| format!("{r:.0} datagrams/s")),
        "tcp-data" => lb_tun()
            .and_then(|tun| tcp_data_round(ctx, tun, 2000, n))
            .map(|r| format!("{r:.0} segments/s")),
        _ => Err(format!("unknown workload {what}")),
    };
    match r {
        Ok(m) => {
            println!("workload {what} x{n}: {m}");
            0
        }
        Err(e) => {
            println!("workload {what}: {e}");
            1
        }
    }
}

/// What the guest's clock measures, from `TOA_VM_CLOCK` (set by `scripts/vm-run.sh`).
fn clock() -> String {
    match std::env::var("TOA_VM_CLOCK").unwrap_or_default().as_str() {
        "kvm" => "clock: KVM, real time".to_string(),
        "tcg" => "clock: TCG, the host's wall clock (its load shows in the rounds' spread)".to_string(),
        c if c.starts_with("tcg-icount:") => format!(
            "clock: TCG with qemu -icount {}: guest time counts the instructions executed \
             (1 ns each at shift=0), so rates and ratios are per instruction and repeat from run to run",
            &c["tcg-icount:".len()..]
        ),
        c => format!("clock: unknown ({c:?})"),
    }
}

pub(crate) fn run(ctx: &mut Ctx) -> i32 {
    match bench(ctx) {
        Ok(rows) => {
            println!();
            println!("{}", clock());
            println!(
                "{:<64} {:>8}  {:<8} {:<4} context",
                "measure", "ratio", "goal", "met"
            );
            for r in &rows {
                println!(
                    "{:<64} {:>8.3}  {:<8} {:<4} {}",
                    r.what,
                    r.ratio,
                    r.goal.to_string(),
                    if r.goal.met(r.ratio) { "yes" } else { "NO" },
                    r.context
                );
            }
            0
        }
        Err(e) => {
            println!("bench failed: {e}");
            1
        }
    }
}

/// Sets toa's state for the next measure: loaded or not, then warmed up.
fn with_module(ctx: &mut Ctx, server: &mut Server, loaded: bool) -> TestResult {
    if loaded {
        env::load(&[])?;
    } else {
        env::unload()?;
    }
    server.warm_up(ctx)
}

/// Kernel memory (KiB) that unloading and loading toa again gives back: slab + vmalloc before, minus
/// after (the entries go, the sockets stay open, without entries; the table is freed and allocated again).
fn reload_frees() -> Result<i64, String> {
    settle(Duration::from_secs(3));
    let before = kernel_kib();
    env::unload()?;
    env::load(&[])?;
    settle(Duration::from_secs(3));
    Ok(before as i64 - kernel_kib() as i64)
}

/// toa's table as loaded by default: its buckets (sysfs) and what it costs (KiB): slab + vmalloc with
/// the default table minus with the smallest one (256 buckets, 2 KiB), the median of three.
fn table_cost() -> Result<(usize, i64), String> {
    let mut kib = [0i64; 3];
    for k in &mut kib {
        env::load(&["table_buckets=256"])?;
        settle(Duration::from_secs(1));
        let small = kernel_kib() as i64;
        env::load(&[])?;
        settle(Duration::from_secs(1));
        *k = kernel_kib() as i64 - small + 2;
    }
    kib.sort_unstable();
    let path = "/sys/module/toa/parameters/table_buckets";
    let buckets = std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{path}: {e}"))?;
    Ok((buckets, kib[1]))
}

/// What the store's layout makes of `n` entries in a table of `buckets`, in bytes per entry: the entry
/// object (40 B in `toa_entry`, 102 per 4 KiB slab) and the table's share: 8 B per bucket, allocated at
/// its exact size (a power of two, at least a page).
fn entry_bytes_by_construction(n: usize, buckets: usize) -> f64 {
    4096.0 / 102.0 + (buckets * 8) as f64 / n as f64
}

/// The median of `v` (sorted in place; `v` is not empty).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// "min-max" of `v`, for the context column.
fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.3}-{max:.3}")
}

fn bench(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let n = entries();
    let max = max_entries(n);
    allow_fds(max + MAX_EXTRA + 4096);
    let mut rows = Vec::new();
    let mut server = Server::new();
    // Every load runs on CPU 1 (its softirqs too: the LB emulator's writes to the tun device run the
    // receive path on the writer's CPU), row 4's reader on CPU 0: the same placement in every run. Not
    // CPU 0 for the loads: the boot CPU also takes the VM's device interrupts and housekeeping, which
    // spread row 1's rounds (0.937-0.979 there, against 0.926-0.940 unbound).
    pin_to_cpu(1);
    if selected(&[1]) {
        accept_row(ctx, &mut server, &mut rows)?;
    }
    if selected(&[2]) {
        getpeername_row(ctx, &mut server, &mut rows)?;
    }
    if selected(&[3, 4, 5]) {
        entries_rows(ctx, &mut server, &mut rows, n, max)?;
    }
    udp_rows(ctx, &mut rows)?;
    Ok(rows)
}

/// Whether `TOA_BENCH_ROWS` (row numbers separated by commas; empty or unset: all) asks for one of `row`.
fn selected(row: &[u32]) -> bool {
    let want = std::env::var("TOA_BENCH_ROWS").unwrap_or_default();
    let want: Vec<u32> = want
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    want.is_empty() || row.iter().any(|r| want.contains(r))
}

/// Row 1.
fn accept_row(ctx: &mut Ctx, server: &mut Server, rows: &mut Vec<Row>) -> TestResult {
    eprintln!("bench: 1. accept rounds");
    // 1. Accepted connections per second with a TOA on every connection: toa loaded vs no module, in
    // interleaved rounds (each after a warm-up); the ratio is the median of the rounds' ratios, so that
    // one round disturbed by the host does not move it.
    // For context, toa loaded with connections whose handshake carries a same-size option that is not a
    // TOA: what the hooks cost a connection without TOA (the `syn_recv_sock` return hook runs for every
    // connection, since its entry cannot know yet whether the handshake carries a TOA; getname and the
    // destructor only look for an entry).
    // Each kind of connection is measured at the same place of the round with and without the module
    // (first TOA, then non-TOA, each time after a load or unload and a warm-up): the second load of a
    // run costs about 300 instructions per connection less than the first, whatever is loaded.
    let (rounds, per) = (7, 3000);
    let (mut with, mut without, mut ratios, mut no_toa_ratios) = (0.0, 0.0, Vec::new(), Vec::new());
    let (mut with_no_toa, mut without_no_toa) = (0.0, 0.0);
    for _ in 0..rounds {
        with_module(ctx, server, false)?;
        let (s, off) = server.open(ctx, per, true)?;
        server.close(ctx, s)?;
        let (s, off_no_toa) = server.open(ctx, per, false)?;
        server.close(ctx, s)?;
        with_module(ctx, server, true)?;
        let (s, on) = server.open(ctx, per, true)?;
        server.close(ctx, s)?;
        let (s, on_no_toa) = server.open(ctx, per, false)?;
        server.close(ctx, s)?;
        (with, without) = (with + on, without + off);
        (with_no_toa, without_no_toa) = (with_no_toa + on_no_toa, without_no_toa + off_no_toa);
        ratios.push(on / off);
        no_toa_ratios.push(on_no_toa / off_no_toa);
    }
    let (with, without) = (with / f64::from(rounds), without / f64::from(rounds));
    let (with_no_toa, without_no_toa) = (
        with_no_toa / f64::from(rounds),
        without_no_toa / f64::from(rounds),
    );
    rows.push(Row {
        what: "1. accepted conns/s, TOA on every conn: toa loaded / no module".into(),
        ratio: median(&mut ratios),
        goal: Goal::AtLeast(0.995),
        context: format!(
            "{with:.0} vs {without:.0} conn/s ({rounds} interleaved rounds of {per}; rounds {}); per conn {}; {PEER}: 0.996 (+118)",
            spread(&ratios),
            per_op(with, without),
        ),
    });
    rows.push(Row {
        what: "1b. accepted conns/s, same-size non-TOA option: toa / no module".into(),
        ratio: median(&mut no_toa_ratios),
        goal: Goal::AtLeast(0.995),
        context: format!(
            "{with_no_toa:.0} vs {without_no_toa:.0} conn/s (the same rounds; rounds {}); per conn {}",
            spread(&no_toa_ratios),
            per_op(with_no_toa, without_no_toa),
        ),
    });
    Ok(())
}

/// Row 2.
fn getpeername_row(ctx: &mut Ctx, server: &mut Server, rows: &mut Vec<Row>) -> TestResult {
    eprintln!("bench: 2. getpeername");
    // 2. getpeername on a TOA socket with toa vs a plain socket without the module, in interleaved
    // rounds (median of the rounds' ratios); with toa also a socket without TOA, and getsockopt 4096.
    let (rounds, calls) = (5, CALLS);
    let (mut costs, mut toa_rates, mut plain_rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut no_toa_rates, mut sockopt_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        with_module(ctx, server, true)?;
        let (toa_sock, _) = server.open(ctx, 1, true)?;
        let nat64_sock = server.connect(ctx, ack_opts(toa6(253, CIP6, CPORT)))?;
        let (mut no_toa_sock, _) = server.open(ctx, 1, false)?;
        let with_toa = lookup_rate(&toa_sock, calls);
        no_toa_rates.push(lookup_rate(&no_toa_sock, calls));
        sockopt_rates.push(rate(calls, || {
            let _ = nat64_sock.toa_lookup(20);
        }));
        let mut all = toa_sock;
        all.push(nat64_sock);
        all.append(&mut no_toa_sock);
        server.close(ctx, all)?;
        with_module(ctx, server, false)?;
        let (plain, _) = server.open(ctx, 1, false)?;
        let plain_rate = lookup_rate(&plain, calls);
        server.close(ctx, plain)?;
        costs.push(plain_rate / with_toa);
        toa_rates.push(with_toa);
        plain_rates.push(plain_rate);
    }
    let (toa_rate, plain_rate) = (median(&mut toa_rates), median(&mut plain_rates));
    let no_toa_rate = median(&mut no_toa_rates);
    let sockopt_rate = median(&mut sockopt_rates);
    rows.push(Row {
        what: "2. getpeername() cost: TOA socket with toa / plain socket, no module".into(),
        ratio: median(&mut costs),
        goal: Goal::AtMost(1.00),
        context: format!(
            "{toa_rate:.0} vs {plain_rate:.0} calls/s (medians of {rounds} interleaved rounds; rounds {}); per call {}; {PEER}: 1.078 (+41)",
            spread(&costs),
            per_op(toa_rate, plain_rate),
        ),
    });
    rows.push(Row {
        what: "2b. getpeername() cost, socket without TOA: toa / no module".into(),
        ratio: plain_rate / no_toa_rate,
        goal: Goal::AtMost(1.05),
        context: format!(
            "{no_toa_rate:.0} calls/s; per call {}; {PEER}: 1.057 (+30)",
            per_op(no_toa_rate, plain_rate)
        ),
    });
    rows.push(Row {
        what: "2c. getsockopt 4096 (NAT64 client): instructions per call".into(),
        ratio: 1e9 / sockopt_rate,
        goal: Goal::AtMost(972.0),
        context: format!("{sockopt_rate:.0} calls/s, the loop included; {PEER}: 972 (the goal)"),
    });
    Ok(())
}

/// The C module the hooks are compared with: DPVS's kmod/toa built for the same plain 6.12 kernel and
/// measured on this harness once (it is not built here; it patches kernel read-only data).
const PEER: &str = "DPVS kmod/toa, measured once on this harness";

/// The cost per operation of `with` against `without` (rates per second): under the instruction clock
/// (`-icount`), "N vs M instr (+D)".
fn per_op(with: f64, without: f64) -> String {
    let (w, wo) = (1e9 / with, 1e9 / without);
    format!("{w:.0} vs {wo:.0} instr ({:+.0})", w - wo)
}

/// getpeername calls per second in rows 2 and 5.
const CALLS: usize = 200_000;

/// Rows 3, 4 and 5: at `n` live TOA sockets, then up to `max`.
fn entries_rows(
    ctx: &mut Ctx,
    server: &mut Server,
    rows: &mut Vec<Row>,
    n: usize,
    max: usize,
) -> TestResult {
    let calls = CALLS;
    eprintln!("bench: 3. memory at {n} entries");
    // 3. Kernel memory per stored entry at `n` live TOA sockets: the entries' own memory (what a reload
    // of toa gives back with the `n` entries stored, minus what it gives back with none: the median of
    // three) plus the table's share (its whole cost, which does not depend on `n`, divided by `n`).
    with_module(ctx, server, true)?;
    let (buckets, table_kib) = table_cost()?;
    let mut empty = [reload_frees()?, reload_frees()?, reload_frees()?];
    empty.sort_unstable();
    let (socks, _) = server.open(ctx, n, true)?;
    let full = reload_frees()?;
    let entries_only = (full - empty[1]) as f64 * 1024.0 / n as f64;
    let table_share = table_kib as f64 * 1024.0 / n as f64;
    rows.push(Row {
        what: format!("3. kernel memory per stored entry at {n} live TOA sockets (bytes)"),
        ratio: entries_only + table_share,
        goal: Goal::AtMost(64.0),
        context: format!(
            "entries {entries_only:.1} B (a reload gives back {full} KiB with them, {} KiB without) + table {table_share:.1} B ({table_kib} KiB, {buckets} buckets); by construction {:.1} B",
            empty[1],
            entry_bytes_by_construction(n, buckets)
        ),
    });
    server.close(ctx, socks)?;
    server.warm_up(ctx)?;
    // 5a. Lookup cost with few entries, for the flatness check below.
    let (few, _) = server.open(ctx, 1000, true)?;
    let at_1k = lookup_rate(&few, calls);
    let (many, made) = server.open(ctx, n - few.len(), true)?;
    let at_n = lookup_rate(&many, calls);

    eprintln!("bench: 4. toa_table read under load");
    // 4. Reading toa_table at `n` entries while connections are accepted: the accept rate during the
    // read against without a read, and against during a read of the kernel's own socket dump
    // (/proc/net/tcp, same number of sockets): under single-threaded TCG the two vCPUs take turns on
    // one host CPU, so any reader slows the accept loop; the dump must not slow it more than that.
    let mut extra = Vec::new();
    let (toa_read, table_lines, during) = accept_during(ctx, server, &mut extra, || {
        env::toa_table().map(|l| l.len()).unwrap_or(0)
    })?;
    let (tcp_read, tcp_lines, during_tcp) = accept_during(ctx, server, &mut extra, || {
        std::fs::read_to_string("/proc/net/tcp")
            .map(|t| t.lines().count())
            .unwrap_or(0)
    })?;
    let (s, quiet) = server.open(ctx, 2000, true)?;
    extra.extend(s);
    let stall = during / during_tcp;
    rows.push(Row {
        what: format!("4. accept rate reading toa_table ({table_lines} lines) / reading /proc/net/tcp"),
        ratio: stall,
        goal: Goal::AtLeast(0.90),
        context: format!(
            "{during:.0} vs {during_tcp:.0} conn/s, {quiet:.0} without a read ({:.2} of it); read in {:.2} s, /proc/net/tcp ({tcp_lines} lines) in {:.2} s",
            during / quiet,
            toa_read.as_secs_f64(),
            tcp_read.as_secs_f64()
        ),
    });

    eprintln!("bench: 5. lookups up to {max} entries");
    // 5. Lookup cost at 1 000, `n` and `max` entries.
    let (most, _) = server.open(ctx, max.saturating_sub(n + extra.len()), true)?;
    let live = n + extra.len() + most.len();
    let at_max = lookup_rate(if most.is_empty() { &many } else { &most }, calls);
    let flat = at_1k / at_n.min(at_max);
    rows.push(Row {
        what: format!("5. getpeername cost at {n} and {live} entries / at 1000 (worst)"),
        ratio: flat,
        goal: Goal::AtMost(1.10),
        context: format!(
            "{at_1k:.0}, {at_n:.0}, {at_max:.0} calls/s; {made:.0} conn/s while filling"
        ),
    });
    let all = [most, extra, many, few].into_iter().flatten().collect();
    server.close(ctx, all)
}

/// Most connections opened while `/proc/net/toa_table` or `/proc/net/tcp` is read.
const MAX_EXTRA: usize = 40_000;

/// Accepts TOA connections while `read` runs again and again on another thread for at least 3 s:
/// returns how long one `read` took, what it returned and the connections per second meanwhile (the
/// connections are added to `extra`).
fn accept_during(
    ctx: &mut Ctx,
    server: &mut Server,
    extra: &mut Vec<Sock>,
    read: impl Fn() -> usize + Send + Sync,
) -> Result<(Duration, usize, f64), String> {
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            // The other vCPU than the accept loop's (see `bench`): the read and the loop each have a
            // CPU, whatever the scheduler would have done.
            pin_to_cpu(0);
            let t = Instant::now();
            let (mut reads, mut r) = (0u32, 0);
            while reads == 0 || t.elapsed() < Duration::from_secs(3) {
                r = read();
                reads += 1;
            }
            (t.elapsed() / reads, r)
        });
        let t = Instant::now();
        let mut k = 0usize;
        while !reader.is_finished() && k < MAX_EXTRA / 2 {
            let (s, _) = server.open(ctx, 20, true)?;
            extra.extend(s);
            k += 20;
        }
        let rate = k as f64 / t.elapsed().as_secs_f64();
        let (took, r) = reader.join().expect("reader thread");
        Ok((took, r, rate))
    })
}

/// Binds the calling thread to `cpu`. On a VM without that CPU the call fails and the thread stays
/// unbound (with one vCPU, row 4's reader shares it with the accept loop).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: `set` is a plain bit set, initialised by CPU_ZERO before use; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// getpeername calls per second on the middle socket of `socks`.
fn lookup_rate(socks: &[Sock], calls: usize) -> f64 {
    let s = &socks[socks.len() / 2];
    rate(calls, || {
        let _ = s.peer();
    })
}

/// The most live sockets to measure a lookup at: `TOA_BENCH_MAX`, by default what half the memory
/// available now holds at about 4 KiB of kernel memory per connection, within the open-file limit.
fn max_entries(n: usize) -> usize {
    std::env::var("TOA_BENCH_MAX")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| (meminfo("MemAvailable:") as usize * 1024 / 2 / 4096).min(1_000_000))
        .max(n + 1000)
}

// ---------------------------------------------------------------------------------------------------
// UDP (UOA) and the TCP data path: rows 6 to 10.

/// Rows 6 to 10, each when `TOA_BENCH_ROWS` selects it. The LB emulator's TUN device carries every
/// packet; the loads run on the CPU `bench` bound them to.
fn udp_rows(ctx: &mut Ctx, rows: &mut Vec<Row>) -> TestResult {
    if !selected(&[6, 7, 8, 9, 10]) {
        return Ok(());
    }
    let tun = lb_tun()?;
    if selected(&[6]) {
        udp_receive_row(ctx, tun, rows)?;
    }
    if selected(&[7]) {
        tcp_data_row(ctx, tun, rows)?;
    }
    if selected(&[8]) {
        lookup_versions_row(ctx, tun, rows)?;
    }
    if selected(&[9]) {
        mapping_memory_row(ctx, tun, rows)?;
    }
    if selected(&[10]) {
        mapping_lookup_row(ctx, tun, rows)?;
    }
    // Back to the defaults: the last row's mappings are freed now, not by the runner's rmmod.
    env::load(&[])
}

/// The LB emulator's TUN descriptor, found in `/proc/self/fd` (the only `/dev/net/tun` this process
/// opens). Rows 6 to 10 write packets encoded before the timed loop through it, one `write` each as
/// `Lb::send_udp` and `Lb::send` do, without encoding every packet again in the loop: building packets
/// is the load balancer's work, not the server's, and under the instruction clock it would dilute the
/// ratios. Nothing is read from it here: the LB emulator reads the kernel's replies as before.
fn lb_tun() -> Result<RawFd, String> {
    let dir = "/proc/self/fd";
    let mut fds = Vec::new();
    for e in std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .flatten()
    {
        if std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "/dev/net/tun") {
            fds.extend(e.file_name().to_str().and_then(|f| f.parse::<RawFd>().ok()));
        }
    }
    match fds[..] {
        [fd] => Ok(fd),
        _ => Err(format!(
            "{} descriptors of /dev/net/tun in {dir}, want the LB emulator's one",
            fds.len()
        )),
    }
}

/// Writes one packet to the TUN device: the kernel has received it (up to the socket's queue) when the
/// call returns, since the receive path runs in the writer's context.
fn tun_write(tun: RawFd, p: &[u8]) -> TestResult {
    // SAFETY: writes `p.len()` bytes from `p`.
    let n = unsafe { libc::write(tun, p.as_ptr().cast(), p.len()) };
    if n != p.len() as isize {
        return Err(format!(
            "TUN write of {} bytes: {n} ({})",
            p.len(),
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// LB source ports per LB address in the flows of the UDP rows.
const FLOW_PORTS: usize = 50_000;
/// The last octet of their first LB address (192.0.2.20: on the TUN's prefix, neither the server's
/// 192.0.2.1 nor the LB emulator's 192.0.2.2); the last one is 192.0.2.254.
const FLOW_ADDR0: usize = 20;
/// Payload bytes of each UDP datagram.
const PAYLOAD: usize = 64;
/// Bytes of the IPv4 header of the UDP rows' datagrams: 20 and the 16-byte UOA.
const IP_HL: usize = 36;

/// Flow `i` of the UDP rows: the LB's address (192.0.2.20 on) and source port (10 000 on).
fn flow_lb(i: usize) -> SocketAddrV4 {
    assert!(
        i < (255 - FLOW_ADDR0) * FLOW_PORTS,
        "flow {i}: out of LB addresses"
    );
    SocketAddrV4::new(
        Ipv4Addr::new(192, 0, 2, (FLOW_ADDR0 + i / FLOW_PORTS) as u8),
        (10_000 + i % FLOW_PORTS) as u16,
    )
}

/// The client that flow `i`'s UOA announces: 198.18.0.0/15 (the benchmarking prefix), port 1024 on.
fn flow_client(i: usize) -> SocketAddrV4 {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    SocketAddrV4::new(
        Ipv4Addr::from(base + (i % (1 << 17)) as u32),
        (1024 + i % 60_000) as u16,
    )
}

/// The datagram of flow `i` to local port `dport`: IPv4 option 31 of 16 bytes (31, 16, 0, 0, cport,
/// vport, cip, vip: the client of [`flow_client`] behind VIP4:VPORT) and a payload of [`PAYLOAD`] bytes.
fn flow_datagram(i: usize, dport: u16) -> Datagram {
    let (lb, c) = (flow_lb(i), flow_client(i));
    Datagram {
        src: IpAddr::V4(*lb.ip()),
        dst: IpAddr::V4(SERVER_V4),
        ipv4_options: ip4opt(IpAddr::V4(*c.ip()), c.port(), IpAddr::V4(VIP4), VPORT),
        ipv6_dstopts: Vec::new(),
        sport: lb.port(),
        dport,
        payload: vec![0x5a; PAYLOAD],
    }
}

/// The Internet checksum (RFC 1071) of `data`, from the unfolded sum `sum`.
fn inet_checksum(mut sum: u32, data: &[u8]) -> u16 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = words.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The encoded datagrams of the flows to one local port, for the fills of rows 9 and 10: the LB
/// emulator's encoding of flow 0 with, per flow, the source address and port, the client and the two
/// checksums written again (a few hundred instructions instead of an encoding's allocations).
struct FlowPackets {
    template: Vec<u8>,
}

impl FlowPackets {
    /// The datagrams to `dport`, checked against the LB emulator's encoder.
    fn new(dport: u16) -> Result<FlowPackets, String> {
        let template = flow_datagram(0, dport).encode();
        check!(
            template.len() == IP_HL + 8 + PAYLOAD && usize::from(template[0] & 0x0f) * 4 == IP_HL,
            "flow 0's datagram: {} bytes, header byte {:#x}",
            template.len(),
            template[0]
        );
        let p = FlowPackets { template };
        let mut buf = Vec::new();
        for i in [1, 4095, 49_999, 50_000, 131_072, 999_999] {
            p.write(i, &mut buf);
            check!(
                buf == flow_datagram(i, dport).encode(),
                "flow {i}: the rewritten datagram is not the LB emulator's"
            );
        }
        Ok(p)
    }

    /// Flow `i`'s datagram, in `buf`.
    fn write(&self, i: usize, buf: &mut Vec<u8>) {
        let (lb, c) = (flow_lb(i), flow_client(i));
        buf.clear();
        buf.extend_from_slice(&self.template);
        buf[12..16].copy_from_slice(&lb.ip().octets());
        // The UOA starts at byte 20: type, length, operation, padding, cport, vport, cip, vip.
        buf[24..26].copy_from_slice(&c.port().to_be_bytes());
        buf[28..32].copy_from_slice(&c.ip().octets());
        buf[10..12].fill(0);
        let sum = inet_checksum(0, &buf[..IP_HL]);
        buf[10..12].copy_from_slice(&sum.to_be_bytes());
        let udp = IP_HL;
        buf[udp..udp + 2].copy_from_slice(&lb.port().to_be_bytes());
        buf[udp + 6..udp + 8].fill(0);
        // The pseudo-header: source, destination, protocol, UDP length.
        let mut pseudo = u32::from(libc::IPPROTO_UDP as u16) + (buf.len() - udp) as u32;
        for w in buf[12..20].chunks_exact(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        let sum = match inet_checksum(pseudo, &buf[udp..]) {
            0 => 0xffff,
            s => s,
        };
        buf[udp + 6..udp + 8].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Datagrams (or TCP segments) per burst of TUN writes, read back by the server after each burst.
const BATCH: usize = 32;

/// A UDP server's `recvmmsg` buffers: [`BATCH`] datagrams and their sources (what a UOA server looks a
/// flow up with).
struct Receiver {
    _bufs: Vec<[u8; 2048]>,
    _names: Vec<libc::sockaddr_storage>,
    _iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Receiver {
    fn new() -> Receiver {
        let mut bufs = vec![[0u8; 2048]; BATCH];
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut names = vec![unsafe { std::mem::zeroed::<libc::sockaddr_storage>() }; BATCH];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let msgs = iovs
            .iter_mut()
            .zip(&mut names)
            .map(|(iov, name)| {
                // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // The headers point into the other vectors' heap buffers, which never move or grow.
        Receiver {
            _bufs: bufs,
            _names: names,
            _iovs: iovs,
            msgs,
        }
    }

    /// Reads every datagram queued on `sock` now (`recvmmsg`, [`BATCH`] at a time); returns how many.
    fn drain(&mut self, sock: &Sock) -> Result<usize, String> {
        let mut total = 0;
        loop {
            for m in &mut self.msgs {
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            // SAFETY: `msgs` holds BATCH headers whose buffers and names live in `self`.
            let n = unsafe {
                libc::recvmmsg(
                    sock.fd(),
                    self.msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(total)
                } else {
                    Err(format!("recvmmsg: {e}"))
                };
            }
            total += n as usize;
            if (n as usize) < BATCH {
                return Ok(total);
            }
        }
    }
}

/// A UDP server socket on the next port (IPv4, any address), with room for a few bursts.
fn udp_server(ctx: &mut Ctx) -> Result<(Sock, u16), String> {
    let port = ctx.port();
    let sock = io(
        Sock::udp((Ipv4Addr::UNSPECIFIED, port).into(), 4 << 20),
        "UDP socket",
    )?;
    Ok((sock, port))
}

/// Writes `n` datagrams, `packet(k)` for k in 0..n, in bursts of [`BATCH`], each burst read by `sock`
/// with `recvmmsg`: datagrams per second; fails unless every one arrived.
fn pump_udp<'a>(
    tun: RawFd,
    sock: &Sock,
    rx: &mut Receiver,
    n: usize,
    packet: impl Fn(usize) -> &'a [u8],
) -> Result<f64, String> {
    let start = Instant::now();
    let (mut sent, mut got) = (0, 0);
    while sent < n {
        let end = (sent + BATCH).min(n);
        for k in sent..end {
            tun_write(tun, packet(k))?;
        }
        sent = end;
        got += rx.drain(sock)?;
    }
    let secs = start.elapsed().as_secs_f64();
    check!(got == n, "{got} of {n} datagrams received");
    Ok(n as f64 / secs)
}

/// Sends one datagram of each flow of `flows` (each creates its flow's mapping) to the port of `pk`,
/// read back by `sock` every [`BATCH`]; returns how long it took (guest time). Fails unless every
/// datagram arrived.
fn fill(
    tun: RawFd,
    sock: &Sock,
    rx: &mut Receiver,
    pk: &FlowPackets,
    flows: Range<usize>,
) -> Result<Duration, String> {
    let start = Instant::now();
    let n = flows.len();
    let mut buf = Vec::with_capacity(pk.template.len());
    let mut got = 0;
    for (k, i) in flows.enumerate() {
        pk.write(i, &mut buf);
        tun_write(tun, &buf)?;
        if k % BATCH == BATCH - 1 {
            got += rx.drain(sock)?;
        }
    }
    got += rx.drain(sock)?;
    check!(got == n, "{got} of {n} datagrams received");
    Ok(start.elapsed())
}

/// Live mappings by toa's counters: `uoa_mapping_alloc - uoa_mapping_free`.
fn live_mappings() -> Result<i64, String> {
    let s = Stats::read()?;
    Ok(s.get("uoa_mapping_alloc") as i64 - s.get("uoa_mapping_free") as i64)
}

/// Flows of row 6: a few thousand LB source ports, as one busy load balancer address sends them.
const ROW6_FLOWS: usize = 4096;

/// Row 6's datagrams of every flow, by what their IPv4 header carries: the flow's UOA, a same-size
/// option toa does not read (type 30, an RFC 4727 experiment value), or no option.
fn row6_packets(port: u16) -> [Vec<Vec<u8>>; 3] {
    let with = |opts: &dyn Fn(Vec<u8>) -> Vec<u8>| -> Vec<Vec<u8>> {
        (0..ROW6_FLOWS)
            .map(|i| {
                let mut d = flow_datagram(i, port);
                d.ipv4_options = opts(d.ipv4_options);
                d.encode()
            })
            .collect()
    };
    [
        with(&|o| o),
        with(&|mut o| {
            o[0] = 30;
            o
        }),
        with(&|_| Vec::new()),
    ]
}

/// Row 6.
fn udp_receive_row(ctx: &mut Ctx, tun: RawFd, rows: &mut Vec<Row>) -> TestResult {
    eprintln!("bench: 6. UDP datagrams with a UOA");
    // 6. Datagrams per second received by a UDP server socket (recvmmsg in bursts of BATCH), every
    // datagram with its flow's UOA, the flows taken in turn: toa loaded / no module, interleaved rounds
    // (with toa loaded, after a pass over every flow that creates the flows' mappings: the rounds
    // measure the steady state, where each datagram's option matches its flow's mapping and restarts
    // its idle time), median of the rounds' ratios.
    // For context, where toa's cost goes: in the same rounds, datagrams with a same-size option that
    // is not a UOA and datagrams without options, each against the same datagrams without the module,
    // measured while toa's map is still empty (just loaded): no option, the hook's entry (netfilter's
    // hook call, the protocol and header-length tests, the map's count); another option, also the
    // header copy and the option scan; a UOA, also the trust check, the mapping's update and a counter.
    // And after each round's UOAs, datagrams without options of the same flows (a balancer's later
    // datagrams, which carry no option): the lookup that restarts each flow's idle time.
    let (sock, port) = udp_server(ctx)?;
    let [uoa, other, none] = row6_packets(port);
    let mut rx = Receiver::new();
    let mut pass =
        |pkts: &[Vec<u8>], n: usize| pump_udp(tun, &sock, &mut rx, n, |k| &pkts[k % pkts.len()]);
    let (rounds, per, per_context, warm) = (7, 50_000, 20_000, 1024);
    let mut on = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut off = [Vec::new(), Vec::new(), Vec::new()];
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        env::unload()?;
        for (k, (pkts, n)) in [(&uoa, per), (&other, per_context), (&none, per_context)]
            .into_iter()
            .enumerate()
        {
            pass(pkts, warm)?;
            off[k].push(pass(pkts, n)?);
        }
        env::load(&[])?;
        for (k, pkts) in [(2, &none), (1, &other)] {
            pass(pkts, warm)?;
            on[k].push(pass(pkts, per_context)?);
        }
        let live = live_mappings()?;
        check!(live == 0, "{live} mappings after datagrams without a UOA");
        pass(&uoa, ROW6_FLOWS)?;
        let live = live_mappings()?;
        check!(
            live == ROW6_FLOWS as i64,
            "{live} mappings after a pass over {ROW6_FLOWS} flows"
        );
        on[0].push(pass(&uoa, per)?);
        ratios.push(on[0].last().unwrap() / off[0].last().unwrap());
        on[3].push(pass(&none, per_context)?);
    }
    // Guest nanoseconds per datagram (instructions under -icount shift=0), with and without toa.
    // The last: no option, flows known, against the same datagrams without the module.
    let ns: Vec<(f64, f64)> = [0, 1, 2, 2]
        .into_iter()
        .enumerate()
        .map(|(k, o)| (1e9 / median(&mut on[k]), 1e9 / median(&mut off[o])))
        .collect();
    rows.push(Row {
        what: "6. UDP datagrams/s with a UOA each: toa loaded / no module".into(),
        ratio: median(&mut ratios),
        goal: Goal::AtLeast(0.97),
        context: format!(
            "{:.0} vs {:.0} datagrams/s ({rounds} interleaved rounds of {per} over {ROW6_FLOWS} flows; rounds {}); per datagram {:.0} vs {:.0} guest ns: toa adds {:.0}; without a UOA, map empty: a same-size other option {:.0} vs {:.0} (+{:.0}), no option {:.0} vs {:.0} (+{:.0}); no option, flows known (a balancer's later datagrams): {:.0} vs {:.0} (+{:.0})",
            1e9 / ns[0].0,
            1e9 / ns[0].1,
            spread(&ratios),
            ns[0].0,
            ns[0].1,
            ns[0].0 - ns[0].1,
            ns[1].0,
            ns[1].1,
            ns[1].0 - ns[1].1,
            ns[2].0,
            ns[2].1,
            ns[2].0 - ns[2].1,
            ns[3].0,
            ns[3].1,
            ns[3].0 - ns[3].1,
        ),
    });
    Ok(())
}

/// Row 6's load alone (`workload udp N`): a pass over its flows, then `n` datagrams with a UOA
/// (`later`: without options, as a balancer sends a flow's later datagrams); datagrams/s.
fn udp_workload(ctx: &mut Ctx, n: usize, later: bool) -> Result<f64, String> {
    let tun = lb_tun()?;
    let (sock, port) = udp_server(ctx)?;
    let [uoa, _, none] = row6_packets(port);
    let mut rx = Receiver::new();
    pump_udp(tun, &sock, &mut rx, ROW6_FLOWS, |k| &uoa[k])?;
    let pkts = if later { &none } else { &uoa };
    pump_udp(tun, &sock, &mut rx, n, |k| &pkts[k % pkts.len()])
}

/// Payload bytes of row 7's data segments.
const SEGMENT: usize = 128;

/// Row 7.
fn tcp_data_row(ctx: &mut Ctx, tun: RawFd, rows: &mut Vec<Row>) -> TestResult {
    eprintln!("bench: 7. TCP data segments");
    // 7. Data segments per second into an established TCP connection (no TOA), read by the server after
    // each burst: what the LOCAL_IN hooks cost TCP (the IPv4 hook looks at the protocol byte and
    // returns). toa loaded / no module, interleaved rounds (a new connection each, warmed up), median of
    // the rounds' ratios; 11 rounds, as single rounds spread by about 1 %, more than the cost measured.
    let (rounds, per, warm) = (11, 100_000, 2_000);
    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        env::unload()?;
        let without = tcp_data_round(ctx, tun, warm, per)?;
        env::load(&[])?;
        let with = tcp_data_round(ctx, tun, warm, per)?;
        on.push(with);
        off.push(without);
        ratios.push(with / without);
    }
    let (with, without) = (median(&mut on), median(&mut off));
    rows.push(Row {
        what: "7. TCP data segments/s, established conn: toa loaded / no module".into(),
        ratio: median(&mut ratios),
        goal: Goal::AtLeast(0.99),
        context: format!(
            "{with:.0} vs {without:.0} segments/s of {SEGMENT} B ({rounds} interleaved rounds of {per}; rounds {}); per segment {:.0} vs {:.0} guest ns (+{:.0})",
            spread(&ratios),
            1e9 / with,
            1e9 / without,
            1e9 / with - 1e9 / without
        ),
    });
    Ok(())
}

/// One connection from the LB emulator (no option) that sends `warm` and then `n` data segments of
/// [`SEGMENT`] bytes in bursts of [`BATCH`], the server reading each burst: segments per second of the
/// last `n`. The server's ACKs queue up in the TUN device (the excess is dropped there) and are drained
/// afterwards.
fn tcp_data_round(ctx: &mut Ctx, tun: RawFd, warm: usize, n: usize) -> Result<f64, String> {
    let port = ctx.port();
    let listener = io(
        Sock::listen((Ipv4Addr::UNSPECIFIED, port).into(), false),
        "listen",
    )?;
    let mut conn = Conn::new(&mut ctx.lb, Family::V4, port, Options::default());
    io(conn.connect(&mut ctx.lb, &[]), "handshake")?;
    let (sock, _) = io(listener.accept(WAIT), "accept")?;
    // The segments `Conn::send` would send next, encoded now: sequence numbers from the handshake's ACK.
    let ack = conn.handshake_ack();
    let segs: Vec<Vec<u8>> = (0..warm + n)
        .map(|k| {
            let mut s: Segment = ack.clone();
            s.tcp.seq = ack.tcp.seq.wrapping_add((k * SEGMENT) as u32);
            s.tcp.flags = Tcp::ACK | Tcp::PSH;
            s.tcp.payload = vec![0x5a; SEGMENT];
            s.encode()
        })
        .collect();
    pump_tcp(tun, &sock, &segs[..warm])?;
    let start = Instant::now();
    pump_tcp(tun, &sock, &segs[warm..])?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    sock.abort();
    drop(listener);
    io(ctx.lb.drain(Duration::from_millis(300)), "drain")?;
    Ok(rate)
}

/// Writes `segs` in bursts of [`BATCH`]; after each, the server reads the burst's bytes.
fn pump_tcp(tun: RawFd, sock: &Sock, segs: &[Vec<u8>]) -> TestResult {
    let mut buf = vec![0u8; 65536];
    for burst in segs.chunks(BATCH) {
        for s in burst {
            tun_write(tun, s)?;
        }
        let want = burst.len() * SEGMENT;
        let mut got = 0;
        while got < want {
            // SAFETY: reads into `buf`, at most its length.
            let r = unsafe {
                libc::recv(
                    sock.fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            check!(
                r > 0,
                "the server read {got} of a burst's {want} bytes, then {r} ({})",
                io::Error::last_os_error()
            );
            got += r as usize;
        }
    }
    Ok(())
}

/// `UOA_SO_GET_LOOKUP` (v0) and `UOA_SO_GET_LOOKUP1` (v1) of include/uoa.h, and their structures' sizes.
const UOA_V0: libc::c_int = 2048;
const UOA_V1: libc::c_int = 2049;
const V0_LEN: usize = 56;
const V1_LEN: usize = 40;

/// A UOA query for flow `i` to local port `port`, as a server names the flow after `recvfrom()`: v0
/// (`struct uoa_param_map`: af AF_INET, saddr, daddr 0 = any, sport, dport) or v1 (`union
/// uoa_sockopt_param`: type 0 = IPv4, sport, dport, saddr, daddr 0).
fn uoa_query(v1: bool, i: usize, port: u16) -> [u8; V0_LEN] {
    let lb = flow_lb(i);
    let mut q = [0u8; V0_LEN];
    if v1 {
        q[0..4].copy_from_slice(&0u32.to_ne_bytes());
        q[4..6].copy_from_slice(&lb.port().to_be_bytes());
        q[6..8].copy_from_slice(&port.to_be_bytes());
        q[8..12].copy_from_slice(&lb.ip().octets());
    } else {
        q[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        q[2..6].copy_from_slice(&lb.ip().octets());
        q[34..36].copy_from_slice(&lb.port().to_be_bytes());
        q[36..38].copy_from_slice(&port.to_be_bytes());
    }
    q
}

/// Asks query `q` (v0 or v1) on `sock`: the client answered.
fn uoa_ask(sock: &Sock, v1: bool, q: &[u8; V0_LEN]) -> io::Result<SocketAddrV4> {
    let mut b = *q;
    let (name, len) = if v1 {
        (UOA_V1, V1_LEN)
    } else {
        (UOA_V0, V0_LEN)
    };
    sock.getsockopt_buf(libc::IPPROTO_IP, name, &mut b, len)?;
    let (ip, port) = if v1 {
        ([b[8], b[9], b[10], b[11]], [b[4], b[5]])
    } else {
        ([b[38], b[39], b[40], b[41]], [b[54], b[55]])
    };
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(ip),
        u16::from_be_bytes(port),
    ))
}

/// Lookups per second on `sock`, `calls` of them, taking `queries` in turn; each query is first asked
/// once and must answer its flow's client (`flows[k]` for `queries[k]`).
fn uoa_lookup_rate(
    sock: &Sock,
    v1: bool,
    queries: &[[u8; V0_LEN]],
    flows: &[usize],
    calls: usize,
) -> Result<f64, String> {
    for (q, &i) in queries.iter().zip(flows) {
        let got = io(uoa_ask(sock, v1, q), &format!("flow {i}: lookup"))?;
        check!(
            got == flow_client(i),
            "flow {i}: lookup answered {got}, want {}",
            flow_client(i)
        );
    }
    let mut k = 0;
    Ok(rate(calls, || {
        let _ = uoa_ask(sock, v1, &queries[k]);
        k = if k + 1 == queries.len() { 0 } else { k + 1 };
    }))
}

/// Row 8.
fn lookup_versions_row(ctx: &mut Ctx, tun: RawFd, rows: &mut Vec<Row>) -> TestResult {
    eprintln!("bench: 8. v1 and v0 lookups");
    // 8. getsockopt 2049 (v1) on the server socket for a known flow, against 2048 (v0) for the same flow
    // (both find the same mapping; v1's structure is 40 bytes, v0's 56): interleaved rounds with toa
    // loaded (the default parameters), median of the rounds' ratios; v1 should not be slower.
    env::load(&[])?;
    let (sock, port) = udp_server(ctx)?;
    let mut rx = Receiver::new();
    let d = flow_datagram(0, port).encode();
    pump_udp(tun, &sock, &mut rx, 1, |_| &d)?;
    let (q0, q1) = ([uoa_query(false, 0, port)], [uoa_query(true, 0, port)]);
    let (rounds, calls) = (5, CALLS);
    let (mut v0s, mut v1s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let v0 = uoa_lookup_rate(&sock, false, &q0, &[0], calls)?;
        let v1 = uoa_lookup_rate(&sock, true, &q1, &[0], calls)?;
        v0s.push(v0);
        v1s.push(v1);
        ratios.push(v1 / v0);
    }
    rows.push(Row {
        what: "8. v1 lookups/s (getsockopt 2049) / v0's (2048), known flow".into(),
        ratio: median(&mut ratios),
        goal: Goal::AtLeast(0.95),
        context: format!(
            "{:.0} vs {:.0} lookups/s (medians of {rounds} interleaved rounds of {calls}; rounds {})",
            median(&mut v1s),
            median(&mut v0s),
            spread(&ratios)
        ),
    });
    Ok(())
}

/// A number from `/sys/kernel/slab/CACHE/ATTR` (its first field).
fn slab_attr(cache: &str, attr: &str) -> Result<u64, String> {
    let path = format!("/sys/kernel/slab/{cache}/{attr}");
    std::fs::read_to_string(&path)
        .map_err(|e| format!("{path}: {e}"))?
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path}: not a number"))
}

/// Mappings of row 9, and the bound it loads toa with.
const ROW9_MAPPINGS: usize = 100_000;
const ROW9_MAX: usize = 131_072;

/// Row 9.
fn mapping_memory_row(ctx: &mut Ctx, tun: RawFd, rows: &mut Vec<Row>) -> TestResult {
    let n = ROW9_MAPPINGS;
    eprintln!("bench: 9. memory at {n} mappings");
    // 9. Kernel memory per mapping at 100 000 mappings: the `uoa_flow` cache's slabs (its own cache,
    // never merged: typesafe by RCU) as they grow from empty, plus the table's share (what slab +
    // vmalloc hold with uoa_max_mappings=131072 minus with 256, whose 256 buckets take 2 KiB; median
    // of three loads). /proc/meminfo's Slab growth over the fill is printed as a cross-check.
    let max = format!("uoa_max_mappings={ROW9_MAX}");
    let params = [max.as_str(), "uoa_timeout=43200"];
    let mut kib = [0i64; 3];
    for k in &mut kib {
        env::load(&["uoa_max_mappings=256"])?;
        settle(Duration::from_secs(1));
        let small = kernel_kib() as i64;
        env::load(&params)?;
        settle(Duration::from_secs(1));
        *k = kernel_kib() as i64 - small + 2;
    }
    kib.sort_unstable();
    let table_kib = kib[1];
    let buckets = ROW9_MAX.next_power_of_two() / 2;
    let (sock, port) = udp_server(ctx)?;
    let pk = FlowPackets::new(port)?;
    let mut rx = Receiver::new();
    let cache = "uoa_flow";
    let (slabs0, objects0) = (slab_attr(cache, "slabs")?, slab_attr(cache, "objects")?);
    let slab_kib0 = meminfo("Slab:");
    let took = fill(tun, &sock, &mut rx, &pk, 0..n)?;
    drop(sock);
    settle(Duration::from_secs(3)); // for the Slab cross-check below; the mappings are counted already
    let live = live_mappings()?;
    check!(live == n as i64, "{live} mappings after {n} flows");
    let (slabs, objects) = (slab_attr(cache, "slabs")?, slab_attr(cache, "objects")?);
    let (order, per_slab, size) = (
        slab_attr(cache, "order")?,
        slab_attr(cache, "objs_per_slab")?,
        slab_attr(cache, "slab_size")?,
    );
    let slab_kib = meminfo("Slab:") as i64 - slab_kib0 as i64;
    let page = 4096u64 << order;
    let flows_b = ((slabs - slabs0) * page) as f64 / n as f64;
    let table_b = table_kib as f64 * 1024.0 / n as f64;
    // By construction: 88-byte objects, as many per slab as fit, and 8 bytes per bucket.
    let by_construction = 4096.0 / (4096 / 88) as f64 + (buckets * 8) as f64 / n as f64;
    rows.push(Row {
        what: format!("9. kernel memory per UDP mapping at {n} mappings (bytes)"),
        ratio: flows_b + table_b,
        goal: Goal::AtMost(96.0),
        context: format!(
            "mappings {flows_b:.1} B ({} slabs of {per_slab} x {size} B in {} KiB, {} objects) + table {table_b:.1} B ({table_kib} KiB, {buckets} buckets); Slab in /proc/meminfo +{slab_kib} KiB ({:.1} B each); by construction {by_construction:.1} B; {live} mappings in toa_stats, filled in {:.1} guest s",
            slabs - slabs0,
            page / 1024,
            objects - objects0,
            slab_kib as f64 * 1024.0 / n as f64,
            took.as_secs_f64()
        ),
    });
    Ok(())
}

/// The most mappings of row 10: `TOA_BENCH_MAPPINGS` (default 1 000 000, at least 100 000).
fn most_mappings() -> usize {
    std::env::var("TOA_BENCH_MAPPINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
        .max(ROW9_MAPPINGS)
}

/// Row 10.
fn mapping_lookup_row(ctx: &mut Ctx, tun: RawFd, rows: &mut Vec<Row>) -> TestResult {
    let big = most_mappings();
    let sizes = [1000, ROW9_MAPPINGS, big];
    eprintln!("bench: 10. v1 lookups at {sizes:?} mappings");
    // 10. v1 lookups at 1 000, 100 000 and `big` mappings (toa loaded with uoa_max_mappings=1048576:
    // 524 288 buckets), each size reached by one datagram per new flow: the cost at the worst size
    // against at 1 000. The lookups take 1 000 flows spread evenly over those present in turn (every
    // flow at 1 000), so that they see the chains' average length, not one flow's place in its chain.
    let max = format!("uoa_max_mappings={}", big.next_power_of_two().max(1 << 20));
    env::load(&[max.as_str(), "uoa_timeout=43200"])?;
    let (sock, port) = udp_server(ctx)?;
    let pk = FlowPackets::new(port)?;
    let mut rx = Receiver::new();
    let (mut done, mut took, mut rates) = (0, Duration::ZERO, Vec::new());
    for &size in &sizes {
        eprintln!("bench: 10. filling to {size} mappings");
        took += fill(tun, &sock, &mut rx, &pk, done..size)?;
        done = size;
        let live = live_mappings()?;
        check!(live == size as i64, "{live} mappings after {size} flows");
        let flows: Vec<usize> = (0..1000).map(|k| k * size / 1000).collect();
        let queries: Vec<[u8; V0_LEN]> = flows.iter().map(|&i| uoa_query(true, i, port)).collect();
        rates.push(uoa_lookup_rate(&sock, true, &queries, &flows, CALLS)?);
    }
    eprintln!("bench: 10. filled");
    let worst = rates[1].min(rates[2]);
    rows.push(Row {
        what: format!("10. v1 lookup cost at {} and {big} mappings / at 1000 (worst)", sizes[1]),
        ratio: rates[0] / worst,
        goal: Goal::AtMost(1.10),
        context: format!(
            "{:.0}, {:.0}, {:.0} lookups/s; {big} flows filled in {:.1} guest s ({:.0} datagrams/s)",
            rates[0],
            rates[1],
            rates[2],
            took.as_secs_f64(),
            big as f64 / took.as_secs_f64()
        ),
    });
    Ok(())
}
