#!/usr/bin/env bash
# GPU cold start vs snapshot restore of a predict function with 256 MiB and
# 4 GiB of weights on the device, to its first :predict response, p50 over
# >= 10 starts (fewer when the budget runs out; the count is printed), beside
# the pinned host-to-device copy floor of the same bytes; where restore time
# goes; restored outputs compared with cold ones bit for bit. The work is done
# by tests/bench/gpu_restore.py (its docstring says exactly what is timed).
# tests/gpu/run.sh runs it on a GPU machine; make bench runs it too.
#
# Usage: tests/bench/gpu_restore.sh [BUILD_DIR]
# Environment: BENCH_GPU_N (10), BENCH_GPU_SIZES (4096,256),
#   BENCH_GPU_REPLICAS (4), BENCH_GPU_BUDGET (seconds, 300), THAW_CRIU.
# Exit: 0; 77 without a GPU or python3; 1 on a failure. Without root or a
# working CRIU it says so and measures cold starts only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
if ! command -v python3 >/dev/null; then
	echo "gpu_restore: skipped: python3 is not installed"
	exit 77
fi
exec python3 "$ROOT/tests/bench/gpu_restore.py" --build "$BUILD"
