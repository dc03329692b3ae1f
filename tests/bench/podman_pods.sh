#!/usr/bin/env bash
# New pod to first response under podman, with the snapshot layer vs without
# (tests/bench/podman_pods.py; docs/benchmarks.md, "New pods under podman").
# Usage: tests/bench/podman_pods.sh BUILD_DIR   (BENCH_POD_ROUNDS, default 5)
# Exit 77 without root, podman, skopeo, docker-registry or runc.
set -euo pipefail
export THAW_BUILD=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then echo "podman_pods: needs root"; exit 77; fi
for t in podman skopeo docker-registry runc; do
	command -v "$t" >/dev/null || { echo "podman_pods: $t not installed (make deps)"; exit 77; }
done
exec /usr/bin/python3 tests/bench/podman_pods.py "${BENCH_POD_ROUNDS:-5}"
