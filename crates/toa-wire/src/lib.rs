//! Host build of `toa.ko`'s wire parser: the very file the module compiles (`src/wire.rs`), so the unit
//! tests and the fuzz targets exercise the parser the kernel runs.
#![no_std]

#[path = "../../../src/wire.rs"]
mod wire;

pub use wire::*;
