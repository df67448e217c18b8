//! Anti-spoofing, isolation and parameters: `trusted_sources`, network namespaces (with
//! `toa-vmtest netns-child`, run inside one), and `debug=1` and invalid module parameters.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use lbemu::packet::Family;
use lbemu::Lb;
use std::net::{IpAddr, SocketAddr};

/// `trusted_sources`: a TOA from outside the listed prefixes is ignored and counted; from inside, used;
/// an invalid list fails the load with a line naming the entry.
pub(crate) fn trusted_sources(ctx: &mut Ctx) -> TestResult {
    env::load(&["trusted_sources=192.0.2.3/32,2001:db8::3"])?;
    let r = (|| {
        for (wire, af, opts) in [
            (Family::V4, Af::Inet, ack_opts(toa4(200, CIP4, CPORT))),
            (Family::V6, Af::Inet6, ack_opts(toa6(253, CIP6, CPORT))),
            (
                Family::V4,
                Af::Inet6,
                ip_toa(Family::V4, IpAddr::V4(CIP4), IpAddr::V4(VIP4)),
            ),
        ] {
            let before = Stats::read()?;
            let s = serve(ctx, af, wire, opts)?;
            check!(
                s.peer.port() == s.conn.sport,
                "untrusted {wire:?}: forged client accepted: {}",
                s.peer
            );
            let d = delta(&before)?;
            check!(
                d["toa_untrusted_source"] == 1 && d["ip6_address_alloc"] == 0,
                "untrusted {wire:?}: counters {d:?}"
            );
            close(ctx, s)?;
        }
        Ok(())
    })();
    env::load(&["trusted_sources=198.51.100.0/24,192.0.2.0/30,2001:db8::/64"])?;
    let r = r.and_then(|_| {
        for (wire, af, opts, want) in [
            (
                Family::V4,
                Af::Inet,
                ack_opts(toa4(200, CIP4, CPORT)),
                IpAddr::V4(CIP4),
            ),
            (
                Family::V6,
                Af::Inet6,
                ack_opts(toa6(253, CIP6, CPORT)),
                IpAddr::V6(CIP6),
            ),
            (
                Family::V4,
                Af::Inet6,
                ack_opts(toa4(254, CIP4, CPORT)),
                v4mapped(CIP4),
            ),
        ] {
            let s = serve(ctx, af, wire, opts)?;
            check!(
                s.peer == SocketAddr::new(want, CPORT),
                "trusted {wire:?}/{af:?}: getpeername {}",
                s.peer
            );
            close(ctx, s)?;
        }
        Ok(())
    });
    env::unload()?;
    let r = r.and_then(|_| {
        for bad in [
            "trusted_sources=192.0.2.0/33",
            "trusted_sources=10.0.0.0/8,bogus",
        ] {
            check!(env::load(&[bad]).is_err(), "insmod toa {bad} succeeded");
            check!(
                env::dmesg().contains("invalid trusted_sources entry"),
                "insmod toa {bad}: no clear kernel log line"
            );
        }
        Ok(())
    });
    env::load(&[])?;
    r
}

/// Network namespaces: a connection in another namespace shows in that namespace's toa_table and
/// toa_stats only.
pub(crate) fn network_namespaces(_ctx: &mut Ctx) -> TestResult {
    use std::io::{BufRead, BufReader, Write};
    let _ = env::run("ip", &["netns", "del", "toa-ns"]);
    env::run("ip", &["netns", "add", "toa-ns"])?;
    let r = (|| {
        let before = Stats::read()?;
        let table_before = env::toa_table()?;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", "toa-ns"])
            .arg(&me)
            .arg("netns-child")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip netns exec: {e}"))?;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        let inside = line.trim().to_string();
        // The child holds its connection open: the host namespace must not see it.
        let table = env::toa_table()?;
        let d = delta(&before)?;
        let _ = child.stdin.take().unwrap().write_all(b"done\n");
        let status = child.wait().map_err(|e| e.to_string())?;
        check!(inside == "ready", "inside the namespace: {inside}");
        check!(status.success(), "netns child failed: {status}");
        check!(
            table == table_before,
            "the host namespace sees another namespace's entry: {table:?}"
        );
        check!(
            d["syn_recv_sock_toa"] == 0 && d["ip6_address_alloc"] == 0,
            "host counters moved: {d:?}"
        );
        Ok(())
    })();
    let _ = env::run("ip", &["netns", "del", "toa-ns"]);
    r
}

/// `toa-vmtest netns-child`, run by [`network_namespaces`] inside a fresh namespace: serves one TOA
/// connection, checks that this namespace's /proc files show it (and only it), prints `ready`, waits for
/// a line on stdin, closes. Prints the failure instead of `ready` on error.
pub(crate) fn netns_child() -> i32 {
    let r = (|| {
        env::run("ip", &["link", "set", "lo", "up"])?;
        let lb = Lb::new("toa1").map_err(|e| e.to_string())?;
        let mut ctx = Ctx {
            lb,
            next_port: 9000,
        };
        let s = serve(
            &mut ctx,
            Af::Inet,
            Family::V4,
            ack_opts(toa4(200, CIP4, CPORT)),
        )?;
        check!(
            s.peer == SocketAddr::from((CIP4, CPORT)),
            "getpeername {}",
            s.peer
        );
        let table = env::toa_table()?;
        check!(
            table.len() == 1 && table[0].contains(&format!("{CIP4}:{CPORT}")),
            "namespace toa_table {table:?}"
        );
        let st = Stats::read()?;
        check!(
            st.get("syn_recv_sock_toa") == 1 && st.get("ip6_address_alloc") == 1,
            "namespace counters {:?}",
            st.sums()
        );
        println!("ready");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        close(&mut ctx, s)?;
        let st = Stats::read()?;
        check!(
            st.get("ip6_address_free") == 1,
            "namespace counters after close {:?}",
            st.sums()
        );
        Ok(())
    })();
    match r {
        Ok(()) => 0,
        Err(e) => {
            println!("{e}");
            1
        }
    }
}

/// `debug=1` logs a line per stored TOA and per rewrite; an invalid parameter value makes the load fail
/// with a line naming it.
pub(crate) fn module_parameters(ctx: &mut Ctx) -> TestResult {
    env::load(&["debug=1"])?;
    let r = (|| {
        let s = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(254, CIP4, CPORT)))?;
        close(ctx, s)?;
        let log = env::dmesg();
        let want = format!("client {CIP4}:{CPORT} stored");
        check!(
            log.contains(&want),
            "debug=1: no {want:?} line in the kernel log"
        );
        check!(
            log.contains("getname on sk"),
            "debug=1: no getname line in the kernel log"
        );
        Ok(())
    })();
    env::unload()?;
    for bad in ["debug=maybe", "nat64_getpeername=2"] {
        let e = env::load(&[bad]);
        check!(e.is_err(), "insmod toa {bad} succeeded");
        let name = bad.split('=').next().unwrap();
        let log = env::dmesg();
        check!(
            log.contains(&format!("invalid for parameter `{name}'")),
            "insmod toa {bad}: no clear kernel log line"
        );
    }
    env::load(&[])?;
    r
}
