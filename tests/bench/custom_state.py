"""Figures for docs/benchmarks.md, custom runtime with a large Python heap
(see custom.sh): tests/e2e/custom/state_server.py with STATE_MB (1024) of
non-zero state in 16 MiB bytearrays, each built by a thread, two functions in
one daemon, "agent" (snapshotMemory.mapped, the default) and "copy"
(mapped: false). Restore from zero -> first answer (GET /ping, client
side), RESTORES (10) each, alternating which goes first; the snapshot's
CRIU images and memory files; the daemon's criu restore time.
"""
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from thawtest import Daemon, skip, wait_for  # noqa: E402
from custom_bench import at_zero, pct, snapshot_mib  # noqa: E402

PY = "/usr/bin/python3"
SERVER = os.path.join(HERE, "..", "e2e", "custom", "state_server.py")
STATE_MB = int(os.environ.get("STATE_MB", "1024"))
RESTORES = int(os.environ.get("RESTORES", "10"))
VARIANTS = {"agent": "heap", "copy": "heap-copy"}
MEM_TMPFS = "/dev/shm/thaw-mem"


def fn(**extra):
    f = {"runtime": "custom",
         "customRuntimeConfig": {"command": [PY, SERVER], "port": 9000},
         "environmentVariables": {"STATE_MB": str(STATE_MB), "CHILD_MB": "0"},
         "memorySize": STATE_MB + 1024, "timeout": 60,
         "scalingConfig": {"maxInstances": 1, "stableWindowSeconds": 6,
                           "scaleToZeroGracePeriodSeconds": 0}}
    f.update(extra)
    return f


def main():
    if os.geteuid() != 0:
        skip("needs root")
    snaps = tempfile.mkdtemp(prefix="bench-heap-", dir=MEM_TMPFS) if os.path.isdir(MEM_TMPFS) else None
    fns = {"heap": fn(), "heap-copy": fn(snapshotMemory={"mapped": False})}
    try:
        with Daemon(fns, args=["--snapshot-dir", snaps] if snaps else [], ready_timeout=600) as d:
            snap_dir = snaps or d.snap_dir
            out = {k: [] for k in VARIANTS}
            for i in range(RESTORES):
                order = list(VARIANTS) if i % 2 == 0 else list(reversed(list(VARIANTS)))
                for k in order:
                    if not wait_for(lambda: all(at_zero(d, f) for f in VARIANTS.values()), secs=60, step=0.1):
                        raise RuntimeError("did not scale to zero")
                    t0 = time.perf_counter()
                    r = d.request("GET", "/%s/ping" % VARIANTS[k], timeout=60)
                    out[k].append((time.perf_counter() - t0) * 1e3)
                    if r.status != 200:
                        raise RuntimeError("%s: %d" % (k, r.status))
            r = d.request("GET", "/heap/check", timeout=60).json()
            if not r["sum_ok"] or r["mapped_mb"] < STATE_MB:
                raise RuntimeError("the agent's copy is wrong: %s" % r)
            logs = d.logs()
            print("custom runtime with a %d MiB Python heap (%s), snapshots in %s" % (
                STATE_MB, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), snap_dir))
            for k, name in VARIANTS.items():
                img, mf = snapshot_mib(os.path.join(snap_dir, name + "-v1"))
                criu = [float(x) for x in re.findall(
                    r" %s: instance \S+ \(pid \d+\) restored in [\d.]+ ms: .*?criu ([\d.]+)" % name, logs)]
                dump = re.search(r" %s: snapshot of pid \d+ in \S+: [\d.]+ MiB in \d+ files, dump ([\d.]+) ms" % name, logs)
                moved = re.search(r" %s: ([\d.]+) MiB in (\d+) mappings moved into memory files in ([\d.]+) ms" % name, logs)
                v = out[k]
                print("[%s] %s" % (k, "agent" if k == "agent" else "snapshotMemory.mapped: false"))
                print("  restore from zero -> first answer, client (%d runs): p50 %.1f ms, p99 %.1f ms, min %.1f"
                      % (len(v), statistics.median(v), pct(v, 99), min(v)))
                hook = [float(x) for x in re.findall(
                    r" %s: instance \S+ \(pid \d+\) restored in .*on_restore and channel ([\d.]+)" % name, logs)]
                total = [float(x) for x in re.findall(
                    r" %s: instance \S+ \(pid \d+\) restored in ([\d.]+) ms" % name, logs)]
                if criu:
                    print("  daemon side, p50: restored in %.1f ms, of which criu restore %.1f ms, "
                          "restore hook + port %.1f ms" % (statistics.median(total), statistics.median(criu),
                                                           statistics.median(hook)))
                print("  CRIU images %.1f MiB, memory files %.1f MiB, dump %s ms%s" % (
                    img, mf, dump.group(1) if dump else "?",
                    ", moved %s MiB in %s mappings in %s ms before it" % moved.groups() if moved else ""))
    finally:
        if snaps:
            shutil.rmtree(snaps, ignore_errors=True)


if __name__ == "__main__":
    main()
