#!/usr/bin/env bash
# The VM runner: boots the test kernel built in KDIR under virtme-ng (host root filesystem shared,
# read-only), loads TOA_KO, runs COMMAND, unloads toa, scans kmemleak (debug kernel) and the kernel log.
# Prints the command's output; exits with its status, or non-zero when the kernel reported a
# BUG/WARNING/Oops/KASAN/lockdep/RCU/kmemleak problem.
#
#   scripts/vm-run.sh KDIR TOA_KO [--params "debug=1 ..."] -- COMMAND [ARGS...]
#   scripts/vm-run.sh KDIR --no-insmod [--rodir GUEST=HOST] -- COMMAND [ARGS...]
#       (COMMAND loads the module itself, e.g. with modprobe; HOST is shared read-only at GUEST)
#
# KVM is used when it works on this host (probed once, result cached); otherwise TCG. Under TCG,
# TOA_VM_ICOUNT (e.g. "shift=0,sleep=off") runs the guest with qemu's -icount: its clock then advances by
# the instructions it executes (2^shift ns each), so timings inside are deterministic and immune to host
# load (scripts/bench.sh uses it). COMMAND sees TOA_VM_CLOCK: kvm, tcg or tcg-icount:<value>. With
# TOA_VM_ICOUNT, TOA_VM_PLUGIN ("file=PLUGIN.so,ARG=VALUE...") loads a QEMU TCG plugin, and the guest boots
# with nokaslr, so that its kernel's addresses are System.map's (scripts/profile.sh --icount).
#
# An arm64 KDIR (`build-kernel.sh arm64-...`, CONFIG_ARM64=y) boots under qemu-system-aarch64 (TCG,
# machine virt), with the arm64 Debian root filesystem of scripts/arm64-rootfs.sh (TOA_ARM64_ROOT, default
# $TOA_CACHE/arm64-rootfs) instead of the host's: COMMAND and everything it runs must then be aarch64
# programs (scripts/build-arm64-tests.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/env.sh
. "$here/env.sh"
kdir=${1:?usage: vm-run.sh KDIR TOA_KO [--params P] -- COMMAND...}
ko=${2:?usage}
shift 2
params=""
extra=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	case $1 in
	--params) params=$2; shift 2 ;;
	--rodir) extra+=(--rodir "$2"); shift 2 ;;
	*) echo "vm-run.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[ "${1:-}" = -- ] && shift
[ $# -gt 0 ] || { echo "vm-run.sh: no command" >&2; exit 2; }

top=$(dirname "$here")
arch=x86_64
grep -q '^CONFIG_ARM64=y' "$kdir/.config" && arch=arm64
case $arch in
x86_64) bzimage=$kdir/arch/x86/boot/bzImage arch_flags=(--disable-microvm) ;;
arm64)
	bzimage=$kdir/arch/arm64/boot/Image
	root=${TOA_ARM64_ROOT:-$TOA_CACHE/arm64-rootfs}
	[ -x "$root/bin/bash" ] || { echo "vm-run.sh: no arm64 root filesystem in $root (scripts/arm64-rootfs.sh)" >&2; exit 2; }
	arch_flags=(--arch arm64 --root "$root")
	# The shared directories are mounted at their host paths: the (read-only) root needs the mount points.
	mkdir -p "$root$top"
	for d in "${extra[@]}"; do
		case $d in --rodir) ;; *=*) mkdir -p "$root${d%%=*}" ;; *) mkdir -p "$root$d" ;; esac
	done
	;;
esac
# root=/dev/root: without an initramfs, virtme-ng mounts the root over 9p with the tag "/dev/root", and
# since Linux 6.x the kernel only passes a device name to a nodev root when root= says so.
# The serial console goes to the run's output (--verbose) at log level 1: nothing but what the kernel
# prints when it dies (an oops or a panic raises the console's level itself), which is all a VM that did
# not finish leaves behind (the kernel log is printed at the end of a run, by vm-inner.sh).
vng_common=(--run "$bzimage" "${arch_flags[@]}" --cpus 2 --memory "${TOA_VM_MEMORY:-2G}" --append "root=/dev/root"
	--verbose --append "loglevel=1")
# What --verbose also shows and the run's output leaves out: virtme-ng's attempts at virtiofsd (it falls
# back to 9p) and the boot console's first lines, printed before the log level applies.
console_noise='^(virtme: waiting for virtiofsd|fuse: invalid argument|virtme-run: failed to start virtiofsd|Linux version |Command line: |BIOS-|printk: legacy bootconsole|e820: |reboot: Power down)'

# KVM probe: "/dev/kvm exists" is not enough on some hosts; boot once with it and remember the answer.
kvm_flag=(--disable-kvm)
probe=$TOA_CACHE/kvm-$(uname -r)
if [ "$arch" != x86_64 ]; then
	probe=/dev/null # another architecture than the host's: TCG only
elif [ ! -f "$probe" ]; then
	if [ -w /dev/kvm ] && timeout 60 "$VNG" "${vng_common[@]}" --exec true >/dev/null 2>&1; then
		echo yes >"$probe"
	else
		echo no >"$probe"
	fi
