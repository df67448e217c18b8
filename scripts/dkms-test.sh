#!/usr/bin/env bash
# Packaging test: builds the toa-dkms .deb with Debian's tooling and checks its contents, installs it
# with apt (DKMS adds the source), has DKMS build and install toa.ko for the test kernel in KDIR, boots
# that kernel, loads the DKMS-built module with `modprobe toa` and runs the demo scenario, then purges
# the package and checks that nothing is left behind. Prints `ok - ...` / `FAIL - ...` lines.
#   scripts/dkms-test.sh KDIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
# shellcheck source=scripts/env.sh
. "$here/env.sh"
kdir=${1:?usage: dkms-test.sh KDIR}
cd "$top" || exit 1
version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
kver=$(make -s -C "$kdir" kernelrelease)
moddir=/lib/modules/$kver
fails=0
ok() { echo "ok - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }

# DKMS finds a kernel's headers at /lib/modules/KVER/build: point it at the test kernel's build tree.
created_moddir=no
if [ ! -e "$moddir" ]; then
	mkdir -p "$moddir"
	created_moddir=yes
fi
if [ ! -e "$moddir/build" ]; then
	ln -s "$kdir" "$moddir/build"
elif [ "$(readlink -f "$moddir/build")" != "$(readlink -f "$kdir")" ]; then
	echo "FAIL - dkms: $moddir/build exists and is not the test kernel's tree"
	exit 1
fi
cleanup() {
	apt-get purge -y -q toa-dkms >/dev/null 2>&1
	[ -L "$moddir/build" ] && rm -f "$moddir/build"
	[ "$created_moddir" = yes ] && rm -rf "$moddir"
}
trap cleanup EXIT

# 0. `make install` from the tree: module in the kernel's tree (updates/), depmod, boot-time files.
etc_before=$(ls /etc/modules-load.d/toa.conf /etc/modprobe.d/toa.conf 2>/dev/null)
stage=$(dirname "$(dirname "$(bash "$here/build-module.sh" "$kdir" 2>/dev/null | tail -1)")")
if [ -z "$etc_before" ] && make -s -C "$stage" install KDIR="$kdir" >target/install.log 2>&1 &&
	[ -n "$(find "$moddir/updates" -name 'toa.ko*' 2>/dev/null)" ] && grep -q 'toa.ko' "$moddir/modules.dep" &&
	grep -qx toa /etc/modules-load.d/toa.conf && grep -q '^#options toa trusted_sources' /etc/modprobe.d/toa.conf; then
	ok "make install: toa.ko under $moddir/updates, depmod, modules-load.d and modprobe.d files"
else
	fail "make install:"; tail -20 target/install.log
fi
if [ -z "$etc_before" ]; then
	rm -f /etc/modules-load.d/toa.conf /etc/modprobe.d/toa.conf
	find "$moddir/updates" -name 'toa.ko*' -delete 2>/dev/null
	depmod -a "$kver" 2>/dev/null
fi

# 1. The package.
deb=target/deb/toa-dkms_${version}_all.deb
if make -s deb KDIR="$kdir" >target/deb.log 2>&1 && [ -f "$deb" ]; then
	ok "toa-dkms .deb built with dpkg-buildpackage/dh-dkms"
else
	fail "toa-dkms .deb build:"; tail -20 target/deb.log
	exit 1
fi
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
missing=""
for f in dkms.conf Kbuild Makefile src/Kbuild src/toa_main.rs src/wire.rs src/toa_shim.c src/toa_shim.h \
	src/uoa.rs src/uoa/flows.rs src/uoa/hooks.rs scripts/kernel-rustc.sh include/toa.h include/uoa.h; do
	grep -qx "./usr/src/toa-$version/$f" <<<"$contents" || missing="$missing $f"
done
for f in ./usr/lib/modules-load.d/toa.conf ./etc/modprobe.d/toa.conf; do
	grep -qx "$f" <<<"$contents" || missing="$missing $f"
done
stray=$(grep -E '/(target|tests|fuzz|crates|\.git)/' <<<"$contents")
if [ -z "$missing" ] && [ -z "$stray" ] && dpkg-deb -f "$deb" Depends | grep -q dkms; then
	ok "toa-dkms contents: module source, dkms.conf, modules-load.d and modprobe.d files, nothing else"
else
	fail "toa-dkms contents: missing [$missing ] stray [$stray]"
fi

# 2. apt install, DKMS build and install for the test kernel.
if apt-get install -y -q "./$deb" >target/dkms.log 2>&1 &&
	dkms build -m toa -v "$version" -k "$kver" >>target/dkms.log 2>&1 &&
	dkms install -m toa -v "$version" -k "$kver" >>target/dkms.log 2>&1 &&
	dkms status -m toa -k "$kver" | grep -q installed; then
	ok "dkms add (apt install), build and install for $kver: $(dkms status -m toa -k "$kver")"
else
	fail "dkms build/install for $kver:"; tail -30 target/dkms.log
	exit 1
fi
ko=$(find "$moddir/updates" -name 'toa.ko*' | head -1)
[ -n "$ko" ] && ok "toa.ko installed at $ko" || fail "no toa.ko under $moddir/updates"
modinfo -F parm "$ko" | grep -q trusted_sources && ok "modinfo shows the parameters' descriptions" ||
	fail "modinfo: no parameter descriptions"

# refused KVER TREE WHAT PATTERN: DKMS declines the kernel whose (fake) build tree is TREE with its
# BUILD_EXCLUSIVE message, and a direct `make` against it says why (PATTERN), instead of a compiler error.
refused() {
	local msg
	msg=$(dkms build -m toa -v "$version" -k "$1" --kernelsourcedir "$2" 2>&1)
	grep -q 'BUILD_EXCLUSIVE' <<<"$msg" && ok "dkms declines $3 with a clear message" || fail "dkms on $3: $msg"
	msg=$(make -s -C "/usr/src/toa-$version" KDIR="$2" 2>&1)
	grep -q "$4" <<<"$msg" && ok "make against $3 says '$4'" || fail "make against $3: $msg"
	rm -rf "$2"
}
# A kernel without Rust support.
fake=$(mktemp -d)
printf 'CONFIG_MODULES=y\nCONFIG_KPROBES=y\nCONFIG_KRETPROBES=y\nCONFIG_NETFILTER=y\nCONFIG_IPV6=y\nCONFIG_INET=y\n' >"$fake/.config"
refused 6.0.0-norust "$fake" "a kernel without CONFIG_RUST" 'was not built with CONFIG_RUST=y'
# A Rust-enabled kernel older than 6.12 (BUILD_EXCLUSIVE_KERNEL; the Makefile names the version needed).
fake=$(mktemp -d)
printf 'CONFIG_MODULES=y\nCONFIG_RUST=y\nCONFIG_RUSTC_VERSION_TEXT="%s"\nCONFIG_KPROBES=y\nCONFIG_KRETPROBES=y\nCONFIG_NETFILTER=y\nCONFIG_IPV6=y\nCONFIG_INET=y\n' \
	"$("$KRUSTC" --version)" >"$fake/.config"
mkdir -p "$fake/include/generated/uapi/linux"
echo '#define LINUX_VERSION_CODE 394752' >"$fake/include/generated/uapi/linux/version.h" # 6.6.0
refused 6.6.0-rust "$fake" "a Rust-enabled Linux 6.6" 'is Linux 6.6: toa needs Linux 6.12 or newer'

# 3. In the VM: the guest's /lib/modules/KVER becomes the host's, where DKMS installed the module.
cargo build --release -q -p toa-vmtest
out=$(bash "$here/vm-run.sh" "$kdir" --no-insmod --rodir "/run/toa-host-modules=$moddir" -- \
	sh -c "rm -f /lib/modules/$kver && ln -s /run/toa-host-modules /lib/modules/$kver && modprobe toa && grep -q '^toa ' /proc/modules && $top/target/release/toa-vmtest demo" 2>&1)
if grep -q 'accept()               : 198.51.100.7:40001' <<<"$out" && grep -q 'toa load success' <<<"$out"; then
	ok "modprobe toa (DKMS-built) in the VM, demo scenario recovers the client"
else
	fail "modprobe toa / demo in the VM:"; tail -40 <<<"$out"
fi

# 4. Purge: nothing left behind.
apt-get purge -y -q toa-dkms >>target/dkms.log 2>&1
left=$(
	ls -d /var/lib/dkms/toa "/usr/src/toa-$version" /etc/modprobe.d/toa.conf /usr/lib/modules-load.d/toa.conf 2>/dev/null
	find "$moddir" -name 'toa.ko*' 2>/dev/null
)
[ -z "$left" ] && ok "apt purge toa-dkms (dkms remove) leaves nothing behind" || fail "left behind after purge: $left"
exit $((fails > 0))
