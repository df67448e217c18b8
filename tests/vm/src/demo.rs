//! `toa-vmtest demo`: one connection per load-balancer scenario, printing what the server sees;
//! then one UDP datagram per scenario (`uoa::demo`).

use crate::env;
use crate::fixture::*;
use crate::uoa;
use lbemu::packet::Family;
use std::net::SocketAddr;

/// Runs the demo: 0, or 1 when a scenario failed.
pub(crate) fn run(ctx: &mut Ctx) -> i32 {
    let scenarios: Vec<(&str, Af, Family, Vec<u8>)> = vec![
        (
            "Tencent CLB hybrid cloud: TCP option 200, IPv4 client",
            Af::Inet,
            Family::V4,
            toa4(200, CIP4, CPORT),
        ),
        (
            "LVS FULLNAT / Huawei ELB: TCP option 254, IPv4 client",
            Af::Inet,
            Family::V4,
            toa4(254, CIP4, CPORT),
        ),
        (
            "Tencent CLB NAT64: TCP option 253, IPv6 client, IPv4 server",
            Af::Inet,
            Family::V4,
            toa6(253, CIP6, CPORT),
        ),
        (
            "IPv6 listener, IPv4 client (v4-mapped)",
            Af::Inet6,
            Family::V4,
            toa4(200, CIP4, CPORT),
        ),
        (
            "IPv6 end to end: TCP option 254, IPv6 client",
            Af::Inet6,
            Family::V6,
            toa6(254, CIP6, CPORT),
        ),
        ("No load balancer option", Af::Inet, Family::V4, vec![]),
    ];
    let mut rc = 0;
    for (title, af, wire, opts) in scenarios {
        println!("== {title}");
        match serve(ctx, af, wire, ack_opts(opts)) {
            Ok(s) => {
                println!(
                    "   LB address on the wire : {}",
                    SocketAddr::new(lb_addr(wire), s.conn.sport)
                );
                println!("   accept()               : {}", s.accepted);
                println!("   getpeername()          : {}", s.peer);
                println!("   getsockname()          : {}", s.local);
                match &s.lookup {
                    Ok((a, _)) => println!("   getsockopt(4096)       : {a}"),
                    Err(e) => println!("   getsockopt(4096)       : {e}"),
                }
                if let Ok(t) = env::toa_table() {
                    for l in t {
                        println!("   toa_table              : {l}");
                    }
                }
                if let Err(e) = close(ctx, s) {
                    println!("   close: {e}");
                    rc = 1;
                }
            }
            Err(e) => {
                println!("   failed: {e}");
                rc = 1;
            }
        }
    }
    rc |= uoa::demo(ctx);
    println!("== /proc/net/toa_stats");
    print!(
        "{}",
        std::fs::read_to_string("/proc/net/toa_stats").unwrap_or_default()
    );
    rc
}
