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
toa_series() { # the series of test kernel $1 ([SERIES-]VARIANT)
	case $1 in
	*-*) echo "${1%-*}" ;;
	*) echo "$TOA_SERIES_DEFAULT" ;;
	esac
}
toa_kernel() { # the test kernel for `make demo|bench KERNEL=$1`: a SERIES (7.2) or SERIES-VARIANT, else $2
	case $1 in
	"") echo "$2" ;;
	*-*) echo "$1" ;;
	*) echo "$1-$2" ;;
	esac
}
toa_bindgen() { # prints the path of series $1's bindgen
	local v
	v=$(toa_bindgen_version "$1") || return 1
	echo "$TOA_CACHE/bindgen-$v/bin/bindgen"
}
# What, in a kernel log, is a problem (extended regex): vm-run.sh fails a run on any of these, and
# vm-inner.sh checks the boot for them before loading toa.
TOA_KERNEL_PROBLEMS='BUG:|WARNING:|Oops|KASAN|UBSAN|general protection|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|sleeping function called|scheduling while atomic|Call Trace|unreferenced object|suspected memory leak|rust_panic|panicked at|kernel BUG'

# Everything a VM run of the test programs needs, for test kernel $1 ([SERIES-]plain|debug, as
# build-kernel.sh takes it): the toolchain, the kernel, toa.ko built against it and the test programs.
# Sets `kdir` and `ko`.
toa_prepare() {
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	bash "$here/setup-toolchain.sh" "$(toa_series "$1")"
	kdir=$(bash "$here/build-kernel.sh" "$1" | tail -1)
	ko=$(bash "$here/build-module.sh" "$kdir" | tail -1)
	cargo build --release -q -p toa-vmtest
}
