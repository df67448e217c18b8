//! A TUN device (`/dev/net/tun`, `IFF_TUN | IFF_NO_PI`): raw IP packets in and out of the kernel.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

/// An open TUN device.
pub struct Tun {
    file: File,
    /// Receive buffer, reused: zeroing 64 KiB per packet cost the emulator more than the kernel's
    /// whole handshake, and diluted what the benchmark measures.
    buf: Vec<u8>,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

impl Tun {
    /// Creates (or attaches to) the TUN device `name`.
    pub fn create(name: &str) -> io::Result<Tun> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        let n = name.len().min(libc::IFNAMSIZ - 1);
        req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` lays out (40 bytes).
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tun {
            file,
            buf: vec![0u8; 65536],
        })
    }

    /// Reads one packet, waiting at most `timeout`; `None` on timeout.
    pub fn read(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(None);
        }
        let len = self.file.read(&mut self.buf)?;
        Ok(Some(self.buf[..len].to_vec()))
    }

    /// Writes one packet.
    pub fn write(&mut self, packet: &[u8]) -> io::Result<()> {
        self.file.write_all(packet)
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    let st = Command::new("ip").args(args).status()?;
    if st.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ip {} failed", args.join(" "))))
    }
}

/// Brings `name` up with the server's addresses; IPv6 without duplicate address detection, so the
/// address is usable at once.
pub fn configure(name: &str) -> io::Result<()> {
    ip(&["link", "set", name, "up"])?;
    ip(&["addr", "replace", "192.0.2.1/24", "dev", name])?;
    ip(&[
        "-6",
        "addr",
        "replace",
        "2001:db8::1/64",
        "dev",
        name,
        "nodad",
    ])?;
    Ok(())
}
