// SPDX-License-Identifier: GPL-2.0

//! The typed kernel layer: one Rust type per kernel object toa touches, in the style of the kernel's
//! own abstractions (`rust/kernel/net/phy.rs`). Each type wraps the C object (an [`Opaque`]-like
//! transparent wrapper, or an owner that frees or unregisters it on `Drop`), documents its invariants,
//! and keeps the `unsafe` calls into [`crate::ffi`] inside its methods, so the stores, hooks and user
//! API above it are written in safe Rust.
//!
//! [`Opaque`]: kernel::types::Opaque

pub(crate) mod hash;
pub(crate) mod layout;
pub(crate) mod net;
pub(crate) mod netfilter;
pub(crate) mod ops;
pub(crate) mod params;
pub(crate) mod percpu;
pub(crate) mod pernet;
pub(crate) mod probes;
pub(crate) mod proc;
pub(crate) mod skb;
pub(crate) mod slab;
pub(crate) mod sock;
pub(crate) mod sync;
pub(crate) mod task;
pub(crate) mod work;
pub(crate) mod xarray;
