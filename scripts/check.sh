#!/usr/bin/env bash
# `make check`: every test. Host unit tests (cargo test: the wire parser, the LB emulator), fuzzing, then
# for each test kernel in KERNELS the VM integration tests (the debug kernel's log must stay clean: KASAN,
# lockdep, PROVE_RCU, DEBUG_ATOMIC_SLEEP, kmemleak) and the packaging test (.deb, DKMS, modprobe), and the
# VM runner's self-test. Ends with one line `N passed, N failed` over all of them.
#
#   KERNELS="6.12-debug 7.2-plain" scripts/check.sh     (default: 6.12-debug; any kernel build-kernel.sh
#                                                        names: [arm64-][SERIES-]VARIANT, e.g. arm64-6.12-plain)
#
# The kernels are built one after the other (each build uses both cores); the VM suites then run at the
# same time, one VM per kernel (a TCG guest runs on one host thread), and the packaging tests one after
# the other (they install and purge the same package).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"

read -ra kernels <<<"${KERNELS:-6.12-debug}"
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
	passed=$((passed + $(grep -c '^ok - ' "$1" || true))) failed=$((failed + $(grep -c '^FAIL - ' "$1" || true)))
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
declare -A kdirs kos vmtest
vmtest[x86_64]="env TOA_EXAMPLE=$TOA_EXAMPLE UOA_EXAMPLE=$UOA_EXAMPLE UOA_GO_EXAMPLE=$UOA_GO_EXAMPLE $top/target/release/toa-vmtest"
built=()
for k in "${kernels[@]}"; do
	echo "== kernel $k and toa.ko"
	if [ "$(toa_arch "$k")" = arm64 ] && [ -z "${vmtest[arm64]:-}" ]; then
		echo "== arm64: the guest's root filesystem and the test programs, cross-built"
		bash "$here/arm64-rootfs.sh" >/dev/null && vmtest[arm64]=$(bash "$here/build-arm64-tests.sh" | tail -1) ||
			{ echo "FAIL - the arm64 root filesystem or test programs did not build"; failed=$((failed + 1)); continue; }
	fi
	if kdirs[$k]=$(bash "$here/build-kernel.sh" "$k" | tail -1) && kos[$k]=$(bash "$here/build-module.sh" "${kdirs[$k]}" | tail -1); then
		built+=("$k")
	else
		echo "FAIL - kernel $k or toa.ko for it did not build"
		failed=$((failed + 1))
	fi
done

echo "== VM integration tests on ${built[*]} (at once; each log follows when its run ends)"
declare -A vm_pids
for k in "${built[@]}"; do
	# shellcheck disable=SC2086 # the command's words (paths without blanks)
	bash "$here/vm-run.sh" "${kdirs[$k]}" "${kos[$k]}" -- ${vmtest[$(toa_arch "$k")]} >"$log/vm-$k" 2>&1 &
	vm_pids[$k]=$!
done
for k in "${built[@]}"; do
	vm_rc=0
	wait "${vm_pids[$k]}" || vm_rc=$?
	echo "== VM integration tests on $k (Linux $(cat "${kdirs[$k]}/include/config/kernel.release"))"
	cat "$log/vm-$k"
	count "$log/vm-$k" "^[0-9]+ passed, [0-9]+ failed$"
	if [ "$vm_rc" -ne 0 ]; then
		grep -Eq '^[0-9]+ passed, [1-9][0-9]* failed$' "$log/vm-$k" || failed=$((failed + 1)) # a VM/kernel-level failure
	fi
done

for k in "${built[@]}"; do
	if [ "$(toa_arch "$k")" != x86_64 ]; then
		echo "== packaging on $k: not run (DKMS builds for the host's architecture; the cross build is the Makefile's)"
		continue
	fi
	echo "== packaging on $k: toa-dkms .deb, DKMS build for the test kernel, modprobe in the VM, purge"
	bash "$here/dkms-test.sh" "${kdirs[$k]}" 2>&1 | tee "$log/dkms-$k" || true
	count_lines "$log/dkms-$k"
	grep -q '^ok - apt purge' "$log/dkms-$k" || grep -q '^FAIL' "$log/dkms-$k" || failed=$((failed + 1))
done

if [ ${#built[@]} -gt 0 ]; then
	k=${built[0]} # the self-test's command runs in any guest
	echo "== VM runner self-test: a kernel WARNING in the log must fail the run"
	if bash "$here/vm-run.sh" "${kdirs[$k]}" "${kos[$k]}" -- sh -c 'echo "WARNING: CPU: 0 PID: 1 at toa runner self-test" >/dev/kmsg' >"$log/selftest" 2>&1; then
		echo "FAIL - the VM runner passed a run whose kernel log has a WARNING"
		failed=$((failed + 1))
	elif grep -q 'the kernel reported problems' "$log/selftest"; then
		echo "ok - the VM runner fails a run whose kernel log has a WARNING"
		passed=$((passed + 1))
	else
		echo "FAIL - the VM runner self-test failed for another reason:"
		cat "$log/selftest"
		failed=$((failed + 1))
	fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
