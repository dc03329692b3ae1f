#!/usr/bin/env bash
# Runs every test, each in its own process with a time limit, and ends with
# "N passed, N failed, N skipped". Exit code 77 from a test means skip (no
# CRIU, no GPU, ...). Usage: tests/run.sh BUILD_DIR [NAME_FILTER]
set -u
BUILD=${1:-build}
FILTER=${2:-}
export THAW_BUILD=$(cd "$BUILD" && pwd)
cd "$(dirname "$0")/.."
pass=0 fail=0 skip=0 failed=()
run_one() { # name timeout cmd...
	local name=$1 limit=$2
	shift 2
	[[ -n "$FILTER" && "$name" != *"$FILTER"* ]] && return
	local log start rc
	log=$(mktemp)
	start=$(date +%s.%N)
	timeout -k 5 "$limit" "$@" >"$log" 2>&1
	rc=$?
	local secs
	secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
	if ((rc == 0)); then
		pass=$((pass + 1)); echo "PASS $name (${secs}s)"
	elif ((rc == 77)); then
		skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "$log")"
	else
		fail=$((fail + 1)); failed+=("$name")
		echo "FAIL $name (rc=$rc, ${secs}s)"; sed 's/^/    /' "$log" | tail -n 60
	fi
	rm -f "$log"
}
for t in "$BUILD"/tests/unit/test_*; do
	[ -x "$t" ] || continue
	run_one "unit/$(basename "$t")" 120 "$t"
done
for t in tests/e2e/test_*.py; do
	[ -e "$t" ] || continue
	run_one "e2e/$(basename "$t" .py)" 300 python3 "$t"
done
for t in tests/e2e/test_*.sh; do
	[ -e "$t" ] || continue
	run_one "e2e/$(basename "$t" .sh)" 300 bash "$t"
done
((fail)) && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
((fail == 0))
