#!/usr/bin/env bash
# Where toa's time goes, while one benchmark load runs, once with toa.ko loaded and once without, on the
# plain kernel.
#
#   scripts/profile.sh [accept|getpeername|udp|udp-later|tcp-data] [N]
#       samples the whole guest (perf, cpu-clock, call graphs) and prints both reports. Needs Debian's
#       linux-perf on the host (the guest runs the host's binaries); it is not part of `make check`, so
#       scripts/setup-toolchain.sh does not install it.
#   scripts/profile.sh --icount [accept|getpeername|udp|udp-later|tcp-data] [N]
#       counts, under qemu's -icount clock, every guest instruction executed in kernel code
#       (scripts/icount-plugin.c, a QEMU plugin built here with gcc), and prints per function the
#       instructions per operation with toa, without, and the difference (scripts/icount-report.py):
#       exact, where sampling is not. Counts are divided by N; the load's setup (warm-up, row 6's first
#       pass over its flows) is counted too, in both runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
icount=false
if [ "${1:-}" = --icount ]; then
	icount=true
	shift
fi
what=${1:-getpeername}
n=${2:-100000}
$icount || command -v perf >/dev/null || { echo "profile.sh: install linux-perf (apt-get install linux-perf)" >&2; exit 2; }
toa_prepare "$(toa_kernel "${KERNEL:-}" plain "${ARCH:-}")"
mkdir -p "$top/target/vm"
inner=$top/target/vm/profile-inner.sh

if $icount; then
	plugin=$top/target/vm/icount-plugin.so
	gcc -shared -fPIC -O2 -o "$plugin" "$here/icount-plugin.c"
	for mode in with without; do
		# The module's symbols, from the guest's kallsyms (the kernel's are in System.map: nokaslr).
		cat >"$inner" <<EOS
set -e
echo 0 >/proc/sys/kernel/kptr_restrict
grep '\[toa\]' /proc/kallsyms | sed 's/^/KSYM /'
[ $mode = without ] && rmmod toa
$vmtest workload $what $n
EOS
		out=$top/target/vm/icount-$what-$mode
		TOA_VM_ICOUNT=shift=0,sleep=off TOA_VM_PLUGIN="file=$plugin,out=$out" \
			bash "$here/vm-run.sh" "$kdir" "$ko" -- sh "$inner" >"$out.log"
		grep '^workload' "$out.log"
	done
	exec python3 "$here/icount-report.py" "$kdir/System.map" "$n" \
		"$top/target/vm/icount-$what-with" "$top/target/vm/icount-$what-without" 30
fi

# The guest's /tmp is a fresh overlay; perf report resolves kernel symbols from the guest's kallsyms.
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
