#!/usr/bin/env bash
# Prints the path of a rustc whose version is the one the kernel in KDIR was built with
# (CONFIG_RUSTC_VERSION_TEXT): a Rust module must be built by the same compiler as its kernel.
#   scripts/kernel-rustc.sh KDIR [candidate...]
set -euo pipefail
kdir=${1:?usage: kernel-rustc.sh KDIR [candidate...]}
shift
want=$(sed -n 's/^CONFIG_RUSTC_VERSION_TEXT="\(.*\)"$/\1/p' "$kdir/.config" 2>/dev/null || true)
if [ -z "$want" ]; then
	echo "toa: $kdir/.config has no CONFIG_RUSTC_VERSION_TEXT: that kernel was not built with CONFIG_RUST=y" >&2
	exit 1
fi
for c in "$@" /usr/bin/rustc "$(command -v rustc || true)" /usr/local/bin/rustc; do
	[ -n "$c" ] && [ -x "$c" ] || continue
	if [ "$("$c" --version 2>/dev/null)" = "$want" ]; then
		echo "$c"
		exit 0
	fi
done
echo "toa: no rustc matching the kernel's \"$want\" was found; install that version and pass RUSTC=/path/to/rustc" >&2
exit 1
