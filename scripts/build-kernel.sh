#!/usr/bin/env bash
# Build (or reuse) a test kernel: Linux 6.12 from Debian's linux-source-6.12, tinyconfig + tests/config
# (+ tests/config.debug for the debug variant), CONFIG_RUST=y, built with LLVM=1 and the kernel's rustc.
#
#   scripts/build-kernel.sh plain|debug     prints the build directory (KDIR) on its last line
#
# The build lives in $TOA_CACHE/kernel/<variant>-<key>, where <key> hashes the kernel source version, the
# options of the config fragments (not their comments) and the toolchain versions: while they are unchanged,
# the cached build is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
# shellcheck source=scripts/env.sh
. "$here/env.sh"

variant=${1:?usage: build-kernel.sh plain|debug}
frags=("$top/tests/config")
case $variant in
plain) ;;
debug) frags+=("$top/tests/config.debug") ;;
*) echo "build-kernel.sh: unknown variant '$variant'" >&2; exit 2 ;;
esac

srcver=$(dpkg-query -W -f='${Version}' linux-source-6.12)
src=$TOA_CACHE/linux-source-6.12
if [ "$(cat "$src/.toa-srcver" 2>/dev/null)" != "$srcver" ]; then
	echo "build-kernel: extracting linux-source-6.12 $srcver" >&2
	rm -rf "$src"
	tar -C "$TOA_CACHE" -xf /usr/src/linux-source-6.12.tar.xz
	echo "$srcver" >"$src/.toa-srcver"
fi

key=$( {
	echo "$srcver $variant"
	grep -hv -e "^#" -e "^$" "${frags[@]}" # options only: a comment edit does not rebuild
	"$KRUSTC" --version
	"$LLVM_BIN/clang" --version | head -1
	"$BINDGEN" --version
} | sha256sum | cut -c1-16)
out=$TOA_CACHE/kernel/$variant-$key
kmake=(make -C "$src" O="$out" LLVM=1 RUSTC="$KRUSTC" BINDGEN="$BINDGEN" HOSTRUSTC="$KRUSTC")

if [ -f "$out/.toa-built" ]; then
	echo "$out"
	exit 0
fi

echo "build-kernel: building the $variant kernel in $out (several minutes)" >&2
mkdir -p "$out"
"${kmake[@]}" -s tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${frags[@]}" >/dev/null
"${kmake[@]}" -s olddefconfig >&2

# Every option the fragments ask for must have survived olddefconfig (a missing dependency drops it silently).
bad=0
while IFS= read -r line; do
	case $line in CONFIG_*=*) ;; *) continue ;; esac
	opt=${line%%=*} val=${line#*=}
	if [ "$val" = n ]; then
		grep -q "^$opt=" "$out/.config" && { echo "build-kernel: $opt should be off" >&2; bad=1; }
	else
		grep -qx "$opt=$val" "$out/.config" || { echo "build-kernel: $opt=$val did not stick" >&2; bad=1; }
	fi
done < <(cat "${frags[@]}")
if [ $bad -ne 0 ]; then
	"${kmake[@]}" rustavailable >&2 || true
	exit 1
fi

"${kmake[@]}" -j"$(($(nproc) + 1))" >&2
touch "$out/.toa-built"
# Keep only the newest build of each variant.
find "$TOA_CACHE/kernel" -maxdepth 1 -name "$variant-*" ! -path "$out" -exec rm -rf {} + 2>/dev/null || true
echo "$out"
