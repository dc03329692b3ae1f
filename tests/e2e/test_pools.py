"""Pools are per function, not per event loop: with --threads 2, a function
with maxInstances 1 never runs two instances, an idle instance serves the
connections of every loop, and the queue is one queue for the daemon."""
import threading
import time

from thawtest import Daemon, check, finish, handler_so

ONE = {"handler": handler_so("fault"), "timeout": 30, "instanceConcurrency": 1,
       "snapshot": False,
       "scalingConfig": {"minInstances": 1, "maxInstances": 1, "maxQueueLength": 100}}


def live(d, fn):
    m = d.metrics()
    return sum(m.get('thaw_instances{function="%s",state="%s"}' % (fn, s), 0)
               for s in ("starting", "idle", "busy"))


with Daemon({"one": ONE}, threads=2) as d:
    # test_one_idle_instance_serves_every_loop: 40 fresh connections land on
    # both loops (SO_REUSEPORT); every one is served by the one instance
    ids = set()
    for _ in range(40):
        c = d.connect()
        r = d.request("GET", "/one/id", conn=c)
        c.close()
        ids.add(r.json()["instance_id"] if r.status == 200 else "status %d" % r.status)
    check(len(ids) == 1, "one instance served 40 connections spread over 2 loops", sorted(ids))
    check(d.metrics().get('thaw_instance_starts_total{function="one",kind="cold"}', 0) == 1,
          "it is the only instance ever started")

    # test_max_instances_1_never_runs_two: 8 concurrent 300 ms requests,
    # each on its own connection; one instance serves them one after another
    results, errors, lock = [], [], threading.Lock()
    peak = [0]
    done = threading.Event()

    def client(i):
        try:
            c = d.connect(timeout=30)
            r = d.request("GET", "/one/sleep?ms=300&n=%d" % i, conn=c, timeout=30)
            c.close()
            with lock:
                results.append((r.status, r.json().get("instance_id") if r.status == 200 else r))
        except Exception as e:  # any failure is this test's, not a silent thread death
            with lock:
                errors.append(repr(e))

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], live(d, "one"))
            time.sleep(0.05)

    w = threading.Thread(target=watch)
    w.start()
    t0 = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    took = time.time() - t0
    done.set()
    w.join()
    check(not errors, "no client failed", errors[:3])
    check(len(results) == 8 and all(s == 200 for s, _ in results), "all 8 answered 200", results)
    check(len({i for _, i in results}) == 1, "all 8 ran on the same instance", results)
    check(peak[0] == 1, "never more than 1 instance live (peak %d)" % peak[0])
    check(took >= 8 * 0.3 - 0.05, "the requests ran one after another (%.2f s for 8 x 0.3 s)" % took)
    check(d.metrics().get('thaw_instance_starts_total{function="one",kind="cold"}', 0) == 1,
          "still only one instance ever started")
finish()
