#!/usr/bin/env bash
# Builds toa.ko against the kernel build tree KDIR, in a copy of the sources under $TOA_CACHE/module/
# (so builds for different kernels never mix objects in the clone). Prints the path of toa.ko last.
#   scripts/build-module.sh KDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
# shellcheck source=scripts/env.sh
. "$here/env.sh"
kdir=${1:?usage: build-module.sh KDIR}
out=$TOA_CACHE/module/$(basename "$kdir")
mkdir -p "$out"
# Sources only: build outputs of an in-tree `make` (say, for another kernel) must never be copied over.
rsync -a --delete --exclude '*.o' --exclude '*.ko' --exclude '*.mod' --exclude '*.mod.c' --exclude '.*.cmd' \
	--exclude '*.d' --exclude 'modules.order' --exclude 'Module.symvers' --exclude '*.s' \
	--exclude 'src/toa_offsets.rs' \
	"$top/Kbuild" "$top/Makefile" "$top/dkms.conf" "$top/src" "$top/scripts" "$top/packaging" "$out/" >&2
# Keep the objects of the previous build of the same tree: Kbuild rebuilds what changed.
make -C "$out" KDIR="$kdir" >&2
echo "$out/src/toa.ko"
