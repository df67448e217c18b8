#!/usr/bin/env bash
# Where toa's time goes: samples the whole guest (perf, cpu-clock, call graphs) while one benchmark load
# runs, once with toa.ko loaded and once without, on the plain kernel, and prints both reports.
#
#   scripts/profile.sh [accept|getpeername] [N]
#
# Needs Debian's linux-perf on the host (the guest runs the host's binaries); it is not part of
# `make check`, so scripts/setup-toolchain.sh does not install it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
what=${1:-getpeername}
n=${2:-100000}
command -v perf >/dev/null || { echo "profile.sh: install linux-perf (apt-get install linux-perf)" >&2; exit 2; }
toa_prepare "$(toa_kernel "${KERNEL:-}" plain "${ARCH:-}")"
# The guest's /tmp is a fresh overlay; perf report resolves kernel symbols from the guest's kallsyms.
inner=$top/target/vm/profile-inner.sh
mkdir -p "$top/target/vm"
cat >"$inner" <<EOS
set -e
echo 0 >/proc/sys/kernel/kptr_restrict
echo -1 >/proc/sys/kernel/perf_event_paranoid
for mode in with without; do
	[ \$mode = without ] && rmmod toa
	perf record -q -a -g -e cpu-clock -F 20000 -o /tmp/\$mode.data $vmtest workload $what $n
	echo "=== profile: \$mode toa, $what x$n, self time per symbol"
	perf report -q -i /tmp/\$mode.data --stdio --no-children --sort sym -g none --percent-limit 0.7 2>/dev/null | head -40
	echo "=== profile: \$mode toa, time including callees, hook-related symbols"
	perf report -q -i /tmp/\$mode.data --stdio --children --sort sym -g none --percent-limit 1 2>/dev/null |
		grep -E 'kprobe|rethook|toa|ftrace|getname|syn_recv|getpeername|accept' | head -20
done
EOS
exec bash "$here/vm-run.sh" "$kdir" "$ko" -- sh "$inner"
