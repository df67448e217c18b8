#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target (fuzz/fuzz_targets/*) for SECONDS each (default 30), with the seed
# corpus of fuzz/seeds/<target> and a working corpus kept in $TOA_CACHE/fuzz/<target> (outside the clone).
# Stable Rust: no sanitizer (the parsers are safe Rust; overflow and debug assertions are on).
# Prints one `ok - fuzz <target>` / `FAIL - fuzz <target>` line per target; a crash input is saved by
# cargo fuzz under fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ to keep it tested.
#   scripts/fuzz.sh [SECONDS]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
# shellcheck source=scripts/env.sh
. "$here/env.sh"
secs=${1:-30}
cd "$top/fuzz" || exit 1
rc=0
for t in fuzz_targets/*.rs; do
	name=$(basename "$t" .rs)
	corpus=$TOA_CACHE/fuzz/$name
	mkdir -p "$corpus"
	log=$(mktemp)
	if cargo fuzz run "$name" --sanitizer none "$corpus" "seeds/$name" -- \
		-max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
		echo "ok - fuzz $name: $(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$') runs in ${secs} s"
	else
		echo "FAIL - fuzz $name:"
		grep -E 'panicked|Test unit written|SUMMARY|error' "$log" | head -20
		rc=1
	fi
	rm -f "$log"
done
exit $rc
