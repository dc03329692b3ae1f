#!/usr/bin/env bash
# Cold start vs snapshot restore: time from "an instance is needed" to "its
# first response is sent", p50/p99 over >= 20 starts per series, for the echo
# handler and the predict handler with ~1 GiB of synthetic weights (made by
# build/tools/gen_weights in a temp dir), restore concurrency 1, 4 and 16,
# memory per extra restored instance and the snapshot's size. The work is done
# by tests/bench/restore.py (its docstring says exactly what is timed);
# the figures and their reading are in docs/benchmarks.md.
#
# Usage: tests/bench/restore.sh [BUILD_DIR]        (make bench runs it)
# Environment:
#   BENCH_RESTORE_N            starts per series (default 20)
#   BENCH_RESTORE_RUNS         runs per series, the lower p50 is reported (default 2)
#   BENCH_RESTORE_WEIGHTS_MIB  size of the predict weights (default 1024)
#   BENCH_RESTORE_ONLY         a subset: echo,predict,infer,conc,memory
#   BENCH_RESTORE_JSON         also write every sample to this file
#   BENCH_RESTORE_REPLICAS     copies of each function timed in turn (default 4)
#   THAW_CRIU                  another criu binary
# Exit: 0, 77 when not root, CRIU or the build is missing, 1 on a failure.
# Needs ~1 GiB free in /var/tmp (BENCH_TMP; and as page cache) for the weights.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)

if ! command -v python3 >/dev/null; then
	echo "restore: skipped: python3 is not installed"
	exit 77
fi
exec python3 "$ROOT/tests/bench/restore.py" --build "$BUILD"
