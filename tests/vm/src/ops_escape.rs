//! Subsystems that copy a socket's operation tables into their own keep no toa address after rmmod.
//!
//! A TOA socket's `sock->ops` is toa's copy of `inet_stream_ops`/`inet6_stream_ops` (its `getname` is
//! toa's). Some subsystems build a long-lived table of their own by copying the `sock->ops` of a socket:
//! kTLS (`TCP_ULP` "tls") builds `tls_proto_ops` from the first socket of the boot that enables it, per
//! family (net/tls/tls_main.c, `tls_build_proto`); ESP in TCP (`TCP_ULP` "espintcp") builds
//! `espintcp6_ops` from the first AF_INET6 socket that enables it (net/xfrm/espintcp.c; its IPv4 table
//! comes from `inet_stream_ops` at boot). Were that socket a TOA socket, toa's `getname` would stay in
//! the kernel's table after `rmmod toa`, and the next `getpeername()` on any socket of that subsystem
//! would jump into freed module text: a kernel oops, which fails the run (vm-run.sh scans the log). toa
//! gives such a socket the kernel's own operations back before the ULP is attached.
//!
//! These tables are built once per boot, so the tests prove something only when their TOA socket is the
//! first of the boot to enable the ULP: no test before them (and nothing else in the VM) may use kTLS or
//! ESP in TCP, and a second run in the same boot passes without proving anything.
//!
//! The area also covers a table the kernel swaps itself on a TOA socket (`IPV6_ADDRFORM`, which gives an
//! AF_INET6 socket with a v4-mapped peer the kernel's `inet_stream_ops`): [`ipv6_addrform_on_toa_socket`].

use crate::env;
use crate::fixture::*;
use crate::sys::Sock;
use lbemu::packet::Family;
use lbemu::{LB_V4, SERVER_V4};
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;

