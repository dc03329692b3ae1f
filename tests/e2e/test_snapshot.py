"""Snapshots through the daemon: the first instance is warmed and
checkpointed, later instances are restored; copies answer their own requests,
get fresh randomness and ids, and a damaged snapshot or a missing CRIU means
cold starts, never a broken instance."""
import glob
import os
import time

from thawtest import Daemon, check, criu_works, finish, handler_so, parallel, skip_part

# without root or CRIU the snapshot parts skip (counted); the "CRIU
# unusable" and GPU parts run everywhere
no_criu = criu_works()

FAULT = {"handler": handler_so("fault"), "timeout": 10,
         "scalingConfig": {"maxInstances": 4, "maxQueueLength": 50},
         "warmup": {"method": "GET", "path": "/random"}}


def restores(d, fn):
    return d.metrics().get('thaw_instance_starts_total{function="%s",kind="restore"}' % fn, 0)


def cold(d, fn):
    return d.metrics().get('thaw_instance_starts_total{function="%s",kind="cold"}' % fn, 0)


def snapshots_serve():
  with Daemon({"fault": FAULT}) as d:
    check(cold(d, "fault") == 1 and restores(d, "fault") == 1,
          "one cold start (warmed, checkpointed), then the serving instance is a restore")
    check("snapshot of pid" in d.logs() and "warmup answered 200" in d.logs(), "warmup ran before the dump")

    # N concurrent requests force N restored copies; each answers its own request
    t0 = time.time()
    out = parallel(lambda n: d.request("GET", "/fault/sleep?ms=600&n=%d" % n, timeout=20),
                   [(n,) for n in range(4)])
    took = time.time() - t0
    ok = [r for r, e in out if e is None and r.status == 200]
    check(len(ok) == 4 and all(r.json()["n"] == n for n, r in enumerate(ok)),
          "4 concurrent requests each answered with its own n", out)
    ids = {r.json()["instance_id"] for r in ok}
    rnd = {r.json()["random"] for r in ok}
    check(len(ids) == 4, "4 different instances (restored copies get new ids)", ids)
    check(len(rnd) == 4, "on_restore re-seeded: 4 different random values", rnd)
    check(restores(d, "fault") >= 4, "scale-out was by restore", d.metrics())
    check(took < 2.4, "4 x 600 ms ran in parallel (%.2f s)" % took)
    m = d.metrics()
    check(m.get('thaw_restore_duration_seconds_count{function="fault"}', 0) >= 4, "restore histogram observed")

def damaged_snapshot_refused():
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
        out = parallel(lambda n: d.request("GET", "/fault/sleep?ms=300&n=%d" % n, timeout=20),
                       [(n,) for n in range(2)])
        check(len(out) == 2 and all(e is None and r.status == 200 for r, e in out),
              "2 requests served despite the damaged snapshot", out)
        check(cold(d, "fault") == c0 + 1, "the new instance was a cold start")
        check("snapshot refused" in d.logs(), "the refusal is logged")

if no_criu:
    skip_part("restore and scale-out by restore: " + no_criu)
    skip_part("damaged snapshot refused: " + no_criu)
else:
    snapshots_serve()
    damaged_snapshot_refused()

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
if not have_driver and no_criu:
    skip_part("GPU function without the checkpoint API: " + no_criu)
elif not have_driver:
    GPU = dict(FAULT, gpuConfig={"gpuType": "any", "gpuMemorySize": 1024})
    with Daemon({"gpu": GPU}) as d:
        line = [l for l in d.logs().splitlines() if "GPU snapshots off" in l]
        check(line and "libcuda.so.1" in line[0], "GPU function: clear GPU-snapshots-off line", line)
        r = d.request("GET", "/gpu/id")
        check(r.status == 200 and cold(d, "gpu") == 1 and restores(d, "gpu") == 0, "GPU function cold starts")

finish()
