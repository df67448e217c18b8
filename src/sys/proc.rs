// SPDX-License-Identifier: GPL-2.0

//! Files of a namespace's `/proc/net` and the seq_files behind them (`struct seq_file`,
//! `struct seq_operations`).
//!
//! * [`SeqFile`]: the file being shown, with [`SeqFile::puts`] and [`SeqFile::printf`], whose
//!   [`Format`]s are checked against their arguments when they are built (at compile time for a
//!   `const`), so printing costs one `seq_printf` call, as in C.
//! * [`SingleShow`]: a one-record file (`proc_create_net_single`).
//! * [`SeqOps`], with [`PrivateSeqOps`] or [`NetSeqOps`]: a file of records, streamed by seq_file
//!   (`start`, `next`, `stop`, `show`) over a state kept between `read()` calls; [`seq_callbacks!`]
//!   defines the `extern "C"` callbacks the shim's static operations name, turning their raw
//!   arguments into a [`Net`], the state, a position and a [`Record`].
//! * [`ProcNet`]: a namespace's `/proc/net`, creating them; [`ProcEntry`] removes one on drop.

use super::net::Net;
use crate::ffi;
use crate::sockaddr::Sockaddr;
use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::prelude::*;
use kernel::types::Opaque;

/// A seq_file being shown (`struct seq_file`): what a `show` callback prints into.
///
/// # Invariants
///
/// A `&SeqFile` refers to a seq_file in one of its callbacks (seq_file serialises them on a file, under
/// `seq->lock`), for the duration of that callback.
#[repr(transparent)]
pub(crate) struct SeqFile(Opaque<ffi::SeqFile>);

impl SeqFile {
    /// The seq_file at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is the seq_file of a callback seq_file is running, and `'a` ends with that callback.
    unsafe fn from_raw<'a>(ptr: *mut ffi::SeqFile) -> &'a SeqFile {
        // SAFETY: a transparent wrapper; per the function's contract, the type invariant holds.
        unsafe { &*ptr.cast::<SeqFile>() }
    }

    fn as_ptr(&self) -> *mut ffi::SeqFile {
        self.0.get()
    }

    /// Appends `s` (`seq_puts`). Output that does not fit in the buffer makes seq_file retry the record
    /// with a larger one.
    #[inline]
    pub(crate) fn puts(&self, s: &CStr) {
        // SAFETY: a seq_file in a callback (type invariant), a NUL-terminated string.
        unsafe { ffi::toa_seq_puts(self.as_ptr(), ffi::c_str_ptr(s)) }
    }

    /// Appends `args` formatted by `format` (`seq_printf`).
    #[inline(always)]
    pub(crate) fn printf<A: Args>(&self, format: &Format<A>, args: A) {
        // SAFETY: a seq_file in a callback (type invariant); `format` was checked to take exactly
        // `A::CONVS` (`Format::new`).
        unsafe { args.printf(self.as_ptr(), ffi::c_str_ptr(format.fmt)) }
    }
}

/// A `printf` conversion, as the kernel's `vsprintf` reads it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Conv {
    /// `%s`: a NUL-terminated string.
    Str,
    /// `%d`: a C `int`.
    Int,
    /// `%u`: a C `unsigned int`.
    UInt,
    /// `%llu`: a `u64`.
    U64,
    /// `%p` (followed by a character that is not alphanumeric): a pointer, printed hashed, never read.
    Ptr,
    /// `%pISpc` (`IS` with flags `p` and `c`): a `struct sockaddr *`, IPv4 or IPv6, with its port.
    Sockaddr,
}

/// The arguments of a [`Format`]: how each is passed to `seq_printf`, and the conversion that reads it.
///
/// # Safety
///
/// [`Args::printf`] passes the values, in order, as the C types the conversions of [`Args::CONVS`]
/// read, with pointers valid for those conversions.
pub(crate) unsafe trait Args: Sized {
    /// The conversions, in order.
    const CONVS: &'static [Conv];

