// SPDX-License-Identifier: GPL-2.0

//! toa: the real client address of connections that arrive through a layer-4 load balancer.
//!
//! Load balancers that SNAT or NAT64 their clients (Tencent CLB, Huawei ELB, LVS FULLNAT, DPVS...) carry
//! the client's address in a TCP option of the packet that completes the handshake. toa reads it when the
//! kernel creates the connection's socket, keeps it per socket, and hands it back: `accept()` and
//! `getpeername()` return it unchanged applications, and NAT64-aware applications read an IPv6 client with
//! `getsockopt(IPPROTO_IP, TOA_SO_GET_LOOKUP = 4096)`.
//!
//! Layers, bottom up:
//! * [`wire`]: pure parsing of the option bytes (no kernel types; host-tested and fuzzed);
//! * [`store`]: the per-socket store (an RCU hash table like TCP's established one), [`stats`]: per-CPU counters;
//! * [`hooks`]: the handlers (connection created, named, destroyed); [`redirect`]: how they are reached,
//!   through toa's copies of TCP's tables on listeners, and the unload protocol;
//! * [`sockopt`] and [`procfs`]: the user API;
//! * [`uoa`]: the same for UDP (UOA): flow map, netfilter hooks, getsockopt 2048/2049, `/proc/net/uoa_table`;
//! * this file: module parameters check, init and exit, in dependency order.
//!
//! [`sys`] wraps the kernel objects all of these use (sockets, packets, namespaces, registrations) in
//! typed, documented Rust types over [`ffi`], the declarations of the C shim (`toa_shim.c`).

use kernel::prelude::*;

mod ffi;
mod hooks;
mod procfs;
mod redirect;
mod sockaddr;
mod sockopt;
mod stats;
mod store;
mod sys;
mod uoa;
// `pub`: this file is also part of the host crate `toa-wire`.
pub mod trust;
// `pub`: this file is also the public API of the host crate `toa-wire`.
pub mod wire;

use sys::probes::{FtraceHook, FtraceRegistration};

/// toa's version, printed at load and shown by `modinfo`.
const VERSION: &str = "0.1.0";

#[cfg(not(toa_module_authors))]
module! {
    type: Toa,
    name: "toa",
    author: "toa developers",
    description: "TCP Option Address: real client addresses behind layer-4 load balancers",
    license: "GPL",
}

#[cfg(toa_module_authors)]
module! {
    type: Toa,
    name: "toa",
    authors: ["toa developers"],
    description: "TCP Option Address: real client addresses behind layer-4 load balancers",
    license: "GPL",
}

/// The loaded module.
struct Toa {
    parts: Option<Parts>,
}

/// What the module registered and owns. Fields drop in declaration order, which is the teardown order:
/// first what adds entries or looks them up (the listeners' tables, whose unload protocol is in
/// `src/redirect.rs`), then the user API (the /proc dump reads the entries' sockets), then the
/// destructor hook, then the store (frees what is left after an RCU grace period, without touching
/// sockets: they may be gone), then the counters.
struct Parts {
    // Registered last, so that `nf_getsockopt`, which tries the most recently registered range first
    // (and takes a module reference for each range of the family it looks at), finds 4096 at once.
    _sockopt: sockopt::SockoptRegistration,
    // UDP next: it uses the counters, the trusted sources and the namespaces' toa state below.
    _uoa: Option<uoa::Uoa>,
    _redirect: redirect::Redirect,
    _proc: procfs::ProcRegistration,
    // The destructor hook goes only after the last reader of sockets through the store (/proc).
    _destruct: FtraceRegistration,
    _store: store::Store,
    _stats: stats::Stats,
    _trust: hooks::Trust,
}

impl kernel::Module for Toa {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // Built bottom-up, in the reverse order of `Parts`, so that a failure at any step drops
        // (unregisters) what came before in the same order as an unload does.
        let trust = hooks::Trust::new()?;
        let stats = stats::Stats::new()?;
        let store = store::Store::new()?;
        // The destructor hook comes before anything can store an entry: no entry may outlive its socket.
        let destruct = FtraceRegistration::register(FtraceHook::InetSockDestruct)?;
        let proc = procfs::ProcRegistration::register()?;
        let redirect = redirect::Redirect::new()?;
        let uoa = uoa::Uoa::new()?;
        let sockopt = sockopt::register()?;
        pr_info!(
            "toa load success, TOA version {}{}\n",
            VERSION,
            if uoa.is_some() { ", UOA on" } else { "" }
        );
        let parts = Parts {
            _sockopt: sockopt,
            _uoa: uoa,
            _redirect: redirect,
            _proc: proc,
            _destruct: destruct,
            _store: store,
            _stats: stats,
            _trust: trust,
        };
        Ok(Toa { parts: Some(parts) })
    }
}

impl Drop for Toa {
    fn drop(&mut self) {
        drop(self.parts.take());
        pr_info!("TOA unloaded\n");
    }
}
