//! `toa-vmtest bench`: what toa costs, measured side by side in one run on the plain kernel and printed
//! as ratios (absolute figures under TCG are shown as context only).

use super::*;
use std::time::Instant;

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
        match self {
            Goal::AtLeast(g) => write!(f, ">= {g:.2}"),
            Goal::AtMost(g) if *g >= 10.0 => write!(f, "<= {g:.0}"),
            Goal::AtMost(g) => write!(f, "<= {g:.2}"),
        }
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

/// `toa-vmtest workload accept|getpeername N`: one of the benchmark's loads alone, with the module in
/// whatever state it is (loaded or not), for a profiler to sample (`scripts/profile.sh`).
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
    // Let deferred work (RCU callbacks) finish.
    std::thread::sleep(Duration::from_secs(3));
    let before = kernel_kib();
    env::unload()?;
    env::load(&[])?;
    std::thread::sleep(Duration::from_secs(3));
    Ok(before as i64 - kernel_kib() as i64)
}

/// toa's table as loaded by default: its buckets (sysfs) and what it costs (KiB): slab + vmalloc with
/// the default table minus with the smallest one (256 buckets, 2 KiB), the median of three.
fn table_cost() -> Result<(usize, i64), String> {
    let mut kib = [0i64; 3];
    for k in &mut kib {
        env::load(&["table_buckets=256"])?;
        std::thread::sleep(Duration::from_secs(1));
        let small = kernel_kib() as i64;
        env::load(&[])?;
        std::thread::sleep(Duration::from_secs(1));
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

    eprintln!("bench: 1. accept rounds");
    // 1. Accepted connections per second with a TOA on every connection: toa loaded vs no module, in
    // interleaved rounds (each after a warm-up); the ratio is the median of the rounds' ratios, so that
    // one round disturbed by the host does not move it.
    // For context, toa loaded with connections whose handshake carries a same-size option that is not a
    // TOA: what the hooks cost a connection without TOA (the `syn_recv_sock` return hook runs for every
    // connection, since its entry cannot know yet whether the handshake carries a TOA; getname and the
    // destructor only look for an entry).
    let (rounds, per) = (7, 3000);
    let (mut with, mut without, mut ratios, mut no_toa_ratios) = (0.0, 0.0, Vec::new(), Vec::new());
    for _ in 0..rounds {
        with_module(ctx, &mut server, false)?;
        let (s, off) = server.open(ctx, per, true)?;
        server.close(ctx, s)?;
        with_module(ctx, &mut server, true)?;
        let (s, on) = server.open(ctx, per, true)?;
        server.close(ctx, s)?;
        let (s, on_no_toa) = server.open(ctx, per, false)?;
        server.close(ctx, s)?;
        (with, without) = (with + on, without + off);
        ratios.push(on / off);
        no_toa_ratios.push(on_no_toa / off);
    }
    rows.push(Row {
        what: "1. accepted conns/s, TOA on every conn: toa loaded / no module".into(),
        ratio: median(&mut ratios),
        goal: Goal::AtLeast(0.97),
        context: format!(
            "{:.0} vs {:.0} conn/s ({rounds} interleaved rounds of {per}; rounds {}); conns with a non-TOA option instead, toa loaded: {:.3}",
            with / f64::from(rounds),
            without / f64::from(rounds),
            spread(&ratios),
            median(&mut no_toa_ratios)
        ),
    });

    eprintln!("bench: 2. getpeername");
    // 2. getpeername on a TOA socket with toa vs a plain socket without the module, in interleaved
    // rounds (median of the rounds' ratios); with toa also a socket without TOA, and getsockopt 4096.
    let (rounds, calls) = (5, 200_000);
    let (mut costs, mut toa_rates, mut plain_rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut no_toa_rates, mut sockopt_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        with_module(ctx, &mut server, true)?;
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
        with_module(ctx, &mut server, false)?;
        let (plain, _) = server.open(ctx, 1, false)?;
        let plain_rate = lookup_rate(&plain, calls);
        server.close(ctx, plain)?;
        costs.push(plain_rate / with_toa);
        toa_rates.push(with_toa);
        plain_rates.push(plain_rate);
    }
    rows.push(Row {
        what: "2. getpeername() cost: TOA socket with toa / plain socket, no module".into(),
        ratio: median(&mut costs),
        goal: Goal::AtMost(1.10),
        context: format!(
            "{:.0} vs {:.0} calls/s (medians of {rounds} interleaved rounds; rounds {}); a socket without TOA, toa loaded: {:.0}; getsockopt 4096: {:.0} calls/s",
            median(&mut toa_rates),
            median(&mut plain_rates),
            spread(&costs),
            median(&mut no_toa_rates),
            median(&mut sockopt_rates)
        ),
    });

    eprintln!("bench: 3. memory at {n} entries");
    // 3. Kernel memory per stored entry at `n` live TOA sockets: the entries' own memory (what a reload
    // of toa gives back with the `n` entries stored, minus what it gives back with none: the median of
    // three) plus the table's share (its whole cost, which does not depend on `n`, divided by `n`).
    with_module(ctx, &mut server, true)?;
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
    let (toa_read, table_lines, during) = accept_during(ctx, &mut server, &mut extra, || {
        env::toa_table().map(|l| l.len()).unwrap_or(0)
    })?;
    let (tcp_read, tcp_lines, during_tcp) = accept_during(ctx, &mut server, &mut extra, || {
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
    server.close(ctx, all)?;
    Ok(rows)
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