    /// `seq_printf(seq, fmt, self...)`.
    ///
    /// # Safety
    ///
    /// `seq` is a seq_file in a callback, `fmt` a format whose conversions are exactly [`Args::CONVS`].
    unsafe fn printf(self, seq: *mut ffi::SeqFile, fmt: *const c_char);
}

/// A pointer printed by `%p`: hashed by the kernel, never dereferenced.
#[derive(Clone, Copy)]
pub(crate) struct Hashed(pub(crate) *const c_void);

/// One `seq_printf` argument: its C value.
trait CArg {
    type C;
    fn c(self) -> Self::C;
}

impl CArg for &CStr {
    type C = *const c_char;
    #[inline(always)]
    fn c(self) -> *const c_char {
        ffi::c_str_ptr(self)
    }
}

impl CArg for u64 {
    type C = u64;
    #[inline(always)]
    fn c(self) -> u64 {
        self
    }
}

impl CArg for c_int {
    type C = c_int;
    #[inline(always)]
    fn c(self) -> c_int {
        self
    }
}

impl CArg for c_uint {
    type C = c_uint;
    #[inline(always)]
    fn c(self) -> c_uint {
        self
    }
}

impl CArg for Hashed {
    type C = *const c_void;
    #[inline(always)]
    fn c(self) -> *const c_void {
        self.0
    }
}

impl CArg for &Sockaddr {
    type C = *const c_void;
    #[inline(always)]
    fn c(self) -> *const c_void {
        self.as_ptr()
    }
}

macro_rules! impl_args {
    ($(($($name:ident: $ty:ty => $conv:ident),+);)+) => {$(
        // SAFETY: each argument is passed as the C type its conversion reads (`CArg`): a `&CStr` as a
        // NUL-terminated string, integers as themselves, `Hashed` as a pointer `%p` does not read, a
        // `&Sockaddr` as a valid `struct sockaddr_in` or `sockaddr_in6`.
        unsafe impl<'a> Args for ($($ty,)+) {
            const CONVS: &'static [Conv] = &[$(Conv::$conv),+];

            #[inline(always)]
            unsafe fn printf(self, seq: *mut ffi::SeqFile, fmt: *const c_char) {
                let ($($name,)+) = self;
                // SAFETY: per the function's contract, `fmt` reads exactly these arguments.
                unsafe { ffi::seq_printf(seq, fmt, $($name.c()),+) }
            }
        }
    )+};
}

