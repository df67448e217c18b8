#!/usr/bin/env bash
# Install everything toa's build and tests need on Debian 12 (bookworm). Idempotent: when every piece is
# present it only checks and exits in a few seconds.
#
#   Debian: rustc-web + rust-web-src (the kernel's Rust toolchain), clang/lld/llvm 19 + libclang,
#           qemu-system-x86, udev (virtme-ng needs it for the exit status), the kernel build dependencies,
#           linux-source-6.12 (the test kernel's sources), iproute2, dkms, golang-go (the Go UOA example).
#   crates.io: bindgen-cli (the release each kernel series needs, see env.sh) and cargo-fuzz, pinned,
#              installed with `cargo install --locked`.
#   PyPI: virtme-ng (pinned), in a venv.
#
# Everything that is not a Debian package goes under $TOA_CACHE (default /var/cache/toa), outside the clone.
#
#   scripts/setup-toolchain.sh [KERNEL...]    the test kernels to build (as build-kernel.sh names them;
#                                             default: 6.12's): their bindgen, and for an arm64 one the
#                                             cross tools (qemu-system-arm, aarch64 gcc and libc, rustup's
#                                             aarch64-unknown-linux-gnu target, mmdebstrap + qemu-user for
#                                             the guest's root filesystem)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/env.sh
. "$here/env.sh"

APT_PKGS=(
	rustc-web rust-web-src rust-web-clippy rustfmt-web
	clang-19 lld-19 llvm-19 libclang-19-dev
	qemu-system-x86 udev iproute2 kmod cpio
	bc bison flex libelf-dev libssl-dev python3-venv rsync xz-utils
	linux-source-6.12
	dkms dh-dkms debhelper fakeroot dpkg-dev
	golang-go
)

arm64=no
for k in "$@"; do
	[ "$(toa_arch "$k")" = arm64 ] && arm64=yes
done
if [ $arm64 = yes ]; then
	APT_PKGS+=(qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross mmdebstrap qemu-user-static binfmt-support)
fi

missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

mkdir -p "$TOA_CACHE"
bindgens=()
for series in $(for k in "${@:-$TOA_SERIES_DEFAULT}"; do toa_series "$k"; done | sort -u); do
	v=$(toa_bindgen_version "$series") || { echo "setup: unknown kernel series '$series' (${TOA_SERIES[*]})" >&2; exit 2; }
	if ! "$(toa_bindgen "$series")" --version 2>/dev/null | grep -qx "bindgen $v"; then
		echo "setup: cargo install bindgen-cli $v (for Linux $series)"
		cargo install --locked --root "$TOA_CACHE/bindgen-$v" "bindgen-cli@$v"
	fi
	bindgens+=("$v")
done

if [ $arm64 = yes ] && ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
	echo "setup: rustup target add aarch64-unknown-linux-gnu (the test programs for the arm64 guest)"
	rustup target add aarch64-unknown-linux-gnu
fi

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
	echo "setup: cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
	cargo install --locked --root "$TOA_CACHE/cargo" "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

if ! "$VNG" --version 2>/dev/null | grep -q "$VNG_VERSION"; then
	echo "setup: pip install virtme-ng $VNG_VERSION"
	python3 -m venv "$TOA_CACHE/venv"
	"$TOA_CACHE/venv/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi

echo "setup: toolchain ready (rustc $("$KRUSTC" --version | cut -d' ' -f2), bindgen ${bindgens[*]}, virtme-ng $VNG_VERSION)"
