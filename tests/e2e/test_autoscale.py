"""Autoscaling: from zero instances to 64 concurrent clients every request
succeeds and instances grow by restores; panic mode shows the burst; after
the load the function goes back to zero (bounded in time and count)."""
import threading
import time

from thawtest import Daemon, Load, check, finish, handler_so

FN = {"handler": handler_so("fault"), "timeout": 20, "instanceConcurrency": 1,
      "scalingConfig": {"minInstances": 0, "maxInstances": 12, "targetConcurrency": 1,
                        "stableWindowSeconds": 6, "scaleToZeroGracePeriodSeconds": 2,
                        "maxQueueLength": 1000}}


def gauge(d, name):
    return d.metrics().get('%s{function="burst"}' % name, 0)


def instances(d):
    m = d.metrics()
    return sum(m.get('thaw_instances{function="burst",state="%s"}' % s, 0) for s in ("starting", "idle", "busy"))


with Daemon({"burst": FN}) as d:
    # let the warm instance go: start from zero
    end = time.time() + 20
    while time.time() < end and instances(d) > 0:
        time.sleep(0.2)
    check(instances(d) == 0, "scaled to zero before the burst")

    lat, lock = [], threading.Lock()
    stop_at = time.time() + 6

    def timed(c):
        t0 = time.time()
        r = d.request("GET", "/burst/sleep?ms=50", conn=c)
        if r.status == 200:
            with lock:
                lat.append(time.time() - t0)
        return r

    peak = {"desired": 0, "panic": 0, "instances": 0}

    def watch():
        while time.time() < stop_at:
            m = d.metrics()
            peak["desired"] = max(peak["desired"], m.get('thaw_desired_instances{function="burst"}', 0))
            peak["panic"] = max(peak["panic"], m.get('thaw_panic_mode{function="burst"}', 0))
            peak["instances"] = max(peak["instances"], instances(d))
            time.sleep(0.25)
    load = Load(d, timed, workers=64, until=stop_at, timeout=30).start()
    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join()
    errors = [o for o in load.finish("the burst") if o != 200]
    lat.sort()
    p50 = lat[len(lat) // 2] if lat else 0
    p99 = lat[int(len(lat) * 0.99)] if lat else 0
    print("burst: %d requests, p50 %.1f ms, p99 %.1f ms, peak instances %d, peak desired %d" %
          (len(lat), p50 * 1e3, p99 * 1e3, peak["instances"], peak["desired"]))
    check(not errors, "every request of the burst succeeded", errors[:3])
    check(len(lat) > 200, "the burst ran (%d requests)" % len(lat))
    check(peak["instances"] >= 4, "instances grew under load (peak %d)" % peak["instances"])
    check(peak["desired"] >= 4, "autoscaler wanted more instances (peak %d)" % peak["desired"])
    check(peak["panic"] >= 1, "panic mode entered for the burst")
    m = d.metrics()
    check(m.get('thaw_instance_starts_total{function="burst",kind="restore"}', 0) >= 4, "scale-out by restore")
    end = time.time() + 25
    while time.time() < end and instances(d) > 0:
        time.sleep(0.5)
    check(instances(d) == 0, "back to zero after the grace period")

finish()
