"""Spare instances (scalingConfig.spareInstances): once a function with a
snapshot has traffic, a restored copy waits idle ahead of demand; a request
that needs another instance takes it (no start on its path) and the pool
restores the next one; after the grace period without traffic the spares go.
Needs CRIU (restores)."""
import threading
import time

from thawtest import Daemon, check, finish, handler_so, skip, wait_for

FN = {"handler": handler_so("fault"), "timeout": 20, "instanceConcurrency": 1,
      "scalingConfig": {"maxInstances": 4, "spareInstances": 1,
                        "scaleToZeroGracePeriodSeconds": 4, "stableWindowSeconds": 6}}


def metric(d, name, **labels):
    lab = ",".join('%s="%s"' % kv for kv in [("function", "fn")] + sorted(labels.items()))
    return d.metrics().get("%s{%s}" % (name, lab), 0)


with Daemon({"fn": FN}) as d:
    if "snapshots on" not in d.logs():
        skip("skip: CRIU cannot run here: no snapshots, so no spares (restores)")
    # test_no_spare_before_traffic
    time.sleep(1.5)
    check(metric(d, "thaw_instances", state="spare") == 0, "no spare before the first request")
    r = d.request("GET", "/fn/id")
    check(r.status == 200, "first request", r)
    # test_spare_after_traffic
    check(wait_for(lambda: metric(d, "thaw_instances", state="spare") == 1, 10),
          "a spare instance is restored after traffic", d.metrics())
    restores = metric(d, "thaw_instance_starts_total", kind="restore")

    # test_request_takes_the_spare: two at once on instanceConcurrency 1: the
    # second takes the spare, and a new spare is restored after
    out, errors = [], []

    def call(n):
        try:
            out.append(d.request("GET", "/fn/sleep?ms=400&n=%d" % n, timeout=20))
        except Exception as e:
            errors.append(repr(e))
    ts = [threading.Thread(target=call, args=(n,)) for n in range(2)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    took = time.time() - t0
    check(not errors and len(out) == 2 and all(r.status == 200 for r in out), "both answered", out or errors)
    check(len({r.json()["instance_id"] for r in out if r.status == 200}) == 2, "on two instances")
    check(metric(d, "thaw_spares_taken_total") == 1, "one request took the spare", d.metrics())
    check(took < 0.8 + 0.5, "they ran side by side (%.2f s for 2 x 0.4 s)" % took)
    check(wait_for(lambda: metric(d, "thaw_instances", state="spare") == 1, 10),
          "the next spare was restored", d.metrics())
    check(metric(d, "thaw_instance_starts_total", kind="restore") == restores + 1,
          "exactly one restore: the new spare, after the request", d.metrics())

    # test_spares_go_after_grace
    check(wait_for(lambda: metric(d, "thaw_instances", state="spare") == 0, 20),
          "no spare after the grace period without traffic", d.metrics())
finish()
