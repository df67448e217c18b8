//! Close paths: every entry is freed, whatever way the socket goes (an RST after `accept()`, an RST
//! before it, a listener closed with children in its accept queue).

use crate::env::{self, delta, Stats};
use crate::fixture::*;
use crate::sys::Sock;
use lbemu::packet::Family;
use lbemu::Conn;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// RST from the LB after accept().
pub(crate) fn close_by_rst(ctx: &mut Ctx) -> TestResult {
    let mut s = serve(ctx, Af::Inet6, Family::V6, ack_opts(toa6(253, CIP6, CPORT)))?;
    io(s.conn.rst(&mut ctx.lb), "RST")?;
    wait_reset(s.local.port())?;
    drop(s.sock);
    drop(s.listener);
    env::wait_all_freed()
}

/// The connection is reset before the application accepts it; then accepted and closed.
pub(crate) fn close_before_accept(ctx: &mut Ctx) -> TestResult {
    let port = ctx.port();
    let listener = io(
        Sock::listen((Ipv4Addr::UNSPECIFIED, port).into(), false),
        "listen",
    )?;
    let mut conn = Conn::new(
        &mut ctx.lb,
        Family::V4,
        port,
        ack_opts(toa4(200, CIP4, CPORT)),
    );
    io(conn.connect(&mut ctx.lb, &[]), "handshake")?;
    io(conn.rst(&mut ctx.lb), "RST")?;
    wait_reset(port)?;
    if let Ok((sock, _)) = listener.accept(Duration::from_millis(500)) {
        drop(sock);
    }
    drop(listener);
    env::wait_all_freed()
}

/// The listener is closed with children still in its accept queue.
pub(crate) fn listener_closed_with_queued_children(ctx: &mut Ctx) -> TestResult {
    let port = ctx.port();
    let before = Stats::read()?;
    let listener = io(
        Sock::listen((Ipv6Addr::UNSPECIFIED, port).into(), false),
        "listen",
    )?;
    let mut conns = Vec::new();
    for (i, wire) in [Family::V4, Family::V6, Family::V4].into_iter().enumerate() {
        let opts = ack_opts(if wire == Family::V4 {
            toa4(200, CIP4, CPORT + i as u16)
        } else {
            toa6(253, CIP6, CPORT)
        });
        let mut c = Conn::new(&mut ctx.lb, wire, port, opts);
        io(c.connect(&mut ctx.lb, &[]), "handshake")?;
        conns.push(c);
    }
    env::poll(WAIT, "3 children in the listener's accept queue", || {
        let socks = env::tcp_sockets(port)?;
        let queued = |s: &env::TcpSocket| s.state == env::TCP_LISTEN && s.rx_queue == 3;
        Ok(socks.iter().any(queued).then_some(()))
    })?;
    let d = delta(&before)?;
    check!(
        d["ip6_address_alloc"] == 3,
        "3 queued children, ip6_address_alloc +{}",
        d["ip6_address_alloc"]
    );
    check!(
        env::toa_table()?.len() >= 3,
        "queued children missing from toa_table"
    );
    drop(listener);
    env::wait_all_freed()
}

/// Waits until the kernel has processed an RST for the connection on `port`: a reset socket leaves the
/// hash tables, so only the listener is left there (before, the connection or its request is listed).
fn wait_reset(port: u16) -> TestResult {
    env::poll(WAIT, &format!("the RST on port {port} processed"), || {
        let socks = env::tcp_sockets(port)?;
        Ok(socks
            .iter()
            .all(|s| s.state == env::TCP_LISTEN)
            .then_some(()))
    })
}
