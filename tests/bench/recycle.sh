#!/usr/bin/env bash
# An instance dies and its replacement is restored: the daemon's "restored
# in" and criu medians for one build (tests/bench/recycle.py; give it
# several builds to compare them side by side; docs/benchmarks.md,
# "Restores that move no process between cgroups").
# Usage: tests/bench/recycle.sh [BUILD_DIR]        (make bench runs it)
# Exit: 0, 77 when not root or CRIU is missing, 1 on a failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
exec /usr/bin/python3 "$ROOT/tests/bench/recycle.py" --rounds 1 "$BUILD"
