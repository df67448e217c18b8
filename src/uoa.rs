// SPDX-License-Identifier: GPL-2.0

//! UOA (UDP Option of Address): the real client of UDP flows that arrive through a layer-4 load balancer.
//!
//! UDP has no connection to hang a TOA on, so the load balancers that SNAT or NAT64 UDP put the client
//! (and the VIP the client sent to) in an IP option of a flow's first datagrams: IPv4 option 31 or IPv6
//! destination option 31 (the IP-option TOA/UOA design, the same option toa reads on TCP), or DPVS's own
//! IPv4 option 31 (client only). toa keeps one mapping per flow and answers applications that ask with
//! `getsockopt(IPPROTO_IP, 2048 | 2049)` (`include/uoa.h`).
//!
//! * [`flows`]: the flow map (one RCU hash table for every namespace, a mapping per flow and namespace,
//!   idle expiry by one sweeper, a bound per namespace);
//! * [`hooks`]: the netfilter `LOCAL_IN` hooks that read the datagrams, registered in every namespace;
//! * [`sockopt`]: getsockopt 2048 (v0) and 2049 (v1);
//! * [`procfs`]: the `/proc/net/uoa_table` file.
//!
//! [`Uoa`] owns them all, built from the module parameters `uoa`, `uoa_timeout` and `uoa_max_mappings`.

pub(crate) mod flows;
pub(crate) mod hooks;
pub(crate) mod procfs;
pub(crate) mod sockopt;

use crate::ffi;
use crate::sys::params;
use crate::sys::pernet::PernetRegistration;
use kernel::prelude::*;

/// The most `uoa_timeout` may be: idle times are kept in 16-bit seconds (see [`flows`]), and an entry
/// must be swept (within a minute of its expiry) before its idle time wraps.
pub(crate) const MAX_TIMEOUT_SECS: u32 = 43200;
/// The fewest and the most mappings `uoa_max_mappings` may allow per namespace.
const MIN_MAPPINGS: u32 = 256;
const MAX_MAPPINGS: u32 = 1 << 24;

/// The UOA parameters, checked.
#[derive(Clone, Copy)]
pub(crate) struct Config {
    /// Seconds a mapping lives without datagrams or lookups.
    pub(crate) timeout_secs: u32,
    /// The most mappings per namespace.
    pub(crate) max_mappings: u32,
}

impl Config {
    /// Reads and checks the parameters; `None` when `uoa=0`. An invalid value fails the load with a
    /// line naming it.
    fn from_params() -> Result<Option<Self>> {
        let (on, timeout_secs, max_mappings) = (
            params::uoa(),
            params::uoa_timeout(),
            params::uoa_max_mappings(),
        );
        if !(1..=MAX_TIMEOUT_SECS).contains(&timeout_secs) {
            pr_err!(
                "invalid uoa_timeout={}: use 1 to {} seconds\n",
                timeout_secs,
                MAX_TIMEOUT_SECS
            );
            return Err(EINVAL);
        }
        if !(MIN_MAPPINGS..=MAX_MAPPINGS).contains(&max_mappings) {
            pr_err!(
                "invalid uoa_max_mappings={}: use {} to {}\n",
                max_mappings,
                MIN_MAPPINGS,
                MAX_MAPPINGS
            );
            return Err(EINVAL);
        }
        Ok(on.then_some(Config {
            timeout_secs,
            max_mappings,
        }))
    }
}

/// Everything UOA registered and owns. Fields drop in declaration order, the teardown order: the user
/// API first, then every namespace's hooks (unhooked, then their mappings flushed), then the sweeper,
/// then the map (what is left is freed after an RCU grace period).
pub(crate) struct Uoa {
    _sockopt: sockopt::SockoptRegistration,
    _net: PernetRegistration,
    _sweeper: flows::Sweeper,
    _flows: flows::FlowMap,
}

impl Uoa {
    /// Builds UOA from the module parameters: `None` when `uoa=0`.
    pub(crate) fn new() -> Result<Option<Self>> {
        let Some(config) = Config::from_params()? else {
            return Ok(None);
        };
        let map = flows::FlowMap::new(config)?;
        let sweeper = flows::Sweeper::start();
        // SAFETY: the shim's static ops, registered once here; their callbacks use the map built above,
        // which outlives the registration (field order).
        let net =
            unsafe { PernetRegistration::register(core::ptr::addr_of_mut!(ffi::toa_uoa_net_ops))? };
        let sockopt = sockopt::register()?;
        Ok(Some(Uoa {
            _sockopt: sockopt,
            _net: net,
            _sweeper: sweeper,
            _flows: map,
        }))
    }
}