/// kTLS on an IPv4 TOA socket (AF_INET listener, IPv4 TOA): `TCP_ULP` "tls" (then `TLS_TX`, whose
/// outcome is only reported) succeeds on the accepted socket and getsockopt 4096 still finds its entry
/// (`EAFNOSUPPORT`: an IPv4 client); after rmmod with that socket open, its `getpeername()` returns the
/// LB, and a new loopback connection with "tls" on its accepted side names both ends 127.0.0.1 with the
/// right ports (kTLS's IPv4 table, built from the TOA socket, holds no toa function). Must be the first
/// use of kTLS in the boot (see the module documentation). Reloads toa at the end.
pub(crate) fn ktls_after_rmmod(ctx: &mut Ctx) -> TestResult {
    let r = escape(
        ctx,
        &Escape {
            test: "ktls_after_rmmod",
            af: Af::Inet,
            wire: Family::V4,
            toa: toa4(200, CIP4, CPORT),
            client: (CIP4, CPORT).into(),
            lookup: Err(libc::EAFNOSUPPORT),
            ulp: "tls",
            config: "CONFIG_TLS=y",
            after_ulp: Some(("TLS_TX (AES-GCM-128)", tls_tx)),
            loopback: IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
    );
    // A failure after the rmmod leaves toa unloaded: the later tests run with it.
    r.and(env::ensure_loaded())
}

/// ESP in TCP on an IPv6 TOA socket (AF_INET6 listener, IPv6 on the wire, IPv6 TOA): `TCP_ULP`
/// "espintcp" succeeds on the accepted socket and getsockopt 4096 still returns the client; after rmmod
/// with that socket open, its `getpeername()` returns the LB, and a new loopback (`[::1]`) connection with
/// "espintcp" on its accepted side names both ends ::1 with the right ports (`espintcp6_ops`, built from
/// the TOA socket, holds no toa function). No data goes through the ESP-in-TCP sockets (espintcp parses
/// what they receive as ESP frames): name calls only. Must be the first use of ESP in TCP over IPv6 in
/// the boot (see the module documentation). Reloads toa at the end.
pub(crate) fn espintcp6_after_rmmod(ctx: &mut Ctx) -> TestResult {
    let r = escape(
        ctx,
        &Escape {
            test: "espintcp6_after_rmmod",
            af: Af::Inet6,
            wire: Family::V6,
            toa: toa6(253, CIP6, CPORT),
            client: (CIP6, CPORT).into(),
            lookup: Ok((CIP6, CPORT).into()),
            ulp: "espintcp",
            config: "CONFIG_INET6_ESPINTCP=y",
            after_ulp: None,
            loopback: IpAddr::V6(Ipv6Addr::LOCALHOST),
        },
    );
    // A failure after the rmmod leaves toa unloaded: the later tests run with it.
    r.and(env::ensure_loaded())
}

/// `IPV6_ADDRFORM` on a TOA socket: an AF_INET6 dual-stack listener, IPv4 on the wire, an IPv4 TOA;
/// `accept()` and `getpeername()` return the client as `::ffff:CIP4`; then
/// `setsockopt(IPPROTO_IPV6, IPV6_ADDRFORM, AF_INET)` succeeds and the kernel makes the socket an
/// AF_INET one with its own tables (`tcp_prot`, `ipv4_specific`, `inet_stream_ops` in place of toa's
/// copy of the listener's `inet6_stream_ops`; net/ipv6/ipv6_sockglue.c). After it, `SO_DOMAIN` and
/// `getsockname()` give AF_INET (a `sockaddr_in` of the server's IPv4 address), `getpeername()` with a
/// `sockaddr_in6`-sized buffer gives a `sockaddr_in` of the LB's IPv4 address and source port (what the
/// kernel knows: toa's `getname` is no longer called), and getsockopt 4096 still finds the socket's
/// entry (`EAFNOSUPPORT`, an IPv4 client, as in `ipv4_toa_on_af_inet`; `ENOENT` would mean the entry
/// was lost with the table). This documents toa's answer after the kernel replaced the table itself
/// (see src/redirect.rs): the client is what `accept()` already returned and what getsockopt 4096 keeps.
pub(crate) fn ipv6_addrform_on_toa_socket(ctx: &mut Ctx) -> TestResult {
    let s = serve(ctx, Af::Inet6, Family::V4, ack_opts(toa4(200, CIP4, CPORT)))?;
    let client = SocketAddr::new(v4mapped(CIP4), CPORT);
    check!(
        s.accepted == client,
        "accept() returned {}, want the client {client}",
        s.accepted
    );
    check!(
        s.peer == client,
        "before IPV6_ADDRFORM: getpeername() returned {}, want the client {client}",
        s.peer
    );
    let local6 = SocketAddr::new(server_addr(Af::Inet6, Family::V4), s.conn.dport);
    check!(
        s.local == local6,
        "before IPV6_ADDRFORM: getsockname() returned {}, want {local6}",
        s.local
    );
    let domain = so_domain(&s.sock);
    check!(
        matches!(domain, Ok(libc::AF_INET6)),
        "before IPV6_ADDRFORM: SO_DOMAIN gave {domain:?}, want AF_INET6 ({})",
        libc::AF_INET6
    );
    expect_lookup(&s.lookup, &Err(libc::EAFNOSUPPORT), "before IPV6_ADDRFORM")?;

    let af_inet: libc::c_int = libc::AF_INET;
    io(
        setsockopt(&s.sock, libc::IPPROTO_IPV6, libc::IPV6_ADDRFORM, &af_inet),
        "setsockopt(IPPROTO_IPV6, IPV6_ADDRFORM, AF_INET) on the TOA socket",
    )?;

    let domain = so_domain(&s.sock);
    check!(
        matches!(domain, Ok(libc::AF_INET)),
        "after IPV6_ADDRFORM: SO_DOMAIN gave {domain:?}, want AF_INET ({})",
        libc::AF_INET
    );
    // `Sock::local`/`peer` decode by the family the kernel wrote: a V4 address is a `sockaddr_in`.
    let local = io(s.sock.local(), "getsockname() after IPV6_ADDRFORM")?;
    let local4 = SocketAddr::new(IpAddr::V4(SERVER_V4), s.conn.dport);
    check!(
        local == local4,
        "after IPV6_ADDRFORM: getsockname() returned {local}, want the AF_INET {local4}"
    );
    let (peer, len) = io(
        s.sock.peer_with_buffer(size_of::<libc::sockaddr_in6>()),
        "getpeername() after IPV6_ADDRFORM",
    )?;
    let lb = SocketAddr::new(IpAddr::V4(LB_V4), s.conn.sport);
    check!(
        peer == lb && len as usize == size_of::<libc::sockaddr_in>(),
        "after IPV6_ADDRFORM: getpeername() returned {peer} (length {len}), want the LB's AF_INET {lb} \
         (length {})",
        size_of::<libc::sockaddr_in>()
    );
    let lookup = s.sock.toa_lookup(20);
    check!(
        errno(&lookup) != Some(libc::ENOENT),
        "after IPV6_ADDRFORM: getsockopt 4096 gave ENOENT: the socket's entry was lost"
    );
    expect_lookup(&lookup, &Err(libc::EAFNOSUPPORT), "after IPV6_ADDRFORM")?;
    close(ctx, s)
}

/// `getsockopt(SOL_SOCKET, SO_DOMAIN)`: the socket's family now (`sk->sk_family`).
fn so_domain(s: &Sock) -> io::Result<libc::c_int> {
    const LEN: usize = size_of::<libc::c_int>();
    let mut buf = [0u8; LEN];
    let n = s.getsockopt_buf(libc::SOL_SOCKET, libc::SO_DOMAIN, &mut buf, LEN)?;
    if n != LEN {
        return Err(io::Error::other(format!("SO_DOMAIN returned {n} bytes")));
    }
    Ok(libc::c_int::from_ne_bytes(buf))
}

/// One test of the area: a TOA connection, a ULP on its accepted socket, rmmod, and the ULP on a new
/// loopback connection.
struct Escape {
    /// The test's name, for its `#` lines.
    test: &'static str,
    /// The listener's family.
    af: Af,
    /// The family on the wire.
    wire: Family,
    /// The TOA option of the handshake's ACK.
    toa: Vec<u8>,
    /// The client the option carries, as `getpeername()` reports it on a listener of family `af`.
    client: SocketAddr,
    /// What getsockopt 4096 returns on the TOA socket, before and after the ULP: the client or an errno.
    lookup: Result<SocketAddr, i32>,
    /// The upper-layer protocol (`TCP_ULP` name).
    ulp: &'static str,
    /// The kernel option the ULP needs, for the failure's reason.
    config: &'static str,
    /// A call made on the TOA socket after the ULP, whose outcome is only reported: its name and call.
    after_ulp: Option<(&'static str, SockCall)>,
    /// The loopback address of the family.
    loopback: IpAddr,
}

/// A call made on a socket (see [`Escape::after_ulp`]).
type SockCall = fn(&Sock) -> io::Result<()>;

/// Runs `e`: see [`ktls_after_rmmod`] and [`espintcp6_after_rmmod`].
fn escape(ctx: &mut Ctx, e: &Escape) -> TestResult {
    let ulp = e.ulp;
    let s = serve(ctx, e.af, e.wire, ack_opts(e.toa.clone()))?;
    let lb_ip = if e.af == Af::Inet6 && e.wire == Family::V4 {
        v4mapped(LB_V4)
    } else {
        lb_addr(e.wire)
    };
    let lb = SocketAddr::new(lb_ip, s.conn.sport);
    check!(
        s.peer == e.client,
        "before TCP_ULP: getpeername() returned {}, want the client {}",
        s.peer,
        e.client
    );
    expect_lookup(&s.lookup, &e.lookup, "before TCP_ULP")?;

    set_ulp(&s.sock, ulp).map_err(|err| ulp_failed(e, "the TOA socket", &err))?;
    let attached = ulp_name(&s.sock);
    check!(
        matches!(&attached, Ok(n) if n == ulp),
        "getsockopt(TCP_ULP) on the TOA socket after setting {ulp:?}: {attached:?}"
    );
    if let Some((what, call)) = e.after_ulp {
        let r = call(&s.sock);
        println!("# {}: {what} on the TOA socket: {r:?}", e.test);
    }
    let peer = io(
        s.sock.peer(),
        &format!("getpeername() after TCP_ULP {ulp:?}"),
    )?;
    let whose = if peer == e.client {
        "the client: toa's getname"
    } else if peer == lb {
        "the LB: the kernel's getname"
    } else {
        "neither the client nor the LB"
    };
    println!(
        "# {}: getpeername() on the TOA socket after TCP_ULP {ulp:?}: {peer} ({whose})",
        e.test
    );
    expect_lookup(
        &s.sock.toa_lookup(20),
        &e.lookup,
        &format!("after TCP_ULP {ulp:?}"),
    )?;

    env::unload()?;
    let after = io(
        s.sock.peer(),
        &format!("getpeername() on the TOA socket with {ulp:?} after rmmod"),
    )?;
    check!(
        after == lb,
        "after rmmod: getpeername() on the TOA socket with {ulp:?} returned {after}, want the LB {lb}"
    );
    loopback(ctx, e)?;

    env::load(&[])?;
    // The TOA socket closes after the reload, as in rmmod_with_live_sockets.
    finish(ctx, s)
}

/// With toa unloaded: a loopback connection, the ULP on its accepted side, and the names of both ends.
fn loopback(ctx: &mut Ctx, e: &Escape) -> TestResult {
    let ulp = e.ulp;
    loopback_up()?;
    let port = ctx.port();
    let addr = SocketAddr::new(e.loopback, port);
    let listener = io(Sock::listen(addr, false), "loopback listen")?;
    let stream = io(TcpStream::connect_timeout(&addr, WAIT), "loopback connect")?;
    let client = Sock(OwnedFd::from(stream));
    let (sock, accepted) = io(listener.accept(WAIT), "loopback accept")?;
    set_ulp(&sock, ulp).map_err(|err| ulp_failed(e, "a loopback socket after rmmod", &err))?;
    let attached = ulp_name(&sock);
    check!(
        matches!(&attached, Ok(n) if n == ulp),
        "getsockopt(TCP_ULP) on the loopback socket after setting {ulp:?}: {attached:?}"
    );
    let peer = io(
        sock.peer(),
        &format!("getpeername() on the {ulp:?} loopback socket"),
    )?;
    let local = io(
        sock.local(),
        &format!("getsockname() on the {ulp:?} loopback socket"),
    )?;
    let c_peer = io(client.peer(), "getpeername() on the loopback client")?;
    let c_local = io(client.local(), "getsockname() on the loopback client")?;
    check!(
        c_local.ip() == e.loopback && c_local.port() != 0,
        "loopback client: getsockname() returned {c_local}"
    );
    check!(
        c_peer == addr,
        "loopback client: getpeername() returned {c_peer}, want {addr}"
    );
    check!(
        peer == c_local && accepted == c_local,
        "{ulp:?} loopback socket: getpeername() {peer}, accept() {accepted}, want the client {c_local}"
    );
    check!(
        local == addr,
        "{ulp:?} loopback socket: getsockname() returned {local}, want {addr}"
    );
    drop((sock, client, listener));
    Ok(())
}

/// Brings `lo` up unless it is (the VM's init normally has): the loopback connections need it.
fn loopback_up() -> TestResult {
    let path = "/sys/class/net/lo/flags";
    let flags = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .map_err(|e| format!("{path}: {flags:?}: {e}"))?;
    if flags & libc::IFF_UP as u32 == 0 {
        env::run("ip", &["link", "set", "dev", "lo", "up"])?;
    }
    Ok(())
}

/// Checks getsockopt 4096's outcome against `want` (the client, or an errno); `when` names the moment.
fn expect_lookup(
    got: &io::Result<(SocketAddr, usize)>,
    want: &Result<SocketAddr, i32>,
    when: &str,
) -> TestResult {
    let ok = match (got, want) {
        (Ok((a, 20)), Ok(w)) => a == w,
        (Err(_), Err(w)) => errno(got) == Some(*w),
        _ => false,
    };
    check!(
        ok,
        "{when}: getsockopt 4096 gave {got:?}, want {}",
        match want {
            Ok(a) => format!("{a} (20 bytes)"),
            Err(n) => io::Error::from_raw_os_error(*n).to_string(),
        }
    );
    Ok(())
}

/// The reason of a failed `TCP_ULP`: the errno, and what ENOENT means (the kernel has no such ULP).
fn ulp_failed(e: &Escape, on: &str, err: &io::Error) -> String {
    let hint = if err.raw_os_error() == Some(libc::ENOENT) {
        format!(
            " (ENOENT: the kernel has no {:?} ULP; the test kernels must have {})",
            e.ulp, e.config
        )
    } else {
        String::new()
    };
    format!(
        "setsockopt(IPPROTO_TCP, TCP_ULP, {:?}) on {on}: {err}{hint}",
        e.ulp
    )
}

/// `setsockopt(fd, level, name, v, size_of::<T>())`.
fn setsockopt<T: ?Sized>(s: &Sock, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            s.fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of_val(v) as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `setsockopt(IPPROTO_TCP, TCP_ULP, name, strlen(name))`: attaches the upper-layer protocol `name` (the
/// kernel reads at most optlen bytes and adds the NUL itself).
fn set_ulp(s: &Sock, name: &str) -> io::Result<()> {
    setsockopt(s, libc::IPPROTO_TCP, libc::TCP_ULP, name.as_bytes())
}

/// `getsockopt(IPPROTO_TCP, TCP_ULP)`: the name of the socket's upper-layer protocol ("" when none).
fn ulp_name(s: &Sock) -> io::Result<String> {
    // TCP_ULP_NAME_MAX: the kernel copies the name's whole array, NUL padded.
    let mut buf = [0u8; 16];
    let n = s.getsockopt_buf(libc::IPPROTO_TCP, libc::TCP_ULP, &mut buf, 16)?;
    let name = &buf[..n.min(buf.len())];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

// `struct tls12_crypto_info_aes_gcm_128` of uapi/linux/tls.h: version, cipher_type, iv[8], key[16],
// salt[4], rec_seq[8].
const _: () = assert!(size_of::<libc::tls12_crypto_info_aes_gcm_128>() == 40);

/// `setsockopt(SOL_TLS, TLS_TX)` with TLS 1.2 AES-GCM-128 keys (any bytes: nothing is sent): kTLS's
/// software transmit path, which switches the socket to another of kTLS's `proto_ops`.
fn tls_tx(s: &Sock) -> io::Result<()> {
    let info = libc::tls12_crypto_info_aes_gcm_128 {
        info: libc::tls_crypto_info {
            version: libc::TLS_1_2_VERSION,
            cipher_type: libc::TLS_CIPHER_AES_GCM_128,
        },
        iv: [0x01; libc::TLS_CIPHER_AES_GCM_128_IV_SIZE],
        key: [0x02; libc::TLS_CIPHER_AES_GCM_128_KEY_SIZE],
        salt: [0x03; libc::TLS_CIPHER_AES_GCM_128_SALT_SIZE],
        rec_seq: [0; libc::TLS_CIPHER_AES_GCM_128_REC_SEQ_SIZE],
    };
    setsockopt(s, libc::SOL_TLS, libc::TLS_TX, &info)
}
