#!/usr/bin/env python3
"""An instance dies, its replacement is restored: the daemon's own figures.

The fault handler's instance exits (`/fault/exit`, a 502), the next request
needs a new instance, which is a restore by a criu started ahead. N times,
50 ms apart, one daemon (--threads 1), maxInstances 2, cpu 0.5. Printed:
the medians of the daemon's "restored in X ms" (job start to the copy's
READY) and of its criu part, and the client's time for the request that
found no instance. Several builds side by side, alternating, in one run:

    /usr/bin/python3 tests/bench/recycle.py [--n 25] [--rounds 2] BUILD [BUILD...]

Needs root and a working CRIU (make deps); exits 77 otherwise.
"""
import argparse
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=25)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("builds", nargs="+")
args = ap.parse_args()


def one(build):
    os.environ["THAW_BUILD"] = os.path.abspath(build)
    sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
    import thawtest
    thawtest.BUILD = os.path.abspath(build)
    thawtest.THAW = os.path.join(thawtest.BUILD, "thaw")
    fn = {"handler": os.path.join(thawtest.BUILD, "handlers", "fault.so"), "timeout": 10, "cpu": 0.5,
          "scalingConfig": {"maxInstances": 2}}
    with thawtest.Daemon({"fault": fn}, args=["--threads", "1", "--no-access-log"]) as d:
        client = []
        for _ in range(args.n):
            d.request("GET", "/fault/exit?code=1")
            time.sleep(0.05)
            t0 = time.perf_counter()
            r = d.request("GET", "/fault/id")
            client.append((time.perf_counter() - t0) * 1e3)
            if r.status != 200:
                raise RuntimeError("%s: %r" % (build, r))
            time.sleep(0.05)
        txt = d.logs()
    tot = [float(x) for x in re.findall(r"restored in ([0-9.]+) ms", txt)]
    criu = [float(x) for x in re.findall(r"criu ([0-9.]+), back", txt)]
    ahead = txt.count("criu started ahead")
    return ("%-28s %2d restores (%d by a criu started ahead): restored in p50 %5.1f ms (max %5.1f), "
            "criu p50 %5.1f ms; client p50 %5.1f ms" % (build, len(tot), ahead, statistics.median(tot),
                                                          max(tot), statistics.median(criu),
                                                          statistics.median(client)))


if os.geteuid() != 0:
    print("recycle: needs root")
    sys.exit(77)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from thawtest import criu_works  # noqa: E402
why = criu_works()
if why:
    print("recycle: " + why)
    sys.exit(77)
for r in range(args.rounds):
    for b in args.builds:
        print("round %d: %s" % (r + 1, one(b)), flush=True)
