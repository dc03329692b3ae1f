"""Snapshots through the daemon: the first instance is warmed and
checkpointed, later instances are restored; copies answer their own requests,
get fresh randomness and ids, and a damaged snapshot or a missing CRIU means
cold starts, never a broken instance."""
import glob
import os
import subprocess
import threading
import time

from thawtest import BUILD, Daemon, check, finish, handler_so, skip

probe = subprocess.run([os.environ.get("THAW_CRIU", "/usr/local/lib/thaw/criu/criu"), "check"],
                       capture_output=True, text=True)
if os.geteuid() != 0 or probe.returncode != 0:
    skip("snapshots need root and a working CRIU (make deps): " + (probe.stderr.strip().splitlines() or ["?"])[-1])

FAULT = {"handler": handler_so("fault"), "timeout": 10,
         "scalingConfig": {"maxInstances": 4, "maxQueueLength": 50},
         "warmup": {"method": "GET", "path": "/random"}}


def restores(d, fn):
    return d.metrics().get('thaw_instance_starts_total{function="%s",kind="restore"}' % fn, 0)


def cold(d, fn):
    return d.metrics().get('thaw_instance_starts_total{function="%s",kind="cold"}' % fn, 0)


with Daemon({"fault": FAULT}) as d:
    check(cold(d, "fault") == 1 and restores(d, "fault") == 1,
          "one cold start (warmed, checkpointed), then the serving instance is a restore")
    check("snapshot of pid" in d.logs() and "warmup answered 200" in d.logs(), "warmup ran before the dump")

    # N concurrent requests force N restored copies; each answers its own request
    res = {}

    def call(n):
        res[n] = d.request("GET", "/fault/sleep?ms=600&n=%d" % n, timeout=20)
    threads = [threading.Thread(target=call, args=(n,)) for n in range(4)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - t0
    check(all(res[n].status == 200 and res[n].json()["n"] == n for n in range(4)),
          "4 concurrent requests each answered with its own n", {n: res[n].body for n in res})
    ids = {res[n].json()["instance_id"] for n in range(4)}
    rnd = {res[n].json()["random"] for n in range(4)}
    check(len(ids) == 4, "4 different instances (restored copies get new ids)", ids)
    check(len(rnd) == 4, "on_restore re-seeded: 4 different random values", rnd)
    check(restores(d, "fault") >= 4, "scale-out was by restore", d.metrics())
    check(took < 2.4, "4 x 600 ms ran in parallel (%.2f s)" % took)
    m = d.metrics()
    check(m.get('thaw_restore_duration_seconds_count{function="fault"}', 0) >= 4, "restore histogram observed")

# a damaged snapshot is refused: cold start instead, requests still served
with Daemon({"fault": dict(FAULT, scalingConfig={"maxInstances": 2})}) as d:
    snaps = [l.split(" in ")[1].split(":")[0] for l in d.logs().splitlines() if "snapshot of pid" in l]
    check(len(snaps) == 1, "snapshot folder logged", snaps)
    if snaps:
        imgs = sorted(glob.glob(os.path.join(snaps[0], "pages-*.img")), key=os.path.getsize)
        check(imgs, "snapshot has page images")
        with open(imgs[-1], "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0xFF]))
        c0 = cold(d, "fault")
        res = {}
        threads = [threading.Thread(target=lambda n=n: res.__setitem__(n, d.request("GET", "/fault/sleep?ms=300&n=%d" % n, timeout=20)))
                   for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(all(r.status == 200 for r in res.values()), "requests served despite the damaged snapshot", res)
        check(cold(d, "fault") == c0 + 1, "the new instance was a cold start")
        check("snapshot refused" in d.logs(), "the refusal is logged")

# CRIU unusable: one clear line, functions cold start
with Daemon({"fault": FAULT}, env={"THAW_CRIU": "/nonexistent/criu"}) as d:
    line = [l for l in d.logs().splitlines() if "snapshots off" in l]
    check(line and "/nonexistent/criu" in line[0], "clear message naming the missing criu", line)
    r = d.request("GET", "/fault/id")
    check(r.status == 200 and cold(d, "fault") == 1 and restores(d, "fault") == 0, "cold start serves without CRIU")

# a GPU function on a machine without the driver's checkpoint API: a clear
# line, cold starts (CRIU cannot dump device memory it cannot see)
import ctypes
try:
    ctypes.CDLL("libcuda.so.1")
    have_driver = True
except OSError:
    have_driver = False
if not have_driver:
    GPU = dict(FAULT, gpuConfig={"gpuType": "any", "gpuMemorySize": 1024})
    with Daemon({"gpu": GPU}) as d:
        line = [l for l in d.logs().splitlines() if "GPU snapshots off" in l]
        check(line and "libcuda.so.1" in line[0], "GPU function: clear GPU-snapshots-off line", line)
        r = d.request("GET", "/gpu/id")
        check(r.status == 200 and cold(d, "gpu") == 1 and restores(d, "gpu") == 0, "GPU function cold starts")

finish()
