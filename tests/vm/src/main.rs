//! toa's integration tests. They run inside the test VM (`scripts/vm-run.sh`), as root, with toa.ko
//! loaded: the LB emulator sends real packets through a TUN device into the real kernel, and each test
//! asserts what the server application sees (`accept`, `getpeername`, `getsockname`, getsockopt 4096;
//! for UDP, the datagram and getsockopt 2048/2049, in `uoa`) and what `/proc/net/toa_*` and
//! `/proc/net/uoa_table` report.
//!
//! `toa-vmtest [FILTER...]` runs the tests whose name contains a filter or whose area is a filter (all
//! by default), reports them in KTAP (the kernel selftests' format: `ok N name` / `not ok N name`,
//! reasons on `#` lines: a test that panics fails with the panic's message) and ends with `N passed,
//! N failed`; `toa-vmtest --list` lists the tests; `toa-vmtest demo` prints what the server sees for
//! each LB scenario instead. So `toa-vmtest close_paths` runs one area, `toa-vmtest close_paths procfs`
//! two, `toa-vmtest syn_cookies` one test.
//!
//! An area is a module, one file each; its name is the area's name:
//! - `tcp_options`: TCP-option TOA across address families, NAT64, no TOA, getsockopt 4096's errors;
//! - `handshake`: which handshake segment the option is read from (SYN cookies, TCP Fast Open), the
//!   option walk, malformed options;
//! - `close_paths`: every entry freed however the socket goes (RST, close before `accept()`, a listener
//!   closed with queued children);
//! - `procfs`: `/proc/net/toa_stats`, `/proc/net/toa_table`, the `table_buckets` parameter;
//! - `lifecycle`: rmmod with live sockets, a listener open across unloads and reloads, the samples' C
//!   server;
//! - `ops_escape`: subsystems that copy a socket's operation tables (kTLS, ESP in TCP) keep no toa
//!   address after rmmod; what toa answers once the kernel swapped a socket's table (`IPV6_ADDRFORM`);
//! - `ip_options`: the IP-option TOA;
//! - `security`: `trusted_sources`, network namespaces, module parameters;
//! - `stress`: adversarial connections, unload under load;
//! - `uoa`: UDP (every test's name starts with `uoa_`).
//!
//! What they share is in `fixture` (the client, the option builders, `serve`/`finish`/`close` of one
//! connection, `check!`); `env` is the VM environment (the module, sysctls, the /proc files, waiting for
//! what the kernel shows), `sys` the sockets. `demo` and `bench` (`toa-vmtest bench`, `toa-vmtest
//! workload`) are not tests. [`TESTS`] lists the tests in the order they run.

mod bench;
mod close_paths;
mod demo;
mod env;
mod fixture;
mod handshake;
mod ip_options;
mod lifecycle;
mod ops_escape;
mod procfs;
mod security;
mod stress;
mod sys;
mod tcp_options;
mod uoa;

use fixture::{Ctx, TestResult};
use lbemu::Lb;

/// A test: its area (the module holding it), its name (its function's) and its function.
type Test = (&'static str, &'static str, fn(&mut Ctx) -> TestResult);

/// The [`Test`] of the function `area::name`.
macro_rules! test {
    ($area:ident :: $name:ident) => {
        (stringify!($area), stringify!($name), $area::$name)
    };
}

