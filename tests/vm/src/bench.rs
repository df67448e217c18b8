//! `toa-vmtest bench`: what toa costs, measured side by side in one run on the plain kernel and printed
//! as ratios (absolute figures under TCG are shown as context only).

use super::*;
use std::time::Instant;

/// A measured figure against its goal.
struct Row {
    what: String,
    ratio: f64,
    goal: String,
    met: bool,
    context: String,
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

/// Kernel memory that toa's entries can use: slab (kmalloc objects) and vmalloc (rhashtable buckets).
fn kernel_kib() -> u64 {
    meminfo("Slab:") + meminfo("VmallocUsed:")
}

/// Opens `n` TOA connections (IPv4 on the wire, client per connection) to `listener` and accepts them:
/// returns the accepted sockets and the connections per second.
fn open_many(
    ctx: &mut Ctx,
    listener: &Sock,
    port: u16,
    n: usize,
    with_toa: bool,
) -> Result<(Vec<Sock>, f64), String> {
    let start = Instant::now();
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        let opts = if with_toa {
            ack_opts(toa4(200, CIP4, (i % 60000) as u16 + 1))
        } else {
            Options::default()
        };
        let mut c = Conn::new(&mut ctx.lb, Family::V4, port, opts);
        io(c.connect(&mut ctx.lb, &[]), "handshake")?;
        let (s, _) = io(listener.accept(WAIT), "accept")?;
        socks.push(s);
    }
    Ok((socks, n as f64 / start.elapsed().as_secs_f64()))
}

/// Closes sockets made by [`open_many`]: the LB resets them (the kernel's RSTs reach no one), and
/// waits until every entry is freed.
fn close_many(socks: Vec<Sock>) -> TestResult {
    abort(socks);
    env::wait_all_freed()
}

/// Closes sockets with RST (SO_LINGER 0), so none lingers in FIN_WAIT.
fn abort(socks: Vec<Sock>) {
    socks.into_iter().for_each(Sock::abort);
}

