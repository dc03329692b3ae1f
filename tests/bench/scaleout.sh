#!/usr/bin/env bash
# Scale-out response: a step from 0 to 32 closed-loop clients on the fault
# handler (GET /sleep?ms=50, instanceConcurrency 1, minInstances 1,
# maxInstances 32, targetConcurrency 1, stableWindowSeconds 6, init made 1.5 s
# long with FAULT_INIT_SLEEP_MS), once with snapshot restores and once with
# --no-snapshots (cold starts). Prints per mode: time until the p99 over
# sliding 1 s windows stays under 2x the 1-client p99, peak instances,
# restores / cold starts, overall p50/p99. The work is done by
# tests/bench/scaleout.py (its docstring says exactly what is measured).
#
# Usage: tests/bench/scaleout.sh [BUILD_DIR]        (make bench runs it)
# Environment:
#   BENCH_SCALEOUT_SECONDS   length of the 32-client phase (default 20)
#   BENCH_SCALEOUT_SVG       write the plot here (default: no plot;
#                            docs/scaleout.svg is made with =docs/scaleout.svg)
#   BENCH_SCALEOUT_JSON      also write every sample to this file
#   BENCH_SCALEOUT_MODES     snapshot,cold (default both)
#   THAW_CRIU                another criu binary
# Exit: 0, 77 when not root, CRIU or the build is missing, 1 on a failure.
# Takes about 90 s.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)

if ! command -v python3 >/dev/null; then
	echo "scaleout: skipped: python3 is not installed"
	exit 77
fi
echo "scaleout: load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
exec timeout 600 python3 "$ROOT/tests/bench/scaleout.py" --build "$BUILD" \
	--seconds "${BENCH_SCALEOUT_SECONDS:-20}" \
	--modes "${BENCH_SCALEOUT_MODES:-snapshot,cold}" \
	${BENCH_SCALEOUT_SVG:+--svg "$BENCH_SCALEOUT_SVG"} \
	${BENCH_SCALEOUT_JSON:+--json "$BENCH_SCALEOUT_JSON"}
