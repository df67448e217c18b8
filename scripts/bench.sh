#!/usr/bin/env bash
# `make bench`: toa's costs, measured side by side in one VM run on the plain kernel (not the debug one)
# and printed as ratios against the goals (see tests/vm/src/bench.rs). TOA_BENCH_ENTRIES sets the
# number of live TOA sockets (default 100 000). Under TCG the guest runs with qemu's -icount
# (TOA_VM_ICOUNT, default shift=0,sleep=off: one guest instruction is one nanosecond of guest time), so the
# rates are per instruction executed, the same in every run whatever the host does; TOA_VM_ICOUNT= (empty)
# measures TCG's wall clock instead. Under KVM the guest's clock is the real one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
toa_prepare plain
TOA_VM_ICOUNT=${TOA_VM_ICOUNT-shift=0,sleep=off} TOA_VM_MEMORY=${TOA_VM_MEMORY:-6G} exec bash "$here/vm-run.sh" "$kdir" "$ko" -- \
	env TOA_BENCH_ENTRIES="${TOA_BENCH_ENTRIES:-100000}" TOA_BENCH_MAX="${TOA_BENCH_MAX:-}" "$top/target/release/toa-vmtest" bench