/// Every test, in the order they run.
const TESTS: &[Test] = &[
    test!(procfs::toa_stats_layout),
    test!(tcp_options::ipv4_toa_on_af_inet),
    test!(tcp_options::ipv4_toa_on_af_inet6_mapped),
    test!(tcp_options::ipv6_toa_on_af_inet6),
    test!(tcp_options::ipv4_toa_on_ipv6_wire),
    test!(tcp_options::nat64_on_af_inet),
    test!(tcp_options::nat64_getpeername_mode),
    test!(tcp_options::no_toa),
    test!(tcp_options::getsockopt_errors),
    test!(handshake::toa_only_in_the_handshake_ack),
    test!(handshake::option_walk_and_first_toa_wins),
    test!(handshake::malformed_options),
    test!(handshake::syn_cookies),
    test!(handshake::tcp_fast_open),
    test!(close_paths::close_by_rst),
    test!(close_paths::close_before_accept),
    test!(close_paths::listener_closed_with_queued_children),
    test!(procfs::toa_table_entries),
    test!(procfs::toa_table_dump_in_small_reads),
    test!(procfs::table_buckets_parameter),
    test!(lifecycle::example_c_server),
    test!(ip_options::ip_option_matrix),
    test!(ip_options::ip_option_parameters),
    test!(ip_options::ip_option_malformed),
    test!(ip_options::ip_option_wins_over_tcp_option),
    test!(security::trusted_sources),
    test!(security::network_namespaces),
    test!(security::module_parameters),
    test!(stress::adversarial_connections),
    test!(stress::unload_under_load),
    test!(lifecycle::rmmod_with_live_sockets),
    test!(lifecycle::listener_across_reloads),
    test!(ops_escape::ktls_after_rmmod),
    test!(ops_escape::espintcp6_after_rmmod),
    test!(ops_escape::ipv6_addrform_on_toa_socket),
    test!(uoa::uoa_matrix),
    test!(uoa::uoa_dpvs_layout),
    test!(uoa::uoa_option_on_first_datagrams_only),
    test!(uoa::uoa_newest_option_wins),
    test!(uoa::uoa_option_walk),
    test!(uoa::uoa_malformed_options),
    test!(uoa::uoa_getsockopt_errors),
    test!(uoa::uoa_expiry),
    test!(uoa::uoa_map_full),
    test!(uoa::uoa_module_parameters),
    test!(uoa::uoa_trusted_sources),
    test!(uoa::uoa_network_namespaces),
    test!(uoa::uoa_example_c_server),
    test!(uoa::uoa_example_python),
    test!(uoa::uoa_example_go),
    test!(uoa::uoa_adversarial_datagrams),
    test!(uoa::uoa_many_flows),
    test!(uoa::uoa_rmmod_with_traffic),
];

/// The messages of the panics since the last test ended (see the panic hook in [`main`]).
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for (_, name, _) in TESTS {
            println!("{name}");
        }
        return;
    }
    if args.first().map(String::as_str) == Some("netns-child") {
        std::process::exit(security::netns_child());
    }
    if args.first().map(String::as_str) == Some("uoa-netns-child") {
        std::process::exit(uoa::netns_child(&args[1..]));
    }
    let lb = match Lb::new("toa0") {
        Ok(lb) => lb,
        Err(e) => {
            eprintln!("cannot set up the LB emulator's TUN device: {e}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    };
    let mut ctx = Ctx {
        lb,
        next_port: 8000,
    };
    if args.first().map(String::as_str) == Some("demo") {
        std::process::exit(demo::run(&mut ctx));
    }
    if args.first().map(String::as_str) == Some("bench") {
        std::process::exit(bench::run(&mut ctx));
    }
    if args.first().map(String::as_str) == Some("workload") {
        let what = args.get(1).map_or("", String::as_str);
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
        std::process::exit(bench::workload(&mut ctx, what, n));
    }
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(area, name, _)| {
            args.is_empty() || args.iter().any(|a| a == area || name.contains(a.as_str()))
        })
        .collect();
    // A test (or one of its threads) that panics fails, with the panic's message and place on its
    // `#` lines (stdout: the log make check keeps), and the run goes on with the next test.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("thread '{thread}' panicked at {at}: {msg}"));
    }));
    // KTAP, the kernel selftests' format, then the closing count make check adds up.
    println!("KTAP version 1");
    println!("1..{}", selected.len());
    let (mut passed, mut failed) = (0, 0);
    for (i, (_, name, test)) in selected.into_iter().enumerate() {
        let start = std::time::Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            env::ensure_loaded().and_then(|_| test(&mut ctx))
        }))
        .unwrap_or_else(|_| {
            let panics = std::mem::take(&mut *PANICS.lock().unwrap_or_else(|e| e.into_inner()));
            Err(panics.join("\n"))
        });
        // A diagnostic line: where a suite's time goes (guest clock), per kernel.
        println!("# {name} took {:.1} s", start.elapsed().as_secs_f64());
        match r {
            Ok(()) => {
                passed += 1;
                println!("ok {} {name}", i + 1);
            }
            Err(e) => {
                failed += 1;
                for line in e.lines() {
                    println!("# {name}: {line}");
                }
                println!("not ok {} {name}", i + 1);
            }
        }
    }
    println!("# {passed} passed, {failed} failed");
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 && passed > 0 { 0 } else { 1 });
}
