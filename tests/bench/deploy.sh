#!/usr/bin/env bash
# Deploy timings: `thaw deploy` of the predict handler with synthetic weights
# (default 1024 MiB, BENCH_DEPLOY_WEIGHTS_MIB) to a fresh daemon: build,
# upload, unpack and start; then the same folder again (nothing to upload),
# then after a settings change (only the code layer travels).
# Usage: bash tests/bench/deploy.sh [BUILD_DIR]
set -u
BUILD=$(cd "${1:-build}" && pwd)
export THAW_BUILD=$BUILD
exec python3 "$(dirname "$0")/deploy.py"
