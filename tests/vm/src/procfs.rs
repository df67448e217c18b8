//! The /proc files and the table behind them: `/proc/net/toa_stats`'s layout, `/proc/net/toa_table`'s
//! entries and its dump in small reads (seeks, entries closed between reads, rmmod with the file open),
//! and the `table_buckets` parameter.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use crate::{bench, uoa};
use lbemu::packet::Family;
use lbemu::{LB_V4, LB_V6, SERVER_V4, SERVER_V6};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// /proc/net/toa_stats: the classic layout, a column per possible CPU, Tencent's seven rows first, the
/// UDP (UOA) rows last.
pub(crate) fn toa_stats_layout(_ctx: &mut Ctx) -> TestResult {
    let text = std::fs::read_to_string("/proc/net/toa_stats").map_err(|e| e.to_string())?;
    let s = Stats::read()?;
    let possible =
        std::fs::read_to_string("/sys/devices/system/cpu/possible").map_err(|e| e.to_string())?;
    let ncpu = possible
        .trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum::<usize>();
    let mut want_header = " ".repeat(34);
    for cpu in 0..ncpu {
        want_header.push_str(&format!("{:<11}", format!("CPU{cpu}")));
    }
    check!(
        s.header == want_header,
        "header {:?}, want {want_header:?}",
        s.header
    );
    let names: Vec<&str> = s.rows.iter().map(|(n, _)| n.as_str()).collect();
    let tencent = [
        "syn_recv_sock_toa",
        "syn_recv_sock_no_toa",
        "getname_toa_ok",
        "getname_toa_mismatch",
        "getname_toa_empty",
        "ip6_address_alloc",
        "ip6_address_free",
    ];
    check!(names.len() > 7 && names[..7] == tencent, "rows {names:?}");
    for line in text.lines().skip(1) {
        check!(
            line.len() == 26 + 11 * ncpu && line.as_bytes()[25] == b':',
            "row layout {line:?}"
        );
    }
    check!(
        s.rows.iter().all(|(_, v)| v.len() == ncpu),
        "a row without one value per possible CPU"
    );
    for extra in [
        "tcp_option_malformed",
        "missed_listen_start",
        "missed_listen_stop",
        "missed_tcp_set_ulp",
        "missed_sock_destruct",
    ] {
        check!(names.contains(&extra), "no {extra} row");
    }
    // The UDP rows come last, in their order, after every earlier row (the missed_* ones included).
    let first_uoa = names.len().saturating_sub(uoa::UOA_ROWS.len());
    check!(
        names[first_uoa..] == uoa::UOA_ROWS,
        "last rows {:?}, want {:?}",
        &names[first_uoa..],
        uoa::UOA_ROWS
    );
    check!(
        names[..first_uoa].iter().all(|n| !n.starts_with("uoa_")),
        "a UOA row before the others: {names:?}"
    );
    Ok(())
}

/// /proc/net/toa_table lists live entries (local, LB, client, origin) and forgets closed ones.
pub(crate) fn toa_table_entries(ctx: &mut Ctx) -> TestResult {
    let a = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
    let b = serve(
        ctx,
        Af::Inet6,
        Family::V6,
        ack_opts(toa6(253, CIP6, CPORT + 1)),
    )?;
    let lines = env::toa_table()?;
    let want_a = format!(
        "{SERVER_V4}:{} {LB_V4}:{} {CIP4}:{CPORT} - tcp200",
        a.local.port(),
        a.conn.sport
    );
    let want_b = format!(
        "[{SERVER_V6}]:{} [{LB_V6}]:{} [{CIP6}]:{} - tcp253",
        b.local.port(),
        b.conn.sport,
        CPORT + 1
    );
    for want in [&want_a, &want_b] {
        check!(
            lines
                .iter()
                .any(|l| l.split_once(' ').map(|(_, rest)| rest) == Some(want.as_str())),
            "no line ending {want:?} in {lines:?}"
        );
    }
    finish(ctx, a)?;
    close(ctx, b)?;
    let lines = env::toa_table()?;
    check!(lines.is_empty(), "entries left after close: {lines:?}");
    Ok(())
}

