#!/usr/bin/env bash
# Runs every test, each in its own process with a time limit, and ends with
# "N passed, N failed, N skipped" (after a line "N cases skipped in N passed
# tests").
# Usage: tests/run.sh BUILD_DIR [NAME_FILTER]
#
# Skips are counted, never hidden:
#  - exit 77 means the whole test skipped; its reason is its last line;
#  - a cmocka binary reports skipped cases in its summary
#    ("[  SKIPPED ] N test(s)"); an e2e test prints "skip: WHY" for each part
#    it left out. A test with skipped cases passes with them counted and
#    shown; a cmocka binary whose every case skipped is a skip, not a pass;
#  - a skip whose reason line starts "skip[no-gpu]:" is expected (no GPU
#    here); every other skip is unexpected. THAW_NO_SKIP=1 (.ci/run) turns
#    every unexpected skip into a failure;
#  - a test that failed a check ("FAIL ..." line, cmocka "[  FAILED  ]") and
#    then exits 77 is a failure, not a skip.
set -u
BUILD=${1:-build}
FILTER=${2:-}
export THAW_BUILD=$(cd "$BUILD" && pwd)
cd "$(dirname "$0")/.."
STRICT=${THAW_NO_SKIP:-0}
pass=0 fail=0 skip=0 skipped_cases=0 partial=0 failed=()

# count PATTERN LOG: matching lines (0 when none)
count() { grep -cE "$1" "$2" || true; }
# sum PATTERN LOG: the sum of the first group of PATTERN's matches ("" when none)
sum() { sed -nE "s/$1/\\1/p" "$2" | awk '{ n += $1; any = 1 } END { if (any) print n }'; }

fail_one() { # name secs why log
	fail=$((fail + 1)); failed+=("$1")
	echo "FAIL $1 (${3}, ${2}s)"; sed 's/^/    /' "$4" | tail -n 60
}

run_one() { # name timeout cmd...
	local name=$1 limit=$2
	shift 2
	[[ -n "$FILTER" && "$name" != *"$FILTER"* ]] && return
	local log start rc secs
	log=$(mktemp)
	start=$(date +%s.%N)
	timeout -k 5 "$limit" "$@" >"$log" 2>&1
	rc=$?
	secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
	local ran passed_cases skipped nogpu failed_checks
	# cmocka's summaries (one per group run), summed
	ran=$(sum '^\[==========\] ([0-9]+) test\(s\) run\.$' "$log")
	passed_cases=$(sum '^\[  PASSED  \] ([0-9]+) test\(s\)\.$' "$log")
	skipped=$(sum '^\[  SKIPPED \] ([0-9]+) test\(s\), listed below:$' "$log")
	if [ -z "$ran" ]; then # an e2e test: one "skip: WHY" line per part left out
		skipped=$(count '^skip(\[no-gpu\])?: ' "$log")
	fi
	skipped=${skipped:-0}
	nogpu=$(count '^skip\[no-gpu\]: ' "$log")
	failed_checks=$(count '^FAIL |^\[  FAILED  \]' "$log")
	if ((rc == 77 && failed_checks)); then
		fail_one "$name" "$secs" "exit 77 after a failed check" "$log"
	elif ((rc == 77)) || ((rc == 0 && ${ran:-0} > 0 && ${passed_cases:-0} == 0 && skipped == ran)); then
		local why
		why=$(grep -E '^skip(\[no-gpu\])?: ' "$log" | tail -n 1)
		[ -n "$why" ] || why=$(tail -n 1 "$log")
		((rc == 0)) && why="all $ran cases skipped; $why"
		if ((STRICT)) && ! grep -qE '^skip\[no-gpu\]: ' "$log"; then
			fail_one "$name" "$secs" "THAW_NO_SKIP=1: unexpected skip: $why" "$log"
		else
			skip=$((skip + 1)); echo "SKIP $name: $why"
		fi
	elif ((rc == 0)); then
		if ((STRICT && skipped > nogpu)); then
			fail_one "$name" "$secs" "THAW_NO_SKIP=1: $((skipped - nogpu)) unexpected skipped cases" "$log"
			return
		fi
		pass=$((pass + 1))
		if ((skipped)); then
			partial=$((partial + 1)); skipped_cases=$((skipped_cases + skipped))
			echo "PASS $name (${secs}s; $skipped cases skipped)"
			grep -E '^skip(\[no-gpu\])?: ' "$log" | sort | uniq -c | sed 's/^ */    /'
		else
			echo "PASS $name (${secs}s)"
		fi
	else
		fail_one "$name" "$secs" "rc=$rc" "$log"
	fi
	rm -f "$log"
}
for t in "$BUILD"/tests/unit/test_*; do
	[ -x "$t" ] || continue
	run_one "unit/$(basename "$t")" 120 "$t"
done
# the layering of docs/architecture.md: include directions, no include cycle
[ -e tests/layering.py ] && run_one "lint/layering" 60 python3 tests/layering.py
for t in tests/e2e/test_*.py; do
	[ -e "$t" ] || continue
	run_one "e2e/$(basename "$t" .py)" 300 python3 "$t"
done
for t in tests/e2e/test_*.sh; do
	[ -e "$t" ] || continue
	run_one "e2e/$(basename "$t" .sh)" 300 bash "$t"
done
((fail)) && echo "failed: ${failed[*]}"
echo "$skipped_cases cases skipped in $partial passed tests"
# the closing line alone, as test-result readers expect it
echo "$pass passed, $fail failed, $skip skipped"
((fail == 0))