/// Calls per second of `f` over `n` calls.
fn rate(n: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

pub(crate) fn run(ctx: &mut Ctx) -> i32 {
    match bench(ctx) {
        Ok(rows) => {
            println!();
            println!(
                "{:<62} {:>8}  {:<10} {:<4} context",
                "measure", "ratio", "goal", "met"
            );
            for r in &rows {
                println!(
                    "{:<62} {:>8.3}  {:<10} {:<4} {}",
                    r.what,
                    r.ratio,
                    r.goal,
                    if r.met { "yes" } else { "NO" },
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

fn bench(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let n = entries();
    allow_fds(n + 4096);
    let mut rows = Vec::new();
    let port = ctx.port();
    let listener = io(
        Sock::listen((Ipv4Addr::UNSPECIFIED, port).into(), false),
        "listen",
    )?;

    // 1. Accepted connections per second with a TOA on every connection: toa loaded vs no module.
    let rounds = 3;
    let per = 1000;
    let (mut with, mut without) = (0.0, 0.0);
    for _ in 0..rounds {
        env::unload()?;
        let (s, r) = open_many(ctx, &listener, port, per, true)?;
        without += r;
        abort(s);
        env::load(&[])?;
        let (s, r) = open_many(ctx, &listener, port, per, true)?;
        with += r;
        close_many(s)?;
    }
    let accept_ratio = with / without;
    rows.push(Row {
        what: "1. accepted conns/s, TOA on every conn: toa loaded / no module".into(),
        ratio: accept_ratio,
        goal: ">= 0.97".into(),
        met: accept_ratio >= 0.97,
        context: format!(
            "{:.0} vs {:.0} conn/s ({rounds}x{per} each, interleaved)",
            with / rounds as f64,
            without / rounds as f64
        ),
    });

    // 2. getpeername on a TOA socket with toa vs a plain socket without the module; getsockopt 4096.
    let calls = 200_000;
    let (toa_sock, _) = open_many(ctx, &listener, port, 1, true)?;
    let mut nat64 = Conn::new(
        &mut ctx.lb,
        Family::V4,
        port,
        ack_opts(toa6(253, CIP6, CPORT)),
    );
    io(nat64.connect(&mut ctx.lb, &[]), "handshake")?;
    let (nat64_sock, _) = io(listener.accept(WAIT), "accept")?;
    let with_toa = rate(calls, || {
        let _ = toa_sock[0].peer();
    });
    let sockopt = rate(calls, || {
        let _ = nat64_sock.toa_lookup(20);
    });
    env::unload()?;
    let (plain, _) = open_many(ctx, &listener, port, 1, false)?;
    let plain_rate = rate(calls, || {
        let _ = plain[0].peer();
    });
    env::load(&[])?;
    let cost = plain_rate / with_toa;
    rows.push(Row {
        what: "2. getpeername() cost: TOA socket with toa / plain socket, no module".into(),
        ratio: cost,
        goal: "<= 1.10".into(),
        met: cost <= 1.10,
        context: format!(
            "{with_toa:.0} vs {plain_rate:.0} calls/s; getsockopt 4096: {sockopt:.0} calls/s"
        ),
    });
    abort(toa_sock);
    abort(plain);
    nat64_sock.abort();

    // 5a. Lookup cost with few entries (1 000), for the flatness check below.
    let (few, _) = open_many(ctx, &listener, port, 1000, true)?;
    let at_1k = rate(calls, || {
        let _ = few[0].peer();
    });

    // 3. Kernel memory per stored entry at `n` live TOA sockets: slab + vmalloc with toa's entries, then
    // after unloading toa (which frees them), the sockets themselves staying open.
    let (many, made) = open_many(ctx, &listener, port, n - 1000, true)?;
    std::thread::sleep(Duration::from_secs(2));
    let at_n = rate(calls, || {
        let _ = many[many.len() / 2].peer();
    });
    let mut table_read = Duration::ZERO;
    let mut table_lines = 0;
    let (mut during, mut quiet) = (0.0, 0.0);
    std::thread::scope(|scope| -> Result<(), String> {
        // 4. Reading toa_table at `n` entries while connections are accepted: read time, and the accept
        // rate during the read against right after it.
        let reader = scope.spawn(|| {
            let t = Instant::now();
            let lines = env::toa_table().map(|l| l.len()).unwrap_or(0);
            (t.elapsed(), lines)
        });
        let t = Instant::now();
        let mut k = 0usize;
        let mut extra = Vec::new();
        while !reader.is_finished() {
            let (s, _) = open_many(ctx, &listener, port, 20, false)?;
            extra.extend(s);
            k += 20;
        }
        during = k as f64 / t.elapsed().as_secs_f64();
        (table_read, table_lines) = reader.join().unwrap();
        let (s, r) = open_many(ctx, &listener, port, k.max(100), false)?;
        quiet = r;
        abort(s);
        abort(extra);
        Ok(())
    })?;
    let before = kernel_kib();
    env::unload()?;
    std::thread::sleep(Duration::from_secs(3));
    let after = kernel_kib();
    env::load(&[])?;
    let per_entry = (before.saturating_sub(after) * 1024) as f64 / n as f64;
    rows.push(Row {
        what: format!("3. kernel memory per stored entry at {n} live TOA sockets (bytes)"),
        ratio: per_entry,
        goal: "<= 64".into(),
        met: per_entry <= 64.0,
        context: format!("slab+vmalloc {before} KiB with toa, {after} KiB after unloading it; {made:.0} conn/s to open"),
    });
    rows.push(Row {
        what: format!("4. accept rate while reading toa_table ({table_lines} lines) / without"),
        ratio: during / quiet,
        goal: "no stall".into(),
        met: during / quiet >= 0.5,
        context: format!(
            "read in {:.2} s; {during:.0} vs {quiet:.0} conn/s",
            table_read.as_secs_f64()
        ),
    });
    let flat = at_1k / at_n;
    rows.push(Row {
        what: format!("5. getpeername cost at {n} entries / at 1000 entries"),
        ratio: flat,
        goal: "flat".into(),
        met: flat <= 1.10,
        context: format!(
            "{at_n:.0} vs {at_1k:.0} calls/s (the module was reloaded: the table is empty again)"
        ),
    });
    abort(many);
    abort(few);
    Ok(rows)
}
