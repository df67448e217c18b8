#!/usr/bin/env bash
# `make bench`: toa's costs, measured side by side in one VM run on the plain kernel (not the debug one)
# and printed as ratios against the goals (see tests/vm/src/bench.rs). KERNEL=7.2 runs it on Linux 7.2's
# plain kernel instead of 6.12's. TOA_BENCH_ENTRIES sets the
# number of live TOA sockets (default 100 000), TOA_BENCH_MAX the most for row 5 (default: what half the
# VM's memory holds), TOA_BENCH_MAPPINGS the most UDP mappings for row 10 (default 1 000 000; the VM's
# 6 GiB hold them with room to spare: about 90 MB), TOA_BENCH_ROWS a comma-separated list of the rows to
# run (default all; 3, 4 and 5 run together). Under TCG the guest runs with qemu's -icount
# (TOA_VM_ICOUNT, default shift=0,sleep=off: one guest instruction is one nanosecond of guest time), so the
# rates are per instruction executed, the same in every run whatever the host does; TOA_VM_ICOUNT= (empty)
# measures TCG's wall clock instead. Under KVM the guest's clock is the real one. The progress lines
# ("bench: ...") get the host's wall-clock seconds since the start, which the guest cannot see under
# -icount (how long the fills of rows 9 and 10 really take).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
toa_prepare "$(toa_kernel "${KERNEL:-}" plain "${ARCH:-}")"
start=$SECONDS
TOA_VM_ICOUNT=${TOA_VM_ICOUNT-shift=0,sleep=off} TOA_VM_MEMORY=${TOA_VM_MEMORY:-6G} bash "$here/vm-run.sh" "$kdir" "$ko" -- \
	env TOA_BENCH_ENTRIES="${TOA_BENCH_ENTRIES:-100000}" TOA_BENCH_MAX="${TOA_BENCH_MAX:-}" \
	TOA_BENCH_MAPPINGS="${TOA_BENCH_MAPPINGS:-1000000}" TOA_BENCH_ROWS="${TOA_BENCH_ROWS:-}" \
	"$vmtest" bench 2>&1 |
	while IFS= read -r line; do
		line=${line%$'\r'}
		case $line in
		bench:*) printf '%s [%d s]\n' "$line" $((SECONDS - start)) ;;
		*) printf '%s\n' "$line" ;;
		esac
	done
