#!/usr/bin/env bash
# Spare instances: how long a request waits for an instance when every
# serving instance is busy, with a spare waiting (spareInstances: 1) and
# without (spareInstances: 0, the instance is restored on its path), side by
# side in one run. Each round: a 300 ms request occupies the one serving
# instance (instanceConcurrency 1), then a second request arrives; its time
# to answer (the handler answers at once) is the wait for an instance plus
# the round trip. The same request to the idle serving instance, timed in
# each round after the busy one ended, is the round trip alone (warm): the
# wait for an instance is the difference.
# Usage: tests/bench/spares.sh BUILD_DIR   (BENCH_SPARE_ROUNDS, default 20)
# Exit 77 without CRIU (no snapshots, no spares).
set -euo pipefail
exec /usr/bin/python3 - "$@" <<'PY'
import os, sys, threading, time
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "e2e"))
os.environ.setdefault("THAW_BUILD", os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build"))
from thawtest import Daemon, handler_so, wait_for

ROUNDS = int(os.environ.get("BENCH_SPARE_ROUNDS", "20"))


def metric(d, name, **labels):
    lab = ",".join('%s="%s"' % kv for kv in [("function", "fn")] + sorted(labels.items()))
    return d.metrics().get("%s{%s}" % (name, lab), 0)


def rounds(spares):
    fn = {"handler": handler_so("fault"), "timeout": 20, "instanceConcurrency": 1,
          "scalingConfig": {"maxInstances": 4, "spareInstances": spares, "minInstances": 1,
                            "scaleToZeroGracePeriodSeconds": 60, "stableWindowSeconds": 6}}
    lat, warm = [], []
    with Daemon({"fn": fn}) as d:
        if "snapshots on" not in d.logs():
            print("spares: skipped: CRIU cannot run here (no snapshots, no restores)")
            sys.exit(77)
        d.request("GET", "/fn/id")
        for _ in range(ROUNDS):
            # back to one serving instance (and the spare): scale-in of extras
            wait_for(lambda: metric(d, "thaw_instances", state="idle") + metric(d, "thaw_instances", state="busy") == 1
                     and metric(d, "thaw_instances", state="starting") == 0
                     and metric(d, "thaw_instances", state="spare") == spares, 15, 0.05)
            busy = threading.Thread(target=lambda: d.request("GET", "/fn/sleep?ms=300"))
            busy.start()
            time.sleep(0.05)
            t0 = time.time()
            r = d.request("GET", "/fn/id")
            lat.append((time.time() - t0) * 1e3)
            busy.join()
            assert r.status == 200, r
            t0 = time.time()
            r = d.request("GET", "/fn/id")
            warm.append((time.time() - t0) * 1e3)
            assert r.status == 200, r
            # let the extra instance go (idle > 1 s beyond what is wanted)
            wait_for(lambda: metric(d, "thaw_instances", state="idle") <= 1, 15, 0.1)
        taken = metric(d, "thaw_spares_taken_total")
    lat.sort()
    warm.sort()
    return lat, warm, taken


def p50(v):
    return v[len(v) // 2]


res = {}
for spares in (1, 0):
    lat, warm, taken = rounds(spares)
    res[spares] = (lat, warm)
    print("spareInstances %d: %d rounds, second request p50 %.2f ms, p99 %.2f ms, spares taken %d;"
          " the same request to an idle instance p50 %.2f ms"
          % (spares, len(lat), p50(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))], taken, p50(warm)))
print("a request that finds a spare: p50 %.2f ms (waits %.2f ms beyond an idle instance's %.2f);"
      " one that waits for a restore: p50 %.2f ms"
      % (p50(res[1][0]), p50(res[1][0]) - p50(res[1][1]), p50(res[1][1]), p50(res[0][0])))
PY
