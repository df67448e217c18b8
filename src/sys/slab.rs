// SPDX-License-Identifier: GPL-2.0

//! Slab caches whose objects stay of their type for RCU readers (`SLAB_TYPESAFE_BY_RCU`).

use crate::ffi;
use core::ffi::CStr;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::prelude::*;

/// A `SLAB_TYPESAFE_BY_RCU` (and `SLAB_NO_MERGE`) slab cache of `T` objects, with a name of its own in
/// `/proc/slabinfo`; destroyed when dropped (`kmem_cache_destroy`, which waits for the RCU readers of
/// a typesafe cache).
///
/// The scheme of TCP's socket lookups: a freed object may be reused for another `T` at once, even
/// while an RCU reader still looks at it, but its memory stays a `T` object of this cache (never other
/// memory) until every RCU read-side section that could have reached it has ended. So readers may
/// follow and read a freed object, and must check what they read. While an object is free, the
/// allocator keeps its free pointer at `freeptr_offset` (8 bytes): the rest of the object is left as
/// it was, for readers.
///
/// # Invariants
///
/// `cache` is a live cache created for objects of `T`'s size and alignment, owned by this value.
pub(crate) struct TypesafeCache<T> {
    cache: NonNull<ffi::KmemCache>,
    _type: PhantomData<T>,
}

// SAFETY: a slab cache may be used and destroyed from any thread (it has its own locking); the objects
// are handed out as raw memory.
unsafe impl<T> Send for TypesafeCache<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for TypesafeCache<T> {}

impl<T> TypesafeCache<T> {
    /// Creates the cache `name`, whose objects keep their free pointer at byte `freeptr_offset`.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `T` is zero-sized or the free pointer is not an aligned word inside `T`; `ENOMEM` if
    /// the cache cannot be created (a name already in use, too).
    pub(crate) fn new(name: &'static CStr, freeptr_offset: usize) -> Result<Self> {
        let size = core::mem::size_of::<T>();
        let word = core::mem::size_of::<*mut core::ffi::c_void>();
        if size == 0 || freeptr_offset % word != 0 || freeptr_offset + word > size {
            return Err(EINVAL);
        }
        // SAFETY: `name` is a static C string (the cache keeps the pointer); size and alignment are
        // those of `T`, whose size is not 0; the free pointer offset is an aligned word inside `T`
        // (checked above).
        let cache = unsafe {
            ffi::toa_kmem_cache_create(
                ffi::c_str_ptr(name),
                size as u32,
                core::mem::align_of::<T>() as u32,
                freeptr_offset as u32,
            )
        };
        // INVARIANT: a non-null return is a new cache for objects of `T`'s size and alignment.
        Ok(TypesafeCache {
            cache: NonNull::new(cache).ok_or(ENOMEM)?,
            _type: PhantomData,
        })
    }

    /// An object, allocated with `GFP_ATOMIC` (any context but NMI), or `None` without memory.
    ///
    /// Its memory is uninitialised for a `T` that was never used, or still holds the `T` it was
    /// before being freed (except at the free pointer offset), which RCU readers may still be
    /// reading: the caller writes it as a recycled object's writer must (see the tables).
    #[inline(always)]
    pub(crate) fn alloc_atomic(&self) -> Option<NonNull<T>> {
        // SAFETY: a live cache (the type invariant); `GFP_ATOMIC` does not sleep.
        NonNull::new(unsafe { ffi::toa_kmem_cache_alloc_atomic(self.cache.as_ptr()) }.cast())
    }

    /// Frees `obj` at once: it may be reused by the next [`TypesafeCache::alloc_atomic`], while RCU
    /// readers that reached it before still look at it.
    ///
    /// # Safety
    ///
    /// `obj` was allocated from this cache and not freed since; the caller owns it (no other writer,
    /// and nothing reaches it any more but RCU readers, which expect to find it freed or reused).
    #[inline(always)]
    pub(crate) unsafe fn free(&self, obj: NonNull<T>) {
        // SAFETY: per the function's contract. (The cache hands out memory: `T`'s destructor, if it had
        // one, is never run.)
        unsafe { ffi::kmem_cache_free(self.cache.as_ptr(), obj.as_ptr().cast()) };
    }
}

impl<T> Drop for TypesafeCache<T> {
    fn drop(&mut self) {
        // SAFETY: created by `new`. Objects still allocated would be reported (and leaked) by
        // `kmem_cache_destroy`; the owners free every object first.
        unsafe { ffi::kmem_cache_destroy(self.cache.as_ptr()) };
    }
}