fi
# Without KVM, single-threaded TCG (the guest keeps its 2 vCPUs, run in turns): with QEMU's default
# multi-threaded TCG, a vCPU sometimes executed a breakpoint the guest kernel had already removed while
# live-patching code (probe registration goes through ftrace/text_poke), giving an "Oops: int3" that
# real CPUs cannot produce; it reproduced in 3 of 3 full unload-under-load runs and never with
# thread=single.
if [ "$(cat "$probe")" = yes ]; then
	kvm_flag=()
	clock=kvm
elif [ -n "${TOA_VM_ICOUNT:-}" ]; then
	kvm_flag+=("--qemu-opts=-accel tcg,thread=single -icount $TOA_VM_ICOUNT${TOA_VM_PLUGIN:+ -plugin $TOA_VM_PLUGIN}")
	clock=tcg-icount:$TOA_VM_ICOUNT
	if [ -n "${TOA_VM_PLUGIN:-}" ]; then
		vng_common+=(--append nokaslr)
	fi
else
	kvm_flag+=("--qemu-opts=-accel tcg,thread=single")
	clock=tcg
fi

# virtme-ng lays fresh overlays over /var, /tmp, /etc...: hand the module over through the clone, and
# share the clone itself at its own path (it may live under one of those directories).
# One copy per kernel and build (named by its content): runs at once (make check and make bench, or two
# builds for the same kernel) must not load each other's module.
if [ "$ko" = --no-insmod ]; then
	vm_ko=--no-insmod
else
	vm_dir=$top/target/vm/$(basename "$kdir")/$(sha256sum "$ko" | cut -c1-16)
	mkdir -p "$vm_dir"
	vm_ko=$vm_dir/toa.ko
	cp "$ko" "$vm_ko"
fi
if [ "$arch" = x86_64 ]; then
	vng_common+=(--rodir "$top" "${extra[@]}")
else
	# With a root of its own, virtme-ng wants GUEST=HOST for directories outside that root.
	vng_common+=(--rodir "$top=$top")
	for d in "${extra[@]}"; do
		case $d in --rodir | *=*) vng_common+=("$d") ;; *) vng_common+=("$d=$d") ;; esac
	done
fi
# The guest runs this through sh: no argument may need bash's $'...' quoting (a newline, for one).
for a in "$@"; do
	case $a in *$'\n'*) echo "vm-run.sh: arguments must be single-line" >&2; exit 2 ;; esac
done
cmd=$(printf '%q ' "$here/vm-inner.sh" "$vm_ko" "$params" env "TOA_VM_CLOCK=$clock" "$@")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
for boot in 1 2 3; do
	# No stdin: vng must not wait on a terminal (CI runs without one).
	timeout "${TOA_VM_TIMEOUT:-3600}" "$VNG" "${vng_common[@]}" "${kvm_flag[@]}" --exec "$cmd" </dev/null 2>&1 |
		grep --line-buffered -v -E "$console_noise" | tee "$log"
	rc=${PIPESTATUS[0]}
	# The kernel reported a problem while booting, before the command or toa ran (vm-inner.sh): the
	# VM boots again, at most three times in all.
	if ! grep -q '^=== toa boot problem begin' "$log"; then
		break
	fi
	echo "vm-run: boot $boot: the kernel reported a problem before toa was loaded; booting again:" >&2
	sed -n '/^=== toa boot problem begin/,/^=== toa boot problem end/p' "$log" | grep -E "$TOA_KERNEL_PROBLEMS" >&2
done
set -e

if ! grep -q '^=== toa dmesg begin' "$log"; then
	echo "vm-run: the VM did not finish the run (exit $rc); what its console showed of the kernel's end:" >&2
	grep -E "$TOA_KERNEL_PROBLEMS|Kernel panic|RIP: |pc : |lr : " "$log" | head -24 >&2 || true
	exit $((rc == 0 ? 1 : rc))
fi
dmesg_log=$(sed -n '/^=== toa dmesg begin/,/^=== toa dmesg end/p' "$log")
# On the debug kernel the detectors must really be on, or a clean log proves nothing.
if grep -q '^CONFIG_KASAN=y' "$kdir/.config"; then
	for banner in 'KernelAddressSanitizer initialized' 'Lock dependency validator' 'RCU lockdep checking is enabled' \
		'kmemleak: Kernel memory leak detector initialized'; do
		if ! grep -q "$banner" <<<"$dmesg_log"; then
			echo "vm-run: debug kernel without '$banner' in its log: the checks are blind" >&2
			exit 1
		fi
	done
fi
reports=$(sed -n '/^=== toa dmesg begin/,/^=== toa dmesg end/p' "$log" |
	grep -E "$TOA_KERNEL_PROBLEMS" || true)
if [ -n "$reports" ]; then
	echo "vm-run: the kernel reported problems:" >&2
	echo "$reports" >&2
	exit 1
fi
exit "$rc"
