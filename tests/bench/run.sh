#!/usr/bin/env bash
# make bench: runs every benchmark in turn and prints their figures.
#   tests/bench/*.sh           each self-contained, run as `bash X.sh BUILD_DIR`
#   BUILD_DIR/tests/bench/bench_*   executables built by `make` (no arguments)
# A benchmark exiting 77 is skipped (a tool or a device is missing). Ends with
# "N ran, N failed, N skipped"; exit 1 when one failed.
# Usage: tests/bench/run.sh [BUILD_DIR] [NAME_FILTER]
set -u
BUILD=$(cd "${1:-build}" && pwd)
FILTER=${2:-}
cd "$(dirname "$0")/../.."
ran=0 failed=0 skipped=0 failures=()

run_one() { # NAME CMD...
	local name=$1
	shift
	[[ -n "$FILTER" && "$name" != *"$FILTER"* ]] && return
	echo "=== $name"
	local start rc secs
	start=$(date +%s.%N)
	"$@"
	rc=$?
	secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	if ((rc == 0)); then
		ran=$((ran + 1))
		echo "=== $name: done (${secs}s)"
	elif ((rc == 77)); then
		skipped=$((skipped + 1))
		echo "=== $name: skipped"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "=== $name: FAILED (rc=$rc, ${secs}s)"
	fi
	echo
}

for s in tests/bench/*.sh; do
	[ "$(basename "$s")" = run.sh ] && continue
	[ -f "$s" ] || continue
	run_one "$(basename "$s" .sh)" bash "$s" "$BUILD"
done
for b in "$BUILD"/tests/bench/bench_*; do
	[[ -f "$b" && -x "$b" && "$b" != *.d && "$b" != *.o ]] || continue
	run_one "$(basename "$b")" "$b"
done

echo "$ran ran, $failed failed, $skipped skipped${failures[*]:+ (failed: ${failures[*]})}"
((failed == 0))
