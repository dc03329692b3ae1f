"""A snapshot is reused only for what it was made from (docs/snapshots.md),
cases with no test before (issue 19, item 9): a rebuilt handler .so and a
rebuilt thaw-instance each make the old snapshot refused after a restart
(and the new build serves); a rolled-back version whose snapshot folder was
deleted serves: its new instances cold start, and the refusal says which
folder is missing. All parts need CRIU."""
import json
import os
import shutil
import time

import thawtest
from thawtest import Daemon, check, parallel, criu_works, finish, handler_so, skip, wait_for, write_function

no_criu = criu_works()
if no_criu:
    skip(no_criu)

REFUSED = "made from another image, configuration or build"


def snapshots_of(d, fn):
    return d.logs().count("%s: snapshot of pid" % fn)


# 1. the handler .so rebuilt between two runs
work = os.path.join("/tmp", "thaw-e2e-src-%d" % os.getpid())
os.makedirs(work)
so = os.path.join(work, "h.so")
shutil.copy(handler_so("echo"), so)
with Daemon({"fx": {"handler": so}}) as d:
    r = d.request("POST", "/fx/", b"one")
    check(r.status == 200 and r.body == b"one", "the echo build serves", r)
    check(wait_for(lambda: snapshots_of(d, "fx") == 1), "fx snapshotted")
    shutil.copy(handler_so("fault"), so + ".new")
    os.rename(so + ".new", so)
    d.restart()
    check(REFUSED in d.logs(), "a rebuilt handler: the old snapshot is refused, said in the log", d.logs()[-1500:])
    r = d.request("GET", "/fx/id")
    check(r.status == 200 and b"instance_id" in r.body, "the new handler serves (fault's /id)", r)

# 2. thaw-instance rebuilt between two runs (it lives beside thaw)
bindir = os.path.join(work, "bin")
os.makedirs(bindir)
for b in ("thaw", "thaw-instance"):
    shutil.copy2(os.path.join(thawtest.BUILD, b), os.path.join(bindir, b))
real_thaw, thawtest.THAW = thawtest.THAW, os.path.join(bindir, "thaw")
try:
    with Daemon({"fy": {"handler": handler_so("echo")}}) as d:
        check(d.request("POST", "/fy/", b"a").status == 200, "fy serves")
        check(wait_for(lambda: snapshots_of(d, "fy") == 1), "fy snapshotted")
        d.keep = True
        d.stop()
        d.keep = False
        with open(os.path.join(bindir, "thaw-instance"), "ab") as f:
            f.write(b"\0rebuilt\0")  # another build: other bytes, same behaviour
        d.start()
        check(REFUSED in d.logs(), "a rebuilt thaw-instance: the old snapshot is refused", d.logs()[-1500:])
        r = d.request("POST", "/fy/", b"b")
        check(r.status == 200 and r.body == b"b", "and the function serves", r)
        check(wait_for(lambda: snapshots_of(d, "fy") == 2), "a new snapshot is taken")
finally:
    thawtest.THAW = real_thaw

# 3. rollback to a version whose snapshot folder was deleted
with Daemon() as d:
    auth = {"Authorization": "Bearer " + open(os.path.join(d.state_dir, "admin.token")).read().strip()}

    def deploy(tag, fields):
        folder = write_function(os.path.join(d.tmp, tag), "svc", fields)
        return d.request("POST", "/admin/functions", body=json.dumps({"dir": folder}), headers=auth)

    def current():
        return d.request("GET", "/admin/functions/svc", headers=auth).json().get("current")

    V1 = {"handler": handler_so("fault"), "timeout": 10, "scalingConfig": {"maxInstances": 3}}
    check(deploy("v1", V1).status == 201 and wait_for(lambda: current() == 1), "svc v1 serves")
    check(wait_for(lambda: os.path.isdir(os.path.join(d.snap_dir, "svc-v1"))), "v1 has a snapshot folder")
    check(deploy("v2", {"handler": handler_so("echo")}).status == 201 and wait_for(lambda: current() == 2),
          "svc v2 serves")
    shutil.rmtree(os.path.join(d.snap_dir, "svc-v1"))
    n = snapshots_of(d, "svc")
    r = d.request("POST", "/admin/functions/svc/rollback", body=json.dumps({"version": 1}), headers=auth)
    check(r.status == 200 and r.json().get("current") == 1, "rollback to v1 whose snapshot was deleted: 200", r)
    # three at once need two new v1 instances, which cannot restore
    cold = lambda: d.metrics().get('thaw_instance_starts_total{function="svc",kind="cold"}', 0)
    c0 = cold()
    out = parallel(lambda k: d.request("GET", "/svc/sleep?ms=500&n=%d" % k, timeout=20), [(k,) for k in range(3)])
    check(all(e is None and r.status == 200 for r, e in out), "3 parallel requests to v1 all served", out)
    # the refusal names the folder and why (it logged an uninitialised
    # buffer before: "snapshot refused: \xef\xbf\xbd...")
    want = "svc: snapshot refused: %s: No such file or directory" % os.path.join(d.snap_dir, "svc-v1")
    check(want in d.logs(), "the refusal says which folder is missing", d.logs()[-2500:])
    check(cold() == c0 + 2, "v1's two new instances cold start", (c0, cold()))

shutil.rmtree(work, ignore_errors=True)
finish()
