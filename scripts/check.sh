#!/usr/bin/env bash
# `make check`: every test. Host unit tests (cargo test: the wire parser, the LB emulator), fuzzing, then
# for each test kernel in KERNELS the VM integration tests (the debug kernel's log must stay clean: KASAN,
# lockdep, PROVE_RCU, DEBUG_ATOMIC_SLEEP, kmemleak) and the packaging test (.deb, DKMS, modprobe), and the
# VM runner's self-test. Ends with one line `N passed, N failed` over all of them.
#
#   KERNELS="6.12-plain" scripts/check.sh     (default: "6.12-debug 7.2-plain arm64-6.12-plain"; any
#                                              kernel build-kernel.sh names: [arm64-][SERIES-]VARIANT)
#   TOA_AREAS="close_paths uoa" scripts/check.sh   (the VM suites run only these areas or tests: iteration)
#
# The kernels are built one after the other (each build uses both cores); each kernel's VM suite starts
# as soon as its kernel is built, beside the next build (see kernel_job).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"

read -ra kernels <<<"${KERNELS:-6.12-debug 7.2-plain arm64-6.12-plain}"
bash "$here/setup-toolchain.sh" "${kernels[@]}"

passed=0 failed=0
count() { # adds up the closing lines matching $2 in log $1 (cargo's "test result:", the VM's summary)
	local p f
	# `|| true`: a log without the line (a VM that did not finish) counts 0, and must not end the run.
	p=$(grep -E "$2" "$1" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}' || true)
	f=$(grep -E "$2" "$1" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}' || true)
	passed=$((passed + p)) failed=$((failed + f))
}

count_lines() { # adds up the `ok - ` / `FAIL - ` lines of log $1
	[ -f "$1" ] || return 0
	passed=$((passed + $(grep -c '^ok - ' "$1" || true))) failed=$((failed + $(grep -c '^FAIL - ' "$1" || true)))
}

# The failures in log $1, for the end of the run, where a short tail of the output shows them: each
# failing test's `#` lines and its `not ok` line, panics, the VM runner's complaints (with the kernel
# reports after them), FAIL lines, failing host tests and build errors.
failures() {
	awk '
		/^# [a-z0-9_]+: / { n = substr($2, 1, length($2) - 1); why[n] = why[n] $0 "\n"; next }
		/^not ok [0-9]+ / { printf "%s%s\n", why[$4], $0; next }
		/panicked at/ { print; more = 1; next } # the message is on the next line
		/^vm-run: / { print; more = 24; next } # the kernel reports it quotes follow
		/^vm-inner: |^FAIL|^test .* FAILED$|^error(\[|:)/ { print; more = 8; next }
		more > 0 { print; more-- }
	' "$1" | head -40
}

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

echo "== host unit tests"
if ! cargo test --workspace 2>&1 | tee "$log/host"; then
	failed=$((failed + 1))
fi
count "$log/host" "^test result:"

echo "== fuzzing the parsers (${TOA_FUZZ_SECONDS:-30} s per target)"
bash "$here/fuzz.sh" "${TOA_FUZZ_SECONDS:-30}" | tee "$log/fuzz" || true
count_lines "$log/fuzz"

echo "== test programs"
cargo build --release -q -p toa-vmtest
mkdir -p target
gcc -Wall -Wextra -Werror -I include -o target/toa_server examples/toa_server.c
export TOA_EXAMPLE=$top/target/toa_server
gcc -Wall -Wextra -Werror -I include -o target/uoa_server examples/uoa_server.c
export UOA_EXAMPLE=$top/target/uoa_server
# The Go example (golang-go, from setup-toolchain.sh) is built here and run in the VM.
UOA_GO_EXAMPLE=
if command -v go >/dev/null; then
	GOTOOLCHAIN=local go build -o target/uoa_lookup_go examples/uoa_lookup.go
	UOA_GO_EXAMPLE=$top/target/uoa_lookup_go
fi
export UOA_GO_EXAMPLE

# What the VM suite runs, per architecture: the host's programs, or their aarch64 builds in an arm64 root.
# The arm64 run is the whole suite (every test of every area: each hook and close path, rmmod with live
# sockets and flows, unload under load, the adversarial runs) at reduced counts: at full counts it took
# 13 min under qemu-system-aarch64's TCG, 12 of them in the stress area (the README's "make check").
ARM64_COUNTS=${TOA_ARM64_COUNTS:-TOA_ADVERSARIAL_CONNS=2000 TOA_ADVERSARIAL_DATAGRAMS=1000 TOA_UNLOAD_CYCLES=20 TOA_UOA_FLOWS=20000}
x86_vmtest="env TOA_EXAMPLE=$TOA_EXAMPLE UOA_EXAMPLE=$UOA_EXAMPLE UOA_GO_EXAMPLE=$UOA_GO_EXAMPLE $top/target/release/toa-vmtest"

# The arm64 guest's root filesystem (downloads, and package scripts under qemu-user) and the cross-built test
# programs are made in the background from the start; an arm64 kernel's VM waits for them.
for k in "${kernels[@]}"; do
	if [ "$(toa_arch "$k")" = arm64 ]; then
		echo "== arm64: the guest's root filesystem and the test programs, cross-built (in the background)"
		{
			rc=0
			{ bash "$here/arm64-rootfs.sh" >/dev/null && bash "$here/build-arm64-tests.sh" | tail -1 >"$log/arm64-vmtest"; } \
				>"$log/arm64-prep" 2>&1 || rc=$?
			echo "$rc" >"$log/arm64-prep.rc"
		} &
		break
	fi
done

# One job per kernel, started as soon as its kernel and toa.ko are built, while the next kernel builds:
# its VM suite, then its packaging test (x86 kernels; one at a time: they install and purge the same
# package), and on one x86 kernel the VM runner's self-test. A TCG guest runs on one host thread, so a
# VM and a kernel build share the two cores; the builds run at a lower priority (nice) so the VMs, whose
# tests wait on timers, keep a core each.
selftest_on= # the first x86 kernel, plain if there is one (it boots faster)
for k in "${kernels[@]}"; do
	[ "$(toa_arch "$k")" = x86_64 ] || continue
	[ -n "$selftest_on" ] || selftest_on=$k
	case $k in *plain) selftest_on=$k; break ;; esac
