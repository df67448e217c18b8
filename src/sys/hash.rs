// SPDX-License-Identifier: GPL-2.0

//! Hashing: `jhash2` and random seeds.

use crate::ffi;

/// `jhash2(words, words.len(), seed)` (`include/linux/jhash.h`).
#[inline(always)]
pub(crate) fn jhash2(words: &[u32], seed: u32) -> u32 {
    // SAFETY: `jhash2` reads `words.len()` words from `words`.
    unsafe { ffi::toa_jhash2(words.as_ptr(), words.len() as u32, seed) }
}

/// A random number (`get_random_u32`), for hash seeds.
pub(crate) fn random_u32() -> u32 {
    // SAFETY: no precondition.
    unsafe { ffi::get_random_u32() }
}
