//! The VM environment of the tests: the module (load, unload, parameters), sysctls, /proc/net/toa_*,
//! /proc/net/uoa_table and the kernel log.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs a command, failing with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The path of the toa.ko under test (`TOA_KO`).
pub fn ko() -> String {
    std::env::var("TOA_KO").expect("TOA_KO is set by the VM runner")
}

/// Whether toa is loaded.
pub fn loaded() -> bool {
    std::fs::read_to_string("/proc/modules")
        .map(|m| m.lines().any(|l| l.starts_with("toa ")))
        .unwrap_or(false)
}

/// Unloads toa if loaded: `delete_module(2)` as `rmmod` calls it (`O_NONBLOCK`), retried while a call in
/// flight holds a reference (`EWOULDBLOCK`/`EBUSY`). The system call itself, not `rmmod`: the unload
/// tests reload toa hundreds of times, and under TCG an exec of kmod costs more than the unload.
pub fn unload() -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..50 {
        if !loaded() {
            return Ok(());
        }
        // SAFETY: a NUL-terminated name; `delete_module` reads nothing else.
        let r =
            unsafe { libc::syscall(libc::SYS_delete_module, c"toa".as_ptr(), libc::O_NONBLOCK) };
        if r == 0 {
            return Ok(());
        }
        last = format!("delete_module(toa): {}", std::io::Error::last_os_error());
        // The retry's period: the next call observes whether the reference in flight is gone.
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

/// (Re)loads toa with `params` (`name=value` strings): `finit_module(2)` on [`ko`] with the parameters
/// joined by spaces, as `insmod` passes them.
pub fn load(params: &[&str]) -> Result<(), String> {
    unload()?;
    let ko = ko();
    let file = std::fs::File::open(&ko).map_err(|e| format!("{ko}: {e}"))?;
    let args = std::ffi::CString::new(params.join(" "))
        .map_err(|_| format!("module parameters {params:?} hold a NUL"))?;
    // SAFETY: an open descriptor and a NUL-terminated parameter string, both alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            args.as_ptr(),
            0,
        )
    };
    if r != 0 {
        return Err(format!(
            "finit_module({ko}, {params:?}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Loads toa with default parameters unless it is loaded already.
pub fn ensure_loaded() -> Result<(), String> {
    if loaded() {
        Ok(())
    } else {
        load(&[])
    }
}

/// The value of toa's module parameter `name` (`/sys/module/toa/parameters/NAME`), trimmed.
pub fn param(name: &str) -> Result<String, String> {
    let path = format!("/sys/module/toa/parameters/{name}");
    std::fs::read_to_string(&path)
        .map(|v| v.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

/// Writes a sysctl (`net.ipv4.tcp_syncookies` style) and returns the old value.
pub fn sysctl(name: &str, value: &str) -> Result<String, String> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let old = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    std::fs::write(&path, value).map_err(|e| format!("{path}: {e}"))?;
    Ok(old.trim().to_string())
}

/// `/proc/net/toa_stats` as parsed by a monitoring script: per row, the per-CPU values.
pub struct Stats {
    /// The header line.
    pub header: String,
    /// Rows in file order: name and per-CPU values.
    pub rows: Vec<(String, Vec<u64>)>,
}

impl Stats {
    /// Reads and parses the file.
    pub fn read() -> Result<Stats, String> {
        let text = std::fs::read_to_string("/proc/net/toa_stats")
            .map_err(|e| format!("toa_stats: {e}"))?;
        let mut lines = text.lines();
        let header = lines.next().ok_or("toa_stats is empty")?.to_string();
        let mut rows = Vec::new();
        for l in lines {
            let (name, vals) = l
                .split_once(':')
                .ok_or_else(|| format!("bad toa_stats row {l:?}"))?;
            let vals = vals
                .split_whitespace()
                .map(|v| v.parse::<u64>().map_err(|e| format!("{l:?}: {e}")))
                .collect::<Result<_, _>>()?;
            rows.push((name.trim_end().to_string(), vals));
        }
        Ok(Stats { header, rows })
    }

    /// The sum over CPUs of row `name` (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        self.rows
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.iter().sum())
            .unwrap_or(0)
    }

    /// All sums by name.
    pub fn sums(&self) -> HashMap<String, u64> {
        self.rows
            .iter()
            .map(|(n, v)| (n.clone(), v.iter().sum()))
            .collect()
    }
}

/// The differences of the counter sums from `before` to now.
pub fn delta(before: &Stats) -> Result<HashMap<String, i64>, String> {
    let now = Stats::read()?.sums();
    let b = before.sums();
    Ok(now
        .iter()
        .map(|(k, v)| (k.clone(), *v as i64 - *b.get(k).unwrap_or(&0) as i64))
        .collect())
}

/// Waits (up to 10 s) until every stored address was freed: `ip6_address_alloc == ip6_address_free`.
pub fn wait_all_freed() -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = Stats::read()?;
        let (a, f) = (s.get("ip6_address_alloc"), s.get("ip6_address_free"));
        if a == f {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "ip6_address_alloc {a} != ip6_address_free {f} 10 s after every connection closed"
            ));
        }
        // The poll's period: the counters are read again after it, until the deadline.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The data lines of `/proc/net/toa_table` (header checked and dropped).