done
kernel_job() { # kernel, KDIR, toa.ko: writes $log/vm-K (+ .rc), $log/dkms-K, $log/selftest(.verdict)
	local k=$1 kdir=$2 ko=$3 cmd rc=0
	if [ "$(toa_arch "$k")" = arm64 ]; then
		while [ ! -e "$log/arm64-prep.rc" ]; do sleep 5; done
		if [ "$(cat "$log/arm64-prep.rc")" -ne 0 ] || [ ! -s "$log/arm64-vmtest" ]; then
			{ echo "FAIL - the arm64 root filesystem or test programs did not build:"; cat "$log/arm64-prep"; } >"$log/vm-$k"
			echo 1 >"$log/vm-$k.rc"
			return
		fi
		cmd="$(sed "s|^env |env $ARM64_COUNTS |" "$log/arm64-vmtest") ${TOA_AREAS:-}"
	else
		cmd="$x86_vmtest ${TOA_AREAS:-}"
	fi
	# shellcheck disable=SC2086 # the command's words (paths without blanks)
	bash "$here/vm-run.sh" "$kdir" "$ko" -- $cmd >"$log/vm-$k" 2>&1 || rc=$?
	echo "$rc" >"$log/vm-$k.rc"
	[ "$(toa_arch "$k")" = x86_64 ] || return 0
	flock "$log/packaging.lock" bash "$here/dkms-test.sh" "$kdir" >"$log/dkms-$k" 2>&1 || true
	if [ "$k" = "$selftest_on" ]; then
		if bash "$here/vm-run.sh" "$kdir" "$ko" -- sh -c 'echo "WARNING: CPU: 0 PID: 1 at toa runner self-test" >/dev/kmsg' >"$log/selftest" 2>&1; then
			echo "FAIL - the VM runner passed a run whose kernel log has a WARNING"
		elif grep -q 'the kernel reported problems' "$log/selftest"; then
			echo "ok - the VM runner fails a run whose kernel log has a WARNING"
		else
			echo "FAIL - the VM runner self-test failed for another reason:"
		fi >"$log/selftest.verdict"
	fi
}

built=()
declare -A jobs kdirs
for k in "${kernels[@]}"; do
	echo "== kernel $k and toa.ko ($(date +%T))"
	if kdirs[$k]=$(nice -n 10 bash "$here/build-kernel.sh" "$k" | tail -1) &&
		ko=$(nice -n 10 bash "$here/build-module.sh" "${kdirs[$k]}" | tail -1); then
		built+=("$k")
		echo "== VM integration tests on $k: started in the background ($(date +%T))"
		kernel_job "$k" "${kdirs[$k]}" "$ko" &
		jobs[$k]=$!
	else
		echo "FAIL - kernel $k or toa.ko for it did not build"
		failed=$((failed + 1))
	fi
done

for k in "${built[@]}"; do
	wait "${jobs[$k]}" || true
	vm_rc=$(cat "$log/vm-$k.rc" 2>/dev/null || echo 1) # no status: the job itself failed
	echo "== VM integration tests on $k (Linux $(cat "${kdirs[$k]}/include/config/kernel.release"), ended $(date -r "$log/vm-$k" +%T))"
	cat "$log/vm-$k"
	count "$log/vm-$k" "^[0-9]+ passed, [0-9]+ failed$"
	if [ "$vm_rc" -ne 0 ]; then
		grep -Eq '^[0-9]+ passed, [1-9][0-9]* failed$' "$log/vm-$k" || failed=$((failed + 1)) # a VM/kernel-level failure
	fi
	if [ "$(toa_arch "$k")" != x86_64 ]; then
		echo "== packaging on $k: not run (DKMS builds for the host's architecture; the cross build is the Makefile's)"
	else
		echo "== packaging on $k: toa-dkms .deb, DKMS build for the test kernel, modprobe in the VM, purge"
		cat "$log/dkms-$k" 2>/dev/null || true
		count_lines "$log/dkms-$k"
		grep -q '^ok - apt purge' "$log/dkms-$k" || grep -q '^FAIL' "$log/dkms-$k" || failed=$((failed + 1))
	fi
	if [ "$k" = "$selftest_on" ]; then
		echo "== VM runner self-test on $k: a kernel WARNING in the log must fail the run"
		if grep -q '^ok' "$log/selftest.verdict" 2>/dev/null; then
			cat "$log/selftest.verdict"
			count_lines "$log/selftest.verdict"
		else
			cat "$log/selftest.verdict" 2>/dev/null || echo "FAIL - the VM runner self-test did not run"
			cat "$log/selftest" 2>/dev/null || true
			failed=$((failed + 1))
		fi
	fi
done

if [ "$failed" -ne 0 ]; then
	echo "== what failed"
	for f in "$log"/host "$log"/fuzz "$log"/vm-* "$log"/dkms-* "$log"/selftest.verdict; do
		case $f in *.rc) continue ;; esac
		[ -f "$f" ] || continue
		out=$(failures "$f")
		[ -z "$out" ] || printf -- '-- %s\n%s\n' "${f##*/}" "$out"
	done
fi
echo "== make check took $((SECONDS / 60)) min $((SECONDS % 60)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
