#!/usr/bin/env bash
# Protocols benchmark (docs/benchmarks.md, "Protocols"): the MLP through TF
# Serving REST, KServe v2 REST (JSON and binary), KServe gRPC and TF Serving
# gRPC at batch 1 and 256 (tests/bench/protocols.py).
# Usage: tests/bench/protocols.sh [BUILD_DIR]
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
exec /usr/bin/python3 "$ROOT/tests/bench/protocols.py" "${1:-$ROOT/build}" ${BENCH_PROTOCOLS_ARGS:-}
