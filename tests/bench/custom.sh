#!/usr/bin/env bash
# Custom runtime (examples/torch-digits, FastAPI + PyTorch): cold start vs
# restore to the first response, and requests/s + p99 through thaw against
# the same server called directly. Usage: bash tests/bench/custom.sh BUILD
# (RESTORES=N COLDS=N DURATION=S to change the sample counts).
set -u
BUILD=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/../.."
THAW_BUILD=$BUILD exec /usr/bin/python3 tests/bench/custom_bench.py
