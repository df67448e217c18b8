#!/usr/bin/env bash
# `make check`: every test. Host unit tests (cargo test: the wire parser, the LB emulator), then the VM
# integration tests on the debug kernel (KASAN, lockdep, PROVE_RCU, DEBUG_ATOMIC_SLEEP, kmemleak), whose
# kernel log must stay clean. Ends with one line `N passed, N failed` over both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"

bash "$here/setup-toolchain.sh"

passed=0 failed=0
count() { # adds up the closing lines matching $2 in log $1 (cargo's "test result:", the VM's summary)
	local p f
	p=$(grep -E "$2" "$1" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
	f=$(grep -E "$2" "$1" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
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

echo "== debug kernel, module, test programs"
kdir=$(bash "$here/build-kernel.sh" debug | tail -1)
ko=$(bash "$here/build-module.sh" "$kdir" | tail -1)
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

echo "== VM integration tests (debug kernel)"
vm_rc=0
bash "$here/vm-run.sh" "$kdir" "$ko" -- env TOA_EXAMPLE="$TOA_EXAMPLE" UOA_EXAMPLE="$UOA_EXAMPLE" UOA_GO_EXAMPLE="$UOA_GO_EXAMPLE" "$top/target/release/toa-vmtest" 2>&1 | tee "$log/vm" || vm_rc=$?
count "$log/vm" "^[0-9]+ passed, [0-9]+ failed$"
if [ "$vm_rc" -ne 0 ]; then
	grep -Eq '^[0-9]+ passed, [1-9][0-9]* failed$' "$log/vm" || failed=$((failed + 1)) # a VM/kernel-level failure
fi

echo "== packaging: toa-dkms .deb, DKMS build for the test kernel, modprobe in the VM, purge"
bash "$here/dkms-test.sh" "$kdir" 2>&1 | tee "$log/dkms" || true
count_lines "$log/dkms"
grep -q '^ok - apt purge' "$log/dkms" || grep -q '^FAIL' "$log/dkms" || failed=$((failed + 1))

echo "== VM runner self-test: a kernel WARNING in the log must fail the run"
if bash "$here/vm-run.sh" "$kdir" "$ko" -- sh -c 'echo "WARNING: CPU: 0 PID: 1 at toa runner self-test" >/dev/kmsg' >"$log/selftest" 2>&1; then
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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
