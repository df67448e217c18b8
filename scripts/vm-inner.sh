#!/bin/bash
# Runs inside the test VM (see vm-run.sh): TOA_KO|--no-insmod PARAMS COMMAND [ARGS...]
ko=$1 params=$2
shift 2
export TOA_KO=$ko
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
dmesg -n 1 # keep kernel messages off the console: the log is printed, and scanned, at the end
# A kernel that reported a problem while booting, before toa exists, cannot give a clean log, and a
# KASAN report also turns lockdep off for the rest of the run: say so, and let vm-run.sh boot again.
# (Seen under TCG on a loaded host: an early interrupt during identify_cpu, KASAN wild-memory-access
# in handle_edge_irq, about one boot in five.)
if dmesg | grep -qE "$TOA_KERNEL_PROBLEMS"; then
	echo "=== toa boot problem begin ==="
	dmesg
	echo "=== toa boot problem end ==="
	exit 75
fi
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug 2>/dev/null
kml=/sys/kernel/debug/kmemleak
# Objects allocated before the module loads are not the module's business.
[ -w $kml ] && echo clear >$kml

# shellcheck disable=SC2086
if [ "$ko" != --no-insmod ] && ! insmod "$ko" $params; then
	echo "vm-inner: insmod $ko $params failed"
	rc=90
else
	"$@"
	rc=$?
	# 128+N: killed by signal N (a test program that dies prints no closing count of its own).
	[ "$rc" -eq 0 ] || echo "vm-inner: the command exited with status $rc"
	if grep -q '^toa ' /proc/modules && ! rmmod toa; then
		echo "vm-inner: rmmod toa failed"
		rc=91
	fi
fi

if [ -w $kml ]; then
	# kmemleak only reports objects older than 5 s, found unreferenced by two scans.
	# Not a wait for state: objects must age 5 s (kmemleak's minimum age) before a scan may report them.
	sleep 6
	echo scan >$kml
	echo scan >$kml
fi
echo "=== toa dmesg begin ==="
[ -s $kml ] && cat $kml
dmesg
echo "=== toa dmesg end ==="
exit $rc