impl_args! {
    (a: &'a CStr => Str);
    (a: u64 => U64);
    (a: c_int => Int);
    (a: c_uint => UInt);
    (a: &'a Sockaddr => Sockaddr);
    (a: Hashed => Ptr, b: &'a Sockaddr => Sockaddr, c: &'a Sockaddr => Sockaddr, d: &'a Sockaddr => Sockaddr);
}

/// A `printf` format whose conversions are those of its arguments `A`.
///
/// # Invariants
///
/// `fmt`'s conversions are exactly `A::CONVS`, in order (`%%` aside).
pub(crate) struct Format<A: Args> {
    fmt: &'static CStr,
    _args: PhantomData<A>,
}

impl<A: Args> Format<A> {
    /// The format `fmt` for arguments `A`. Panics (at compile time in a `const`) unless `fmt`'s
    /// conversions are exactly `A::CONVS`: optional flags (`-0 +#`) and a width, then `s`, `d`, `u`,
    /// `llu`, `p` not followed by an alphanumeric character, or `pISpc` likewise.
    pub(crate) const fn new(fmt: &'static CStr) -> Self {
        assert!(
            conversions_match(fmt.to_bytes(), A::CONVS),
            "format does not match its arguments"
        );
        // INVARIANT: checked just above.
        Format {
            fmt,
            _args: PhantomData,
        }
    }
}

/// Whether `b[i..]` starts with `word`.
const fn starts_with(b: &[u8], i: usize, word: &[u8]) -> bool {
    if b.len() - i < word.len() {
        return false;
    }
    let mut k = 0;
    while k < word.len() {
        if b[i + k] != word[k] {
            return false;
        }
        k += 1;
    }
    true
}

/// Whether `b[i]` exists and is alphanumeric (what `vsprintf` takes as more `%p` flags).
const fn alnum_at(b: &[u8], i: usize) -> bool {
    i < b.len() && b[i].is_ascii_alphanumeric()
}

/// Whether the conversions of format `b` are exactly `convs`, and of the forms [`Format::new`] accepts.
const fn conversions_match(b: &[u8], convs: &[Conv]) -> bool {
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        if i < b.len() && b[i] == b'%' {
            i += 1;
            continue;
        }
        while i < b.len() && matches!(b[i], b'-' | b'0' | b' ' | b'+' | b'#') {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let (conv, len) = if starts_with(b, i, b"llu") {
            (Conv::U64, 3)
        } else if starts_with(b, i, b"d") {
            (Conv::Int, 1)
        } else if starts_with(b, i, b"u") {
            (Conv::UInt, 1)
        } else if starts_with(b, i, b"s") {
            (Conv::Str, 1)
        } else if starts_with(b, i, b"pISpc") && !alnum_at(b, i + 5) {
            (Conv::Sockaddr, 5)
        } else if starts_with(b, i, b"p") && !alnum_at(b, i + 1) {
            (Conv::Ptr, 1)
        } else {
            return false;
        };
        if n >= convs.len() || !conv_eq(conv, convs[n]) {
            return false;
        }
        n += 1;
        i += len;
    }
    n == convs.len()
}

/// `a == b` in a `const fn`.
const fn conv_eq(a: Conv, b: Conv) -> bool {
    a as u8 == b as u8
}

/// What `show` did with its record.
#[derive(Clone, Copy)]
pub(crate) enum Shown {
    /// Printed it.
    Printed,
    /// Printed nothing for it, and seq_file is to drop what it printed (`SEQ_SKIP`).
    Skipped,
}

impl Shown {
    fn to_c(self) -> c_int {
        match self {
            Shown::Printed => 0,
            Shown::Skipped => 1, // SEQ_SKIP
        }
    }
}

/// A record of a seq_file: its header (`SEQ_START_TOKEN`, what `start` returns at position 0), or an item.
pub(crate) enum Record<T> {
    /// The header line(s).
    Header,
    /// An item.
    Item(T),
}

impl<T> Record<NonNull<T>> {
    /// What seq_file gets: `SEQ_START_TOKEN`, the item, or null for "no more records".
    fn into_c(r: Option<Self>) -> *mut c_void {
        match r {
            None => core::ptr::null_mut(),
            Some(Record::Header) => ffi::SEQ_START_TOKEN,
            Some(Record::Item(p)) => p.as_ptr().cast(),
        }
    }

    /// What seq_file hands back (`None` for null, which it does not pass but to `stop`).
    fn from_c(v: *mut c_void) -> Option<Self> {
        if v == ffi::SEQ_START_TOKEN {
            Some(Record::Header)
        } else {
            NonNull::new(v.cast()).map(Record::Item)
        }
    }
}

/// A file of records streamed by seq_file: a `read()` calls `start` at the file's position, then `show`
/// and `next` for each record that fits, then `stop`; the next `read()` starts again at the position
/// reached. A record that did not fit is shown again by the next `read()` (`start` at its position).
///
/// # Safety
///
/// An item `start` or `next` returns stays valid, and is not written, until the following `next` or
/// `stop` on the file. The implementation's callbacks are defined by [`seq_callbacks!`] for it and its
/// flavour ([`PrivateSeqOps`] or [`NetSeqOps`]), and nothing else.
pub(crate) unsafe trait SeqOps {
    /// What the file keeps between calls (and `read()`s).
    type State;
    /// What a record other than the header refers to.
    type Item;

    /// The record at position `pos` (0: the header); `None` past the last one. `net` is the file's
    /// namespace.
    fn start(net: &Net, state: &mut Self::State, pos: i64) -> Option<Record<NonNull<Self::Item>>>;

    /// The record after `prev` (what `start` or `next` returned last); `pos` must be moved on.
    fn next(
        net: &Net,
        state: &mut Self::State,
        prev: Record<NonNull<Self::Item>>,
        pos: &mut i64,
    ) -> Option<Record<NonNull<Self::Item>>>;

    /// The end of a `read()`: nothing is to be held across `read()`s.
    fn stop(state: &mut Self::State);

    /// Prints `record`.
    fn show(seq: &SeqFile, record: Record<&Self::Item>) -> Shown;
}

/// A [`SeqOps`] file made with `proc_create_data` and one of the shim's `proc_ops`, whose state is
/// allocated at `open` (`__seq_open_private`) with a reference on the namespace, and dropped at
/// `release`.
///
/// # Safety
///
/// [`PrivateSeqOps::proc_ops`] and [`PrivateSeqOps::seq_ops`] are the shim's static operations whose
/// callbacks are the ones [`seq_callbacks!`] defined for this type, as a `private` file.
pub(crate) unsafe trait PrivateSeqOps: SeqOps {
    /// The `proc_ops` of the file (`open`, `release`, seq_file's `read_iter` and `lseek`).
    fn proc_ops() -> *const ffi::ProcOps;
    /// The `seq_operations` of the file.
    fn seq_ops() -> *const ffi::SeqOperations;
    /// The state of a file just opened.
    fn new_state() -> Self::State;
}

/// A [`SeqOps`] file made with `proc_create_net_data` and one of the shim's `seq_operations`, whose
/// state is the room the shim's `struct toa_uoa_iter` keeps after its `struct seq_net_private`
/// (`TOA_UOA_WALKER_WORDS` `u64`s), zeroed at `open`; the namespace is seq_file_net's.
///
/// # Safety
///
/// All-zero bytes are a valid [`SeqOps::State`], which needs no drop. [`NetSeqOps::seq_ops`] is the
/// shim's static operations whose callbacks are the ones [`seq_callbacks!`] defined for this type, as a
/// `net` file; [`NetSeqOps::state_size`] is the size of the shim's `struct toa_uoa_iter`.
pub(crate) unsafe trait NetSeqOps: SeqOps {
    /// The `seq_operations` of the file.
    fn seq_ops() -> *const ffi::SeqOperations;
    /// The size of the seq_file's private state (`struct toa_uoa_iter`).
    fn state_size() -> c_uint;
}

/// The room of [`NetSeqOps`] states: `TOA_UOA_WALKER_WORDS` (`src/toa_shim.h`) `u64`s.
const NET_STATE_ROOM: usize = 16 * 8;

/// A reference on a namespace (`maybe_get_net`), dropped with `put_net`.
///
/// # Invariants
///
/// Holds a reference on the namespace at `self.0`.
pub(crate) struct NetRef(NonNull<ffi::Net>);

impl NetRef {
    /// A reference on `net`, unless it is being dismantled already.
    pub(crate) fn maybe_get(net: &Net) -> Option<NetRef> {
        // SAFETY: `net` is alive (`Net`'s invariant).
        let p = unsafe { ffi::toa_maybe_get_net(net.as_ptr()) };
        // INVARIANT: a non-null `maybe_get_net` took a reference.
        NonNull::new(p).map(NetRef)
    }
}

impl core::ops::Deref for NetRef {
    type Target = Net;

    fn deref(&self) -> &Net {
        // SAFETY: the reference held (type invariant) keeps the namespace alive while `self` is.
        unsafe { Net::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for NetRef {
    fn drop(&mut self) {
        // SAFETY: taken by `maybe_get` (type invariant).
        unsafe { ffi::toa_put_net(self.0.as_ptr()) };
    }
}

/// `seq->private` of a [`PrivateSeqOps`] file.
struct Private<S> {
    net: NetRef,
    state: S,
}

/// Where a seq_file keeps its namespace and its state.
pub(crate) trait Storage<T: SeqOps> {
    /// The namespace and the state of `seq`.
    ///
    /// # Safety
    ///
    /// `seq` is a file of `T` (of this flavour) in a callback; the references last at most as long.
    unsafe fn of<'a>(seq: *mut ffi::SeqFile) -> (&'a Net, &'a mut T::State);
}

/// Storage of [`PrivateSeqOps`] files.
pub(crate) struct InPrivate;

impl<T: PrivateSeqOps> Storage<T> for InPrivate {
    unsafe fn of<'a>(seq: *mut ffi::SeqFile) -> (&'a Net, &'a mut T::State) {
        // SAFETY: per the function's contract, `seq->private` is the `Private` written by `open`,
        // which `release` alone drops; seq_file serialises the callbacks, so it is not used elsewhere.
        let p = unsafe { &mut *ffi::toa_seq_private(seq).cast::<Private<T::State>>() };
        (&*p.net, &mut p.state)
    }
}

/// Storage of [`NetSeqOps`] files.
pub(crate) struct InNetWalker;

impl<T: NetSeqOps> Storage<T> for InNetWalker {
    unsafe fn of<'a>(seq: *mut ffi::SeqFile) -> (&'a Net, &'a mut T::State) {
        const { assert!(core::mem::size_of::<T::State>() <= NET_STATE_ROOM) };
        const { assert!(core::mem::align_of::<T::State>() <= 8) };
        // SAFETY: per the function's contract, a `proc_create_net_data` file with the shim's
        // `struct toa_uoa_iter` as private state: its namespace is referenced while it is open, and its
        // walker room (8-aligned, large enough: checked above) was zeroed by `seq_open_net`, a valid
        // state (`NetSeqOps`' contract) that only these callbacks, serialised by seq_file, use.
        unsafe {
            let net = Net::from_raw(ffi::toa_seq_file_net(seq));
            let state = &mut *ffi::toa_uoa_walker(seq).cast::<T::State>();
            (net, state)
        }
    }
}

/// `seq_operations::start` of `T`.
///
/// # Safety
///
/// Called by seq_file for a file of `T` stored as `S`.
#[inline(always)]
pub(crate) unsafe fn seq_start<T: SeqOps, S: Storage<T>>(
    seq: *mut ffi::SeqFile,
    pos: *mut i64,
) -> *mut c_void {
    // SAFETY: per the function's contract; `pos` is the file's position.
    let ((net, state), pos) = unsafe { (S::of(seq), *pos) };
    Record::into_c(T::start(net, state, pos))
}

/// `seq_operations::next` of `T`.
///
/// # Safety
///
/// As for [`seq_start`]; `v` is what `start` or `next` returned last.
#[inline(always)]
pub(crate) unsafe fn seq_next<T: SeqOps, S: Storage<T>>(
    seq: *mut ffi::SeqFile,
    v: *mut c_void,
    pos: *mut i64,
) -> *mut c_void {
    // SAFETY: per the function's contract; `pos` is the file's position, not otherwise borrowed.
    let ((net, state), pos) = unsafe { (S::of(seq), &mut *pos) };
    let Some(prev) = Record::from_c(v) else {
        // seq_file does not call `next` after the end; had it, the end stays the end.
        *pos += 1;
        return core::ptr::null_mut();
    };
    Record::into_c(T::next(net, state, prev, pos))
}

/// `seq_operations::stop` of `T`.
///
/// # Safety
///
/// As for [`seq_start`].
#[inline(always)]
pub(crate) unsafe fn seq_stop<T: SeqOps, S: Storage<T>>(seq: *mut ffi::SeqFile) {
    // SAFETY: per the function's contract.
    let (_, state) = unsafe { S::of(seq) };
    T::stop(state)
}

/// `seq_operations::show` of `T`.
///
/// # Safety
///
/// As for [`seq_start`]; `v` is what `start` or `next` returned last, not null.
#[inline(always)]
pub(crate) unsafe fn seq_show<T: SeqOps>(seq: *mut ffi::SeqFile, v: *mut c_void) -> c_int {
    // SAFETY: a seq_file in its `show` callback.
    let seq = unsafe { SeqFile::from_raw(seq) };
    let record = match Record::<NonNull<T::Item>>::from_c(v) {
        Some(Record::Header) => Record::Header,
        // SAFETY: an item `start` or `next` just returned: valid and not written until the next `next`
        // or `stop` (`SeqOps`' contract), which come after this `show`.
        Some(Record::Item(p)) => Record::Item(unsafe { p.as_ref() }),
        None => return 0,
    };
    T::show(seq, record).to_c()
}

/// `proc_ops::proc_open` of a [`PrivateSeqOps`] file: its state, with a reference on the namespace (the
/// file's proc data) until [`seq_release`]; `ENXIO` if the namespace is going away.
///
/// # Safety
///
/// Called by procfs, for a file of `T` created by [`ProcNet::create_private`].
pub(crate) unsafe fn seq_open<T: PrivateSeqOps>(
    inode: *mut ffi::Inode,
    file: *mut ffi::File,
) -> c_int {
    // SAFETY: the proc data of a file of `T` is its namespace (`create_private`), alive while the entry
    // exists: removing the entry waits for the `open` calls in progress.
    let net = unsafe { Net::from_raw(ffi::toa_pde_data(inode).cast()) };
    let Some(net) = NetRef::maybe_get(net) else {
        return ENXIO.to_errno();
    };
    let size = core::mem::size_of::<Private<T::State>>();
    // kmalloc's alignment (`ARCH_KMALLOC_MINALIGN`) is at least 8.
    const { assert!(core::mem::align_of::<Private<T::State>>() <= 8) };
    // SAFETY: `file` is being opened; `T::seq_ops()` are the file's operations (`PrivateSeqOps`'
    // contract).
    let p = unsafe { ffi::__seq_open_private(file, T::seq_ops(), size as c_int) };
    let Some(p) = NonNull::new(p.cast::<Private<T::State>>()) else {
        return ENOMEM.to_errno();
    };
    // SAFETY: `size` bytes, aligned (checked above), written whole before any callback reads them.
    unsafe {
        p.as_ptr().write(Private {
            net,
            state: T::new_state(),
        })
    };
    0
}

/// `proc_ops::proc_release` of a [`PrivateSeqOps`] file: drops its state (and the namespace reference)
/// and frees the seq_file. Also called by `remove_proc_entry` for files still open.
///
/// # Safety
///
/// Called by procfs, once, for a file [`seq_open`] opened.
pub(crate) unsafe fn seq_release<T: PrivateSeqOps>(
    inode: *mut ffi::Inode,
    file: *mut ffi::File,
) -> c_int {
    // SAFETY: the file was opened by `seq_open`: its seq_file's private is the `Private` written there,
    // dropped once here; no callback is running (procfs waits for them).
    unsafe {
        let seq = ffi::toa_file_seq(file);
        core::ptr::drop_in_place(ffi::toa_seq_private(seq).cast::<Private<T::State>>());
        ffi::seq_release_private(inode, file)
    }
}

/// Defines the `extern "C"` callbacks that the shim's static operations of a [`SeqOps`] file name
/// (`src/toa_shim.h`):
///
/// ```ignore
/// seq_callbacks!(private Table { open: toa_table_open, release: toa_table_release,
///     start: toa_table_seq_start, next: toa_table_seq_next, stop: toa_table_seq_stop,
///     show: toa_table_seq_show });
/// seq_callbacks!(net Flows { start: ..., next: ..., stop: ..., show: ... });
/// ```
macro_rules! seq_callbacks {
    (private $t:ty { open: $open:ident, release: $release:ident, $($rest:tt)* }) => {
        /// `proc_ops::proc_open`.
        ///
        /// # Safety
        ///
        /// Only called by procfs, for a file of this type.
        #[no_mangle]
        unsafe extern "C" fn $open(
            inode: *mut $crate::ffi::Inode,
            file: *mut $crate::ffi::File,
        ) -> core::ffi::c_int {
            // SAFETY: per the function's contract.
            unsafe { $crate::sys::proc::seq_open::<$t>(inode, file) }
        }

        /// `proc_ops::proc_release`.
        ///
        /// # Safety
        ///
        /// Only called by procfs, once, for a file `open` opened.
        #[no_mangle]
        unsafe extern "C" fn $release(
            inode: *mut $crate::ffi::Inode,
            file: *mut $crate::ffi::File,
        ) -> core::ffi::c_int {
            // SAFETY: per the function's contract.
            unsafe { $crate::sys::proc::seq_release::<$t>(inode, file) }
        }

        $crate::sys::proc::seq_callbacks!(@seq $t, $crate::sys::proc::InPrivate, $($rest)*);
    };
    (net $t:ty { $($rest:tt)* }) => {
        $crate::sys::proc::seq_callbacks!(@seq $t, $crate::sys::proc::InNetWalker, $($rest)*);
    };
    (@seq $t:ty, $s:ty, start: $start:ident, next: $next:ident, stop: $stop:ident, show: $show:ident $(,)?) => {
        /// `seq_operations::start`.
        ///
        /// # Safety
        ///
        /// Only called by seq_file, for a file of this type.
        #[no_mangle]
        unsafe extern "C" fn $start(
            seq: *mut $crate::ffi::SeqFile,
            pos: *mut i64,
        ) -> *mut core::ffi::c_void {
            // SAFETY: per the function's contract.
            unsafe { $crate::sys::proc::seq_start::<$t, $s>(seq, pos) }
        }

        /// `seq_operations::next`.
        ///
        /// # Safety
        ///
        /// Only called by seq_file, for a file of this type, between `start` and `stop`.
        #[no_mangle]
        unsafe extern "C" fn $next(
            seq: *mut $crate::ffi::SeqFile,
            v: *mut core::ffi::c_void,
            pos: *mut i64,
        ) -> *mut core::ffi::c_void {
            // SAFETY: per the function's contract.
            unsafe { $crate::sys::proc::seq_next::<$t, $s>(seq, v, pos) }
        }

        /// `seq_operations::stop`.
        ///
        /// # Safety
        ///
        /// Only called by seq_file, for a file of this type, after `start`.
        #[no_mangle]
        unsafe extern "C" fn $stop(seq: *mut $crate::ffi::SeqFile, _v: *mut core::ffi::c_void) {
            // SAFETY: per the function's contract.
            unsafe { $crate::sys::proc::seq_stop::<$t, $s>(seq) }
        }

        /// `seq_operations::show`.
        ///
        /// # Safety
        ///
        /// Only called by seq_file, for a file of this type, with what `start` or `next` returned.
        #[no_mangle]
        unsafe extern "C" fn $show(
            seq: *mut $crate::ffi::SeqFile,
            v: *mut core::ffi::c_void,
        ) -> core::ffi::c_int {
            // SAFETY: per the function's contract.
            unsafe { $crate::sys::proc::seq_show::<$t>(seq, v) }
        }
    };
}
pub(crate) use seq_callbacks;

/// A one-record file of a namespace's `/proc/net` (`proc_create_net_single`).
pub(crate) trait SingleShow {
    /// Prints the file's content for namespace `net`.
    fn show(seq: &SeqFile, net: &Net);
}

/// `show` of a [`SingleShow`] file.
///
/// # Safety
///
/// Only called by seq_file, for a file created by [`ProcNet::create_single`] for `T`.
unsafe extern "C" fn single_show<T: SingleShow>(seq: *mut ffi::SeqFile, _v: *mut c_void) -> c_int {
    // SAFETY: seq_file's `show`, for a `proc_create_net_single` file: `seq_file_single_net` is the
    // namespace referenced from `open` to `release`.
    let (seq, net) = unsafe {
        (
            SeqFile::from_raw(seq),
            Net::from_raw(ffi::toa_seq_single_net(seq)),
        )
    };
    T::show(seq, net);
    0
}

/// A namespace's `/proc/net` directory (`net->proc_net`).
pub(crate) struct ProcNet<'a>(&'a Net);

impl Net {
    /// The namespace's `/proc/net`.
    pub(crate) fn proc_net(&self) -> ProcNet<'_> {
        ProcNet(self)
    }
}

impl<'a> ProcNet<'a> {
    fn dir(&self) -> *mut ffi::ProcDirEntry {
        // SAFETY: the namespace is alive (`Net`'s invariant); `proc_net` is set from its creation on.
        unsafe { ffi::toa_net_proc_dir(self.0.as_ptr()) }
    }

    /// Creates `name` (mode 0444), showing `T`. `ENOMEM` on failure (as well when the name exists).
    pub(crate) fn create_single<T: SingleShow>(
        &self,
        name: &'static CStr,
    ) -> Result<ProcEntry<'a>> {
        // SAFETY: a live directory; `single_show::<T>` is a `show` for this file.
        let pde = unsafe {
            ffi::proc_create_net_single(
                ffi::c_str_ptr(name),
                0o444,
                self.dir(),
                single_show::<T>,
                core::ptr::null_mut(),
            )
        };
        self.entry(pde, name)
    }

    /// Creates `name` (mode 0444), a [`PrivateSeqOps`] file of `T`. `ENOMEM` on failure.
    pub(crate) fn create_private<T: PrivateSeqOps>(
        &self,
        name: &'static CStr,
    ) -> Result<ProcEntry<'a>> {
        // SAFETY: a live directory; `T::proc_ops()` are the file's operations (`PrivateSeqOps`'
        // contract), whose `open` reads the proc data as the namespace, alive while the entry exists
        // (removed at the latest by the namespace's exit).
        let pde = unsafe {
            ffi::proc_create_data(
                ffi::c_str_ptr(name),
                0o444,
                self.dir(),
                T::proc_ops(),
                self.0.as_ptr().cast(),
            )
        };
        self.entry(pde, name)
    }

    /// Creates `name` (mode 0444), a [`NetSeqOps`] file of `T`. `ENOMEM` on failure.
    pub(crate) fn create_net<T: NetSeqOps>(&self, name: &'static CStr) -> Result<ProcEntry<'a>> {
        // SAFETY: a live directory; `T::seq_ops()` and `T::state_size()` are the file's operations and
        // state (`NetSeqOps`' contract).
        let pde = unsafe {
            ffi::proc_create_net_data(
                ffi::c_str_ptr(name),
                0o444,
                self.dir(),
                T::seq_ops(),
                T::state_size(),
                core::ptr::null_mut(),
            )
        };
        self.entry(pde, name)
    }

    fn entry(&self, pde: *mut ffi::ProcDirEntry, name: &'static CStr) -> Result<ProcEntry<'a>> {
        if pde.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: created just above.
        Ok(ProcEntry { net: self.0, name })
    }

    /// Removes `name`, waiting for the calls in progress on it and releasing its open files.
    ///
    /// # Safety
    ///
    /// `name` was created in this directory by one of the `create_*` methods, whose [`ProcEntry`] was
    /// kept ([`ProcEntry::keep`]), and not removed since.
    pub(crate) unsafe fn remove(&self, name: &CStr) {
        // SAFETY: per the function's contract.
        unsafe { ffi::remove_proc_entry(ffi::c_str_ptr(name), self.dir()) };
    }
}

/// A file toa created in a namespace's `/proc/net`: removed on drop, unless kept.
///
/// # Invariants
///
/// `name` exists in `net`'s `/proc/net`, created by toa, until this is dropped or kept.
pub(crate) struct ProcEntry<'a> {
    net: &'a Net,
    name: &'static CStr,
}

impl ProcEntry<'_> {
    /// Leaves the file in place, for [`ProcNet::remove`] (in the namespace's `exit`) to remove.
    pub(crate) fn keep(self) {
        core::mem::forget(self);
    }
}

impl Drop for ProcEntry<'_> {
    fn drop(&mut self) {
        // SAFETY: created by toa and not removed yet (type invariant).
        unsafe { self.net.proc_net().remove(self.name) };
    }
}
