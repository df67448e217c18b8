#!/usr/bin/env bash
# Build (or reuse) a test kernel: Linux SERIES from Debian's linux-source-SERIES, tinyconfig +
# tests/config (+ tests/config.debug for the debug variant), CONFIG_RUST=y, built with LLVM=1, the
# kernel's rustc and the bindgen that series needs (env.sh).
#
#   scripts/build-kernel.sh [arm64-][SERIES-]VARIANT
#       VARIANT: plain|debug; SERIES: 6.12 (default) or 7.2; arm64-: cross-built for arm64 (ARCH=arm64 with
#       LLVM=1: clang and rustc cross-compile by themselves), with tests/config.arm64 merged last
#       (e.g. `debug`, `6.12-debug`, `7.2-plain`, `arm64-6.12-plain`)
#   prints the build directory (KDIR) on its last line
#
# Sources: 6.12 is Debian 12's own package (installed by setup-toolchain.sh). 7.2 only exists in Debian
# sid: its linux-source .deb is fetched with `apt-get download` through a private apt configuration under
# $TOA_CACHE/sid (its own sources list, package lists and cache; the host's apt sources are never touched)
# and unpacked into the cache. Once fetched, the .deb is reused: no network on later runs.
#
# The build lives in $TOA_CACHE/kernel/[arm64-]<series>-<variant>-<key>, where <key> hashes the kernel source
# version, the options of the config fragments (not their comments) and the toolchain versions: while they
# are unchanged, the cached build is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
# shellcheck source=scripts/env.sh
. "$here/env.sh"

spec=${1:?usage: build-kernel.sh [SERIES-]plain|debug}
arch=$(toa_arch "$spec") series=$(toa_series "$spec") variant=${spec##*-}
frags=("$top/tests/config")
case $variant in
plain) ;;
debug) frags+=("$top/tests/config.debug") ;;
*) echo "build-kernel.sh: unknown variant '$variant' (plain or debug)" >&2; exit 2 ;;
esac
prefix= archflags=()
if [ "$arch" = arm64 ]; then
	prefix=arm64- archflags=(ARCH=arm64) frags+=("$top/tests/config.arm64")
fi
bindgen=$(toa_bindgen "$series") || { echo "build-kernel.sh: unknown kernel series '$series' (${TOA_SERIES[*]})" >&2; exit 2; }

# The source package: the host's (Debian 12), or sid's .deb in the cache.
pkg=linux-source-$series
deb=
if srcver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) && [ -f "/usr/src/$pkg.tar.xz" ]; then
	tarball=(tar -xf "/usr/src/$pkg.tar.xz")
else
	sid=$TOA_CACHE/sid
	mkdir -p "$sid/etc" "$sid/lists/partial" "$sid/cache/archives/partial"
	deb=$(find "$sid" -maxdepth 1 -name "${pkg}_*_all.deb" | sort -V | tail -1)
	if [ -z "$deb" ]; then
		echo "build-kernel: fetching $pkg from Debian sid into $sid" >&2
		echo "deb http://deb.debian.org/debian sid main" >"$sid/etc/sources.list"
		apt_sid=(apt-get -q -o Dir::Etc::SourceList="$sid/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
			-o Dir::State::Lists="$sid/lists" -o Dir::Cache="$sid/cache" -o Acquire::Languages=none
			-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false -o APT::Sandbox::User=root)
		"${apt_sid[@]}" update >&2
		(cd "$sid" && "${apt_sid[@]}" download "$pkg" >&2)
		deb=$(find "$sid" -maxdepth 1 -name "${pkg}_*_all.deb" | sort -V | tail -1)
		[ -n "$deb" ] || { echo "build-kernel: Debian sid has no $pkg" >&2; exit 1; }
	fi
	srcver=$(dpkg-deb -f "$deb" Version)
	tarball=(sh -c "dpkg-deb --fsys-tarfile '$deb' | tar -xO ./usr/src/$pkg.tar.xz | tar -xJf -")
fi
src=$TOA_CACHE/$pkg
if [ "$(cat "$src/.toa-srcver" 2>/dev/null)" != "$srcver" ]; then
	echo "build-kernel: extracting $pkg $srcver" >&2
	rm -rf "$src"
	(cd "$TOA_CACHE" && "${tarball[@]}")
	echo "$srcver" >"$src/.toa-srcver"
fi

key=$( {
	echo "$srcver $variant"
	[ -z "$prefix" ] || echo "$arch"
	grep -hv -e "^#" -e "^$" "${frags[@]}" # options only: a comment edit does not rebuild
	"$KRUSTC" --version
	"$LLVM_BIN/clang" --version | head -1
	"$bindgen" --version
} | sha256sum | cut -c1-16)
out=$TOA_CACHE/kernel/$prefix$series-$variant-$key
kmake=(make -C "$src" O="$out" "${archflags[@]}" LLVM=1 RUSTC="$KRUSTC" BINDGEN="$bindgen" HOSTRUSTC="$KRUSTC")

if [ -f "$out/.toa-built" ]; then
	echo "$out"
	exit 0
fi

echo "build-kernel: building the $series $variant kernel for $arch in $out (several minutes)" >&2
mkdir -p "$out"
"${kmake[@]}" -s tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${frags[@]}" >/dev/null
"${kmake[@]}" -s olddefconfig >&2

# Every option the fragments ask for must have survived olddefconfig (a missing dependency drops it silently).
# The last value an option is given counts, as in merge_config.sh (tests/config.arm64 overrides tests/config).
bad=0
while IFS= read -r line; do
	opt=${line%%=*} val=${line#*=}
	if [ "$val" = n ]; then
		grep -q "^$opt=" "$out/.config" && { echo "build-kernel: $opt should be off" >&2; bad=1; }
	else
		grep -qx "$opt=$val" "$out/.config" || { echo "build-kernel: $opt=$val did not stick" >&2; bad=1; }
	fi
done < <(cat "${frags[@]}" | grep '^CONFIG_[A-Za-z0-9_]*=' |
	awk -F= '{ v[$1] = $0; if (!($1 in o)) o[$1] = n++ } END { for (k in o) print o[k], v[k] }' | sort -n | cut -d' ' -f2-)
if [ $bad -ne 0 ]; then
	"${kmake[@]}" rustavailable >&2 || true
	exit 1
fi

"${kmake[@]}" -j"$(($(nproc) + 1))" >&2
touch "$out/.toa-built"
# Keep only the newest build of each series and variant.
find "$TOA_CACHE/kernel" -maxdepth 1 -name "$prefix$series-$variant-*" ! -path "$out" -exec rm -rf {} + 2>/dev/null || true
echo "$out"
