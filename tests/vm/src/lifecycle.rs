//! The module's life with live connections (rmmod while TOA sockets are open, then reload; a listener
//! open across unloads and reloads), and the samples' C server as an application sees toa.

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use crate::sys::Sock;
use lbemu::packet::Family;
use lbemu::{Conn, LB_V4, LB_V6};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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

/// A listener whose life spans loads and unloads of toa (AF_INET, IPv4 on the wire, TCP option 200
/// with the client; each connection's client port is its own, so no answer can come from another
/// connection's entry). It starts listening while toa is not loaded, so only the load-time walk of
/// TCP's listening hash can give it toa's tables:
/// 1. after insmod, a first TOA connection: `accept()` and `getpeername()` give the client (the walk
///    adopted the listener), getsockopt 4096 finds its entry (`EAFNOSUPPORT`: an IPv4 client);
/// 2. after rmmod, with the listener and that connection open: the first connection's `getpeername()`
///    gives the LB; a second TOA connection to the listener is accepted, and `accept()` and
///    `getpeername()` give the LB (the unload gave the listener the kernel's tables back: toa is gone
///    and nothing reaches it);
/// 3. after insmod again, a third TOA connection gets the client from `accept()` and `getpeername()`
///    (the new instance's walk adopted the listener again) and its entry;
/// 4. then the first connection, accepted under the first load, still gets the LB from
///    `getpeername()` (its socket-call table is the first instance's copy, neutralized at unload: the
///    kernel's `getname`), as does the second; getsockopt 4096 gives `ENOENT` on both (the new instance
///    has no entry for either), closing them frees no entry, and closing the third frees its own.
///
/// Reloads toa at the end, also on failure.
pub(crate) fn listener_across_reloads(ctx: &mut Ctx) -> TestResult {
    let r = across_reloads(ctx);
    // A failure while toa is unloaded leaves it unloaded: the later tests run with it.
    r.and(env::ensure_loaded())
}

/// [`listener_across_reloads`] but for the final reload.
fn across_reloads(ctx: &mut Ctx) -> TestResult {
    let client = |cport: u16| SocketAddr::new(IpAddr::V4(CIP4), cport);
    let lb = |s: &Served| SocketAddr::new(IpAddr::V4(LB_V4), s.conn.sport);

    env::unload()?;
    check!(!env::loaded(), "toa still loaded after rmmod");
    let port = ctx.port();
    let listener = io(
        Sock::listen((Ipv4Addr::UNSPECIFIED, port).into(), false),
        "listen with toa unloaded",
    )?;

    env::load(&[])?;
    let s1 = serve_on_open(ctx, &listener, port, CPORT)?;
    check!(
        s1.accepted == client(CPORT) && s1.peer == client(CPORT),
        "listener opened before insmod, first connection: accept() {}, getpeername() {}, want the \
         client {} (the load-time walk did not adopt the listener)",
        s1.accepted,
        s1.peer,
        client(CPORT)
    );
    check!(
        errno(&s1.lookup) == Some(libc::EAFNOSUPPORT),
        "first connection: getsockopt 4096 gave {:?}, want EAFNOSUPPORT (its entry)",
        s1.lookup
    );

    env::unload()?;
    let p1 = io(
        s1.sock.peer(),
        "first connection: getpeername() after rmmod",
    )?;
    check!(
        p1 == lb(&s1),
        "first connection after rmmod: getpeername() returned {p1}, want the LB {}",
        lb(&s1)
    );
    let s2 = serve_on_open(ctx, &listener, port, CPORT + 1)?;
    check!(
        s2.accepted == lb(&s2) && s2.peer == lb(&s2),
        "second connection, after rmmod: accept() {}, getpeername() {}, want the LB {} (the kernel's \
         answer)",
        s2.accepted,
        s2.peer,
        lb(&s2)
    );
    check!(
        errno(&s2.lookup) == Some(libc::ENOPROTOOPT),
        "second connection, after rmmod: getsockopt 4096 gave {:?}, want ENOPROTOOPT",
        s2.lookup
    );

    env::load(&[])?;
    let s3 = serve_on_open(ctx, &listener, port, CPORT + 2)?;
    check!(
        s3.accepted == client(CPORT + 2) && s3.peer == client(CPORT + 2),
        "third connection, after the reload: accept() {}, getpeername() {}, want the client {} (the \
         reload's walk did not adopt the listener again)",
        s3.accepted,
        s3.peer,
        client(CPORT + 2)
    );
    check!(
        errno(&s3.lookup) == Some(libc::EAFNOSUPPORT),
        "third connection: getsockopt 4096 gave {:?}, want EAFNOSUPPORT (its entry)",
        s3.lookup
    );

    for (what, s) in [("first", &s1), ("second", &s2)] {
        let p = io(
            s.sock.peer(),
            &format!("{what} connection: getpeername() after the reload"),
        )?;
        check!(
            p == lb(s),
            "{what} connection after the reload: getpeername() returned {p}, want the LB {}",
            lb(s)
        );
        let l = s.sock.toa_lookup(20);
        check!(
            errno(&l) == Some(libc::ENOENT),
            "{what} connection after the reload: getsockopt 4096 gave {l:?}, want ENOENT (no entry \
             in the new instance)"
        );
    }

    // The first two close under the new instance, which never saw them.
    let before = Stats::read()?;
    finish(ctx, s1)?;
    finish(ctx, s2)?;
    let d = delta(&before)?;
    check!(
        d["ip6_address_free"] == 0,
        "closing the connections of before the reload freed entries: {d:?}"
    );
    drop(listener);
    close(ctx, s3)
}

/// As [`serve`], but on `listener` (listening on `port`), which stays open: the LB connects over IPv4
/// with a TCP option 200 carrying the client `CIP4:cport` and sends "hello". The [`Served`] holds a
/// duplicate of the listener's descriptor, so [`finish`] and [`close`] end the connection and close
/// only that duplicate.
fn serve_on_open(ctx: &mut Ctx, listener: &Sock, port: u16, cport: u16) -> Result<Served, String> {
    let dup = io(listener.0.try_clone().map(Sock), "dup of the listener")?;
    serve_on(ctx, dup, port, Family::V4, ack_opts(toa4(200, CIP4, cport)))
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
