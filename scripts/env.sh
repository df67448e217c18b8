# Shared settings for toa's scripts: sourced, not run. Every path the scripts share is defined here once.
# shellcheck shell=bash
TOA_CACHE=${TOA_CACHE:-/var/cache/toa}
CARGO_FUZZ_VERSION=0.13.2
VNG_VERSION=1.42
VNG=$TOA_CACHE/venv/bin/vng
# The kernel's Rust compiler: Debian's rustc-web (rustup's toolchain has no rust-src).
KRUSTC=/usr/bin/rustc
LLVM_BIN=/usr/lib/llvm-19/bin
export PATH="$LLVM_BIN:$TOA_CACHE/cargo/bin:$TOA_CACHE/venv/bin:$PATH"
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
# The kernel series the tests build (scripts/build-kernel.sh), and the bindgen each one's Rust support
# needs: 7.2 requires >= 0.71.1, 6.12 keeps the release it was validated with. Each bindgen has its own
# directory, so both coexist.
TOA_SERIES=(6.12 7.2)
TOA_SERIES_DEFAULT=6.12
toa_bindgen_version() {
	case $1 in
	6.12) echo 0.70.1 ;;
	7.2) echo 0.71.1 ;;
	*) return 1 ;;
	esac
}
# A test kernel is named [arm64-][SERIES-]VARIANT: `debug` (6.12, x86_64), `7.2-debug`, `arm64-6.12-plain`...
toa_arch() { # the architecture of test kernel $1: x86_64 (the host's) or arm64 (cross-built)
	case $1 in
	arm64-*) echo arm64 ;;
	*) echo x86_64 ;;
	esac
}
toa_series() { # the series of test kernel $1
	local k=${1#arm64-}
	case $k in
	*-*) echo "${k%-*}" ;;
	*) echo "$TOA_SERIES_DEFAULT" ;;
	esac
}
toa_kernel() { # the test kernel for `make demo|bench KERNEL=$1 ARCH=$3`, with variant $2 unless KERNEL names one
	local k=${1:-$TOA_SERIES_DEFAULT} prefix=
	case ${3:-} in arm64 | aarch64) prefix=arm64- ;; esac
	case $k in arm64-*) prefix= ;; esac
	case $k in *plain | *debug) ;; *) k=$k-$2 ;; esac
	echo "$prefix$k"
}
toa_bindgen() { # prints the path of series $1's bindgen
	local v
	v=$(toa_bindgen_version "$1") || return 1
	echo "$TOA_CACHE/bindgen-$v/bin/bindgen"
}
# What, in a kernel log, is a problem (extended regex): vm-run.sh fails a run on any of these, and
# vm-inner.sh checks the boot for them before loading toa. A stack dump's header is "Call Trace" on x86
# and "Call trace" on arm64 (a stall or hung-task report has no other marker).
TOA_KERNEL_PROBLEMS='BUG:|WARNING:|Oops|KASAN|UBSAN|general protection|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|sleeping function called|scheduling while atomic|Call Trace|Call trace|unreferenced object|suspected memory leak|rust_panic|panicked at|kernel BUG'

# Everything a VM run of the test programs needs, for test kernel $1 (as build-kernel.sh names it): the
# toolchain, the kernel, toa.ko built against it and the test programs, for the kernel's architecture
# (an arm64 guest gets its root filesystem and aarch64 builds). Sets `kdir`, `ko` and `vmtest` (the
# toa-vmtest the guest runs).
toa_prepare() {
	local here top
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	top=$(dirname "$here")
	bash "$here/setup-toolchain.sh" "$1"
	kdir=$(bash "$here/build-kernel.sh" "$1" | tail -1)
	ko=$(bash "$here/build-module.sh" "$kdir" | tail -1)
	if [ "$(toa_arch "$1")" = arm64 ]; then
		bash "$here/arm64-rootfs.sh" >/dev/null
		bash "$here/build-arm64-tests.sh" >/dev/null
		vmtest=$top/target/aarch64-unknown-linux-gnu/release/toa-vmtest
	else
		cargo build --release -q -p toa-vmtest
		vmtest=$top/target/release/toa-vmtest
	fi
}
