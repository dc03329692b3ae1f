#!/usr/bin/env bash
# Custom runtime: (1) examples/torch-digits (FastAPI + PyTorch): cold start
# vs restore to the first response with the agent (snapshotMemory.mapped)
# and without (CRIU copies the memory), memory per copy, and requests/s +
# p99 through thaw against the same server called directly; (2) a Python
# server with a 1 GiB heap, restored with and without the agent.
# Usage: bash tests/bench/custom.sh BUILD (RESTORES=N COLDS=N DURATION=S
# COPIES=N for (1); HEAP_RESTORES=N STATE_MB=N for (2); PARTS="torch heap").
set -u
BUILD=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/../.."
for part in ${PARTS:-torch heap}; do
	case $part in
	torch) THAW_BUILD=$BUILD /usr/bin/python3 tests/bench/custom_bench.py ;;
	heap) THAW_BUILD=$BUILD RESTORES=${HEAP_RESTORES:-10} /usr/bin/python3 tests/bench/custom_state.py ;;
	esac
done
