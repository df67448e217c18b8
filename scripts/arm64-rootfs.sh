#!/usr/bin/env bash
# The arm64 guest's root filesystem for `TOA_ARCH=arm64 scripts/vm-run.sh`: a minimal Debian 12 (bookworm)
# for arm64, made with mmdebstrap on this x86_64 host through qemu-user-static's binfmt handler, with what
# the guest runs: bash, util-linux (dmesg, mountpoint) and udev (virtme-ng's init, for the exit status),
# kmod (insmod/rmmod), iproute2 (ip), python3 (the uoa area's Python example).
#
#   scripts/arm64-rootfs.sh     prints the directory (TOA_ARM64_ROOT, default $TOA_CACHE/arm64-rootfs) last
#
# Built once; rebuilt when the package list below changes. Needs mmdebstrap, qemu-user-static and
# binfmt-support (apt), and binfmt_misc mounted (done here when it is not).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/env.sh
. "$here/env.sh"
root=${TOA_ARM64_ROOT:-$TOA_CACHE/arm64-rootfs}
suite=bookworm
pkgs=kmod,iproute2,python3,udev
stamp="$suite $pkgs"
if [ "$(cat "$root/.toa-rootfs" 2>/dev/null)" = "$stamp" ]; then
	echo "$root"
	exit 0
fi
for p in mmdebstrap qemu-user-static binfmt-support; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		{ echo "arm64-rootfs: missing Debian package $p (apt-get install mmdebstrap qemu-user-static binfmt-support)" >&2; exit 1; }
done
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
	{ echo "arm64-rootfs: the qemu-aarch64 binfmt handler is not enabled" >&2; exit 1; }

echo "arm64-rootfs: building $root (Debian $suite arm64: $pkgs)" >&2
rm -rf "$root.tmp"
# No documentation, manual pages or translations: the guest only runs the tests.
nice -n 19 mmdebstrap --arch=arm64 --variant=minbase --include="$pkgs" \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	"$suite" "$root.tmp" http://deb.debian.org/debian >&2
echo "$stamp" >"$root.tmp/.toa-rootfs"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "$root"
