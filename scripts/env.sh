# Shared settings for toa's scripts: sourced, not run. Every path the scripts share is defined here once.
# shellcheck shell=bash
TOA_CACHE=${TOA_CACHE:-/var/cache/toa}
BINDGEN_VERSION=0.70.1
CARGO_FUZZ_VERSION=0.13.2
VNG_VERSION=1.42
BINDGEN=$TOA_CACHE/cargo/bin/bindgen
VNG=$TOA_CACHE/venv/bin/vng
# The kernel's Rust compiler: Debian's rustc-web (rustup's toolchain has no rust-src).
KRUSTC=/usr/bin/rustc
LLVM_BIN=/usr/lib/llvm-19/bin
export PATH="$LLVM_BIN:$TOA_CACHE/cargo/bin:$TOA_CACHE/venv/bin:$PATH"
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
# What, in a kernel log, is a problem (extended regex): vm-run.sh fails a run on any of these, and
# vm-inner.sh checks the boot for them before loading toa.
TOA_KERNEL_PROBLEMS='BUG:|WARNING:|Oops|KASAN|UBSAN|general protection|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|sleeping function called|scheduling while atomic|Call Trace|unreferenced object|suspected memory leak|rust_panic|panicked at|kernel BUG'

# Everything a VM run of the test programs needs, for kernel variant $1 (plain|debug): the toolchain,
# the kernel, toa.ko built against it and the test programs. Sets `kdir` and `ko`.
toa_prepare() {
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	bash "$here/setup-toolchain.sh"
	kdir=$(bash "$here/build-kernel.sh" "$1" | tail -1)
	ko=$(bash "$here/build-module.sh" "$kdir" | tail -1)
	cargo build --release -q -p toa-vmtest
}
