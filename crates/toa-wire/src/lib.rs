//! Host build of `toa.ko`'s pure code: the very files the module compiles (`src/wire.rs`, the wire
//! parsers; `src/trust.rs`, the trusted-sources list), so the unit tests and the fuzz targets exercise the
//! code the kernel runs.
#![no_std]

#[path = "../../../src/wire.rs"]
mod wire;

pub use wire::*;

/// The trusted-sources list of `toa.ko` (`src/trust.rs`).
#[path = "../../../src/trust.rs"]
pub mod trust;
