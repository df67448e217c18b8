// SPDX-License-Identifier: GPL-2.0

//! Hashing: `jhash2`, `jhash_3words` and random seeds.

use crate::ffi;

/// `jhash2(words, words.len(), seed)` (`include/linux/jhash.h`).
#[inline(always)]
pub(crate) fn jhash2(words: &[u32], seed: u32) -> u32 {
    // SAFETY: `jhash2` reads `words.len()` words from `words`.
    unsafe { ffi::toa_jhash2(words.as_ptr(), words.len() as u32, seed) }
}

/// `jhash_3words(a, b, c, seed)` (`include/linux/jhash.h`): the hash of three words, without
/// `jhash2`'s loop (TCP's `inet_ehashfn` hashes an IPv4 flow so).
#[inline(always)]
pub(crate) fn jhash_3words(a: u32, b: u32, c: u32, seed: u32) -> u32 {
    // SAFETY: no precondition.
    unsafe { ffi::toa_jhash_3words(a, b, c, seed) }
}

/// A random number (`get_random_u32`), for hash seeds.
pub(crate) fn random_u32() -> u32 {
    // SAFETY: no precondition.
    unsafe { ffi::get_random_u32() }
}