/// The client ports of `/proc/net/toa_table` data lines (the `client` column, `CIP4:port`).
pub(crate) fn table_client_ports(text: &str) -> Result<Vec<u16>, String> {
    let mut lines = text.lines();
    check!(
        lines.next() == Some("sk local lb client vip origin"),
        "toa_table header: {text:.200}"
    );
    lines
        .map(|l| {
            l.split(' ')
                .nth(3)
                .and_then(|c| c.strip_prefix(&format!("{CIP4}:")))
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("toa_table line {l:?}"))
        })
        .collect()
}

/// `/proc/net/toa_table` read in many small `read()`s, each going on where the last one stopped: every
/// entry exactly once; seeking back gives the same bytes; entries closed between reads are no harm; a
/// file left open across rmmod is closed by the unload.
pub(crate) fn toa_table_dump_in_small_reads(ctx: &mut Ctx) -> TestResult {
    use std::io::{Read, Seek, SeekFrom};
    const N: usize = 600;
    // The smallest table: chains of 2.3 entries on average, so reads stop inside chains too.
    env::load(&["table_buckets=256"])?;
    let mut server = bench::Server::new();
    let (mut socks, _) = server.open(ctx, N, true)?;
    let read_all = |chunk: usize| -> Result<String, String> {
        let mut f = io(std::fs::File::open("/proc/net/toa_table"), "open toa_table")?;
        let (mut out, mut buf) = (Vec::new(), vec![0u8; chunk]);
        loop {
            match io(f.read(&mut buf), "read toa_table")? {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    };
    // 1. Small reads (many seq_file refills: about 250 lines), then one large read: the same entries.
    let small = read_all(97)?;
    let mut ports = table_client_ports(&small)?;
    ports.sort_unstable();
    let want: Vec<u16> = (1..=N as u16).collect();
    check!(
        ports == want,
        "{} lines in 97-byte reads, not each of the {N} entries once",
        ports.len()
    );
    let large = read_all(1 << 20)?;
    check!(
        small.len() == large.len(),
        "small reads gave {} bytes, one large read {}",
        small.len(),
        large.len()
    );
    // 2. Seeking back: to 0 (the walker starts over), then into the middle.
    let mut f = io(std::fs::File::open("/proc/net/toa_table"), "open toa_table")?;
    let mut head = vec![0u8; 5000];
    io(f.read_exact(&mut head), "read")?;
    io(f.seek(SeekFrom::Start(0)), "seek 0")?;
    let mut again = String::new();
    io(f.read_to_string(&mut again), "read after seek 0")?;
    check!(again == large, "content after seeking to 0 differs");
    io(f.seek(SeekFrom::Start(3000)), "seek 3000")?;
    let mut tail = String::new();
    io(f.read_to_string(&mut tail), "read after seek 3000")?;
    check!(
        tail.as_bytes() == &large.as_bytes()[3000..],
        "content after seeking to 3000 differs"
    );
    // 3. Entries removed between reads (the entry a read stopped at among them): nothing that was never
    // there, and every survivor listed. (Not "each once": when the entry a read stopped at is gone, the
    // next read lists its bucket from the start.)
    let mut f = io(std::fs::File::open("/proc/net/toa_table"), "open toa_table")?;
    let (mut text, mut buf) = (Vec::new(), [0u8; 97]);
    let mut round = 0;
    loop {
        let n = io(f.read(&mut buf), "read toa_table")?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        round += 1;
        if round % 10 == 0 && socks.len() > 300 {
            // Closed with RST, so their entries go at once, while the walker stands among them.
            for _ in 0..5 {
                let i = round % socks.len();
                socks.swap_remove(i).abort();
            }
        }
    }
    let seen = table_client_ports(&String::from_utf8(text).map_err(|e| e.to_string())?)?;
    check!(
        seen.iter().all(|p| (1..=N as u16).contains(p)),
        "a client port that was never connected"
    );
    let now = table_client_ports(&read_all(4096)?)?;
    check!(
        now.len() == socks.len(),
        "after closing {} sockets: {} lines for {} open sockets",
        N - socks.len(),
        now.len(),
        socks.len()
    );
    check!(
        now.iter().all(|p| seen.contains(p)),
        "an entry alive through the whole dump was not listed"
    );
    // 4. A file open (in the middle of a dump) across rmmod: the unload closes it, reads then fail.
    let mut f = io(std::fs::File::open("/proc/net/toa_table"), "open toa_table")?;
    io(f.read(&mut buf), "read toa_table")?;
    let r = env::unload();
    let after = f.read(&mut buf);
    drop(f);
    r?;
    env::load(&[])?;
    check!(
        matches!(&after, Err(e) if e.raw_os_error() == Some(libc::EIO)),
        "read after rmmod: {after:?}, not EIO"
    );
    server.close(ctx, socks)
}

/// `table_buckets`: by default as many buckets as TCP's established hash table, shown in sysfs; a small
/// table (long chains) answers every lookup right and frees every entry; invalid values fail the load
/// with a clear kernel log line.
pub(crate) fn table_buckets_parameter(ctx: &mut Ctx) -> TestResult {
    const PARAM: &str = "/sys/module/toa/parameters/table_buckets";
    const N: usize = 1000;
    let read_param = || -> Result<u32, String> {
        let text = io(std::fs::read_to_string(PARAM), PARAM)?;
        text.trim()
            .parse()
            .map_err(|e| format!("{PARAM} {text:?}: {e}"))
    };
    env::load(&[])?;
    let default = read_param()?;
    check!(
        default.is_power_of_two() && (256..=1 << 24).contains(&default),
        "default table_buckets {default}"
    );
    // The kernel's boot line, when the log still holds it.
    let log = env::dmesg();
    if let Some(tcp) = log
        .lines()
        .find_map(|l| l.split("TCP established hash table entries: ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
    {
        check!(
            default == tcp.max(256),
            "table_buckets {default}, TCP's established table {tcp}"
        );
    }
    let r = (|| {
        env::load(&["table_buckets=256"])?;
        check!(
            read_param()? == 256,
            "table_buckets=256 shows {}",
            read_param()?
        );
        let before = Stats::read()?;
        let mut server = bench::Server::new();
        let (socks, _) = server.open(ctx, N, true)?;
        for (i, s) in socks.iter().enumerate() {
            let want = SocketAddr::new(IpAddr::V4(CIP4), i as u16 + 1);
            let got = io(s.peer(), "getpeername")?;
            check!(got == want, "connection {i}: getpeername {got}, not {want}");
        }
        // Half of them go (every other one: entries in the middle of chains), the rest still answer.
        let (gone, kept): (Vec<_>, Vec<_>) =
            socks.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        gone.into_iter().for_each(|(_, s)| s.abort());
        io(ctx.lb.drain(Duration::from_millis(300)), "drain")?;
        for (i, s) in &kept {
            let want = SocketAddr::new(IpAddr::V4(CIP4), *i as u16 + 1);
            let got = io(s.peer(), "getpeername")?;
            check!(
                got == want,
                "after closing half, connection {i}: getpeername {got}"
            );
        }
        server.close(ctx, kept.into_iter().map(|(_, s)| s).collect())?;
        let d = delta(&before)?;
        check!(
            d["ip6_address_alloc"] == N as i64 && d["ip6_address_free"] == N as i64,
            "{} entries allocated, {} freed, for {N} connections",
            d["ip6_address_alloc"],
            d["ip6_address_free"]
        );
        for bad in [
            "table_buckets=100",
            "table_buckets=128",
            "table_buckets=33554432",
        ] {
            check!(env::load(&[bad]).is_err(), "insmod toa {bad} succeeded");
            check!(
                env::dmesg().contains(&format!("invalid {bad}")),
                "insmod toa {bad}: no clear kernel log line"
            );
        }
        Ok(())
    })();
    env::load(&[])?;
    r
}
