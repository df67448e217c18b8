//! The server side of the tests: listening sockets, UDP sockets and the calls whose results toa changes,
//! through the raw system calls (so the tests see exactly what an application sees).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `TOA_SO_GET_LOOKUP` of include/toa.h.
pub const TOA_SO_GET_LOOKUP: libc::c_int = 4096;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Decodes a `sockaddr_in`/`sockaddr_in6` of `len` bytes.
pub fn decode(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> io::Result<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says it is a sockaddr_in and it is that long.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                u16::from_be(sin.sin_port),
            ))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Ok(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                u16::from_be(sin6.sin6_port),
            ))
        }
        f => Err(io::Error::other(format!("family {f} with length {len}"))),
    }
}

fn encode(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// A socket of the server under test.
pub struct Sock(pub OwnedFd);

impl Sock {
    /// A socket of `kind` bound to `addr` (`AF_INET` or `AF_INET6` by `addr`'s family; an IPv6
    /// socket is dual-stack, so a wildcard one also takes IPv4, v4-mapped), after `setup` has set its
    /// options.
    fn bound(
        addr: SocketAddr,
        kind: libc::c_int,
        setup: impl FnOnce(&Sock) -> io::Result<()>,
    ) -> io::Result<Sock> {
        let family = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain syscalls on a fresh descriptor we own.
        unsafe {
            let fd = cvt(libc::socket(family, kind | libc::SOCK_CLOEXEC, 0))?;
            let s = Sock(OwnedFd::from_raw_fd(fd));
            let zero: libc::c_int = 0;
            if family == libc::AF_INET6 {
                s.setopt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &zero)?;
            }
            setup(&s)?;
            let (ss, len) = encode(addr);
            cvt(libc::bind(
                fd,
                &ss as *const _ as *const libc::sockaddr,
                len,
            ))?;
            Ok(s)
        }
    }

    /// A listening TCP socket bound to `addr` (see [`Sock::bound`]). `fastopen` enables TCP Fast Open
    /// on it.
    pub fn listen(addr: SocketAddr, fastopen: bool) -> io::Result<Sock> {
        let one: libc::c_int = 1;
        let s = Sock::bound(addr, libc::SOCK_STREAM, |s| {
            s.setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)
        })?;
        if fastopen {
            let qlen: libc::c_int = 16;
            s.setopt(libc::IPPROTO_TCP, libc::TCP_FASTOPEN, &qlen)?;
        }
        // SAFETY: a socket we own.
        cvt(unsafe { libc::listen(s.fd(), 128) })?;
        Ok(s)
    }

    /// A UDP socket bound to `addr` (see [`Sock::bound`]), with a receive buffer of at least `rcvbuf`
    /// bytes (root may exceed `rmem_max`), so that a burst of datagrams read in batches is not dropped.
    pub fn udp(addr: SocketAddr, rcvbuf: usize) -> io::Result<Sock> {
        let size = rcvbuf.min(i32::MAX as usize / 2) as libc::c_int;
        Sock::bound(addr, libc::SOCK_DGRAM, |s| {
            s.setopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size)
        })
    }

    /// Waits up to `timeout` for a datagram and reads it: the payload and the source recvfrom()
    /// reported.
    pub fn recv_from(&self, timeout: Duration) -> io::Result<(Vec<u8>, SocketAddr)> {
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = cvt(unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) })?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no datagram"));
        }
        self.try_recv_from()?
            .ok_or_else(|| io::Error::other("poll said readable, recvfrom found nothing"))
    }

    /// Reads a datagram if one is queued (payload and source), `None` if none is.
    pub fn try_recv_from(&self) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: all-zero is a valid sockaddr_storage; recvfrom writes at most `len` bytes of it and at
        // most `buf.len()` bytes of payload.
        unsafe {
            let mut ss: libc::sockaddr_storage = zeroed();
            let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let n = libc::recvfrom(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                &mut ss as *mut _ as *mut libc::sockaddr,
                &mut len,
            );
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
            buf.truncate(n as usize);
            Ok(Some((buf, decode(&ss, len)?)))
        }
    }

    /// `getsockopt(level, name)` on `buf` with `len` as the length passed in (it may differ from the
    /// buffer's, to test the kernel's checks: at most `buf.len()`): the length the kernel returned.
    pub fn getsockopt_buf(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        buf: &mut [u8],
        len: usize,
    ) -> io::Result<usize> {
        assert!(len <= buf.len(), "getsockopt length past the buffer");
        let mut l = len as libc::socklen_t;
        // SAFETY: the buffer holds at least `l` bytes.
        cvt(unsafe { libc::getsockopt(self.fd(), level, name, buf.as_mut_ptr().cast(), &mut l) })?;
        Ok(l as usize)
    }

    fn setopt<T>(&self, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
        // SAFETY: `v` is a live T of the size passed.
        cvt(unsafe {
            libc::setsockopt(
                self.fd(),
                level,
                name,
                v as *const T as *const _,
                size_of::<T>() as _,
            )
        })
        .map(|_| ())
    }

    /// Closes with SO_LINGER 0: the kernel sends RST and destroys the socket at once (no FIN_WAIT).
    pub fn abort(self) {
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = self.setopt(libc::SOL_SOCKET, libc::SO_LINGER, &l);
    }

    /// The raw descriptor.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// `accept()` with a `sockaddr_storage` buffer, waiting at most `timeout`: the new socket and the
    /// peer address accept() returned.
    pub fn accept(&self, timeout: Duration) -> io::Result<(Sock, SocketAddr)> {
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = cvt(unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) })?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "accept timed out"));
        }
        // SAFETY: all-zero is a valid sockaddr_storage; accept writes at most `len` bytes.
        unsafe {
            let mut ss: libc::sockaddr_storage = zeroed();
            let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let fd = cvt(libc::accept4(
                self.fd(),
                &mut ss as *mut _ as *mut _,
                &mut len,
                libc::SOCK_CLOEXEC,
            ))?;
            Ok((Sock(OwnedFd::from_raw_fd(fd)), decode(&ss, len)?))
        }
    }

    fn name(&self, peer: bool, buflen: usize) -> io::Result<(SocketAddr, libc::socklen_t)> {
        // SAFETY: `len` never exceeds the buffer's size.
        unsafe {
            let mut ss: libc::sockaddr_storage = zeroed();
            let mut len = buflen.min(size_of::<libc::sockaddr_storage>()) as libc::socklen_t;
            let p = &mut ss as *mut _ as *mut libc::sockaddr;
            cvt(if peer {
                libc::getpeername(self.fd(), p, &mut len)
            } else {
                libc::getsockname(self.fd(), p, &mut len)
            })?;
            Ok((decode(&ss, len.min(buflen as libc::socklen_t))?, len))
        }
    }

    /// `getpeername()` with a `sockaddr_storage` buffer.
    pub fn peer(&self) -> io::Result<SocketAddr> {
        self.name(true, size_of::<libc::sockaddr_storage>())
            .map(|(a, _)| a)
    }

    /// `getpeername()` with a buffer of `buflen` bytes: the address and the length the kernel reported.
    pub fn peer_with_buffer(&self, buflen: usize) -> io::Result<(SocketAddr, libc::socklen_t)> {
        self.name(true, buflen)
    }

    /// `getsockname()`.
    pub fn local(&self) -> io::Result<SocketAddr> {
        self.name(false, size_of::<libc::sockaddr_storage>())
            .map(|(a, _)| a)
    }

    /// `getsockopt(IPPROTO_IP, TOA_SO_GET_LOOKUP)` with a buffer of `len` bytes: the NAT64 client
    /// (`struct toa_nat64_peer`) and the length returned.
    pub fn toa_lookup(&self, len: usize) -> io::Result<(SocketAddr, usize)> {
        let mut buf = [0u8; 64];
        let mut l = len.min(buf.len()) as libc::socklen_t;
        // SAFETY: the buffer holds `l` bytes.
        cvt(unsafe {
            libc::getsockopt(
                self.fd(),
                libc::IPPROTO_IP,
                TOA_SO_GET_LOOKUP,
                buf.as_mut_ptr().cast(),
                &mut l,
            )
        })?;
        let addr: [u8; 16] = buf[..16].try_into().unwrap();
        let port = u16::from_be_bytes([buf[16], buf[17]]);
        Ok((
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(addr)), port),
            l as usize,
        ))
    }

    /// Reads until `n` bytes came or `timeout` passed.
    pub fn read_exact(&self, n: usize, timeout: Duration) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + timeout;
        while out.len() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if cvt(unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) })? == 0
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
            }
            let mut buf = [0u8; 2048];
            // SAFETY: reads into a local buffer.
            let r = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            if r == 0 {
                break;
            }
            out.extend_from_slice(&buf[..r as usize]);
        }
        Ok(out)
    }
}