pub fn toa_table() -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string("/proc/net/toa_table").map_err(|e| format!("toa_table: {e}"))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    if header != "sk local lb client vip origin" {
        return Err(format!("toa_table header {header:?}"));
    }
    Ok(lines.map(str::to_string).collect())
}

/// One data line of `/proc/net/uoa_table`: the mapping (`lb local client vip`, as the file spells it) and
/// its idle seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UoaRow {
    /// The line without its idle column.
    pub mapping: String,
    /// The idle column.
    pub idle: u64,
}

/// The data lines of `/proc/net/uoa_table` (header checked and dropped).
pub fn uoa_table() -> Result<Vec<UoaRow>, String> {
    let text =
        std::fs::read_to_string("/proc/net/uoa_table").map_err(|e| format!("uoa_table: {e}"))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    if header != "lb local client vip idle" {
        return Err(format!("uoa_table header {header:?}"));
    }
    lines
        .map(|l| {
            let (mapping, idle) = l
                .rsplit_once(' ')
                .ok_or_else(|| format!("uoa_table line {l:?}"))?;
            let idle = idle
                .parse()
                .map_err(|e| format!("uoa_table line {l:?}: idle {e}"))?;
            check_fields(mapping, 4).map_err(|e| format!("uoa_table line {l:?}: {e}"))?;
            Ok(UoaRow {
                mapping: mapping.to_string(),
                idle,
            })
        })
        .collect()
}

fn check_fields(s: &str, n: usize) -> Result<(), String> {
    let got = s.split(' ').count();
    if got == n {
        Ok(())
    } else {
        Err(format!("{got} fields before idle, want {n}"))
    }
}

/// Calls `probe` every 50 ms until it returns `Some`, for at most `timeout`; the error names `what`.
pub fn poll<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {} s", timeout.as_secs_f64()));
        }
        // The poll's period: the state is observed again after it, until the deadline.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `TCP_LISTEN`, a listener's state in [`TcpSocket::state`].
pub const TCP_LISTEN: u8 = 0x0A;

/// A TCP socket as `/proc/net/tcp` and `/proc/net/tcp6` list it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    /// The `st` column: [`TCP_LISTEN`], 0x01 established, 0x03 a request (SYN_RECV), ...
    pub state: u8,
    /// The `rx_queue` column; for a listener, how many connections wait in its accept queue.
    pub rx_queue: u32,
}

/// The TCP sockets on local port `port`, IPv4 and IPv6: a listener, its connections and its requests.
/// A socket the kernel has closed (a reset one, say) is not listed: it left the hash tables.
pub fn tcp_sockets(port: u16) -> Result<Vec<TcpSocket>, String> {
    let local = format!(":{port:04X}");
    let mut socks = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        for l in text.lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() < 5 || !cols[1].ends_with(&local) {
                continue;
            }
            let hex = |c: &str| u32::from_str_radix(c, 16).ok();
            let state = hex(cols[3]).and_then(|s| u8::try_from(s).ok());
            let rx_queue = cols[4].split_once(':').and_then(|(_, rx)| hex(rx));
            match (state, rx_queue) {
                (Some(state), Some(rx_queue)) => socks.push(TcpSocket { state, rx_queue }),
                _ => return Err(format!("{f}: line {l:?}")),
            }
        }
    }
    Ok(socks)
}

/// Waits until a TCP socket listens on `port`: a server started as another process is ready for
/// connections then, not after some sleep.
pub fn wait_listening(port: u16) -> Result<(), String> {
    poll(
        Duration::from_secs(10),
        &format!("a listener on port {port}"),
        || {
            let socks = tcp_sockets(port)?;
            Ok(socks.iter().any(|s| s.state == TCP_LISTEN).then_some(()))
        },
    )
}

/// The kernel log.
pub fn dmesg() -> String {
    run("dmesg", &[]).unwrap_or_default()
}
