#!/usr/bin/env bash
# make soak: a steady load for SOAK_SECONDS (default 300) against the echo and
# fault functions on loopback; fails on any error or when the daemon's RSS
# grows by more than SOAK_RSS_GROWTH_KB (default 8192) between the first and
# the last minute. Usage: tests/soak/run.sh BUILD
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/../.."
THAW_BUILD=$BUILD exec python3 tests/soak/soak.py
