//! The module's life with live connections (rmmod while TOA sockets are open, then reload), and the
//! samples' C server as an application sees toa.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use lbemu::packet::Family;
use lbemu::{Conn, LB_V4, LB_V6};
use std::net::{IpAddr, SocketAddr};

/// rmmod with live TOA sockets: no report, no leak, and the kernel's own getname answers afterwards.
pub(crate) fn rmmod_with_live_sockets(ctx: &mut Ctx) -> TestResult {
    let s4 = serve(ctx, Af::Inet, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
    let s6 = serve(ctx, Af::Inet6, Family::V6, ack_opts(toa6(253, CIP6, CPORT)))?;
    check!(
        s4.peer.ip() == IpAddr::V4(CIP4),
        "before rmmod: {}",
        s4.peer
    );
    env::unload()?;
    let log = env::dmesg();
    check!(
        log.contains("TOA unloaded"),
        "no 'TOA unloaded' in the kernel log"
    );
    let p4 = io(s4.sock.peer(), "getpeername after rmmod")?;
    let p6 = io(s6.sock.peer(), "getpeername after rmmod")?;
    check!(
        p4 == SocketAddr::new(IpAddr::V4(LB_V4), s4.conn.sport),
        "after rmmod: {p4}"
    );
    check!(
        p6 == SocketAddr::new(IpAddr::V6(LB_V6), s6.conn.sport),
        "after rmmod: {p6}"
    );
    let l = s6.sock.toa_lookup(20);
    check!(
        errno(&l) == Some(libc::ENOPROTOOPT),
        "getsockopt 4096 after rmmod gave {l:?}"
    );
    env::load(&[])?;
    check!(
        env::dmesg().contains("toa load success"),
        "no 'toa load success' in the kernel log"
    );
    // The live sockets close after the reload: the new module instance never saw them.
    let before = Stats::read()?;
    for s in [s4, s6] {
        finish(ctx, s)?;
    }
    let d = delta(&before)?;
    check!(
        d["ip6_address_free"] == 0,
        "freed entries of a previous instance: {d:?}"
    );
    Ok(())
}

/// The C server built from the samples of seeds 000 and 002 (examples/toa_server.c) prints the real
/// client for an IPv4 TOA (getpeername) and for a NAT64 TOA (getsockopt 4096).
pub(crate) fn example_c_server(ctx: &mut Ctx) -> TestResult {
    let bin = std::env::var("TOA_EXAMPLE").map_err(|_| "TOA_EXAMPLE is not set".to_string())?;
    let port = ctx.port();
    let child = std::process::Command::new(&bin)
        .args([&port.to_string(), "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{bin}: {e}"))?;
    env::wait_listening(port)?;
    for opts in [toa4(200, CIP4, CPORT), toa6(253, CIP6, CPORT)] {
        let mut c = Conn::new(&mut ctx.lb, Family::V4, port, ack_opts(opts));
        io(c.connect(&mut ctx.lb, &[]), "handshake")?;
        io(c.send(&mut ctx.lb, b"hello"), "send")?;
        io(c.fin(&mut ctx.lb), "FIN")?;
        io(c.await_server_fin(&mut ctx.lb, WAIT), "server FIN")?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    check!(
        text.contains(&format!("real client v4 [{CIP4}]:{CPORT}")),
        "C server printed {text:?}"
    );
    check!(
        text.contains(&format!("real client [{CIP6}]:{CPORT}")),
        "C server printed {text:?}"
    );
    env::wait_all_freed()
}
