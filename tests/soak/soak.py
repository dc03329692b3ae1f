"""Soak: steady request rate for a bounded time; no error, daemon RSS flat."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from thawtest import Daemon, handler_so  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "300"))
RATE = int(os.environ.get("SOAK_RATE", "400"))  # requests/s over all clients
GROWTH_KB = int(os.environ.get("SOAK_RSS_GROWTH_KB", "8192"))
CLIENTS = 8


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


fns = {"echo": {"handler": handler_so("echo"), "instanceConcurrency": 4},
       "fault": {"handler": handler_so("fault"), "timeout": 2,
                 "scalingConfig": {"maxInstances": 4, "stableWindowSeconds": 6,
                                   "scaleToZeroGracePeriodSeconds": 5}}}
with Daemon(fns, args=["--no-access-log"]) as d:
    errors, counts, lock = [], [0], threading.Lock()
    end = time.time() + SECONDS
    period = CLIENTS / RATE

    def client(i):
        c = d.connect()
        n = 0
        nxt = time.time()
        while time.time() < end:
            path = ["/echo/x", "/fault/sleep?ms=5", "/fault/random"][n % 3]
            try:
                r = d.request("POST", path, body=b"soak %d" % n, conn=c)
                if r.status != 200:
                    with lock:
                        errors.append((path, r.status, r.body[:100]))
            except OSError as e:
                with lock:
                    errors.append((path, repr(e)))
                c.close()
                c = d.connect()
            n += 1
            nxt += period
            time.sleep(max(0, nxt - time.time()))
        with lock:
            counts[0] += n
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    samples = []
    while time.time() < end:
        samples.append((time.time(), rss_kb(d.proc.pid)))
        time.sleep(5)
    for t in threads:
        t.join()
    first = [kb for t, kb in samples if t < samples[0][0] + 60] or [samples[0][1]]
    last = [kb for t, kb in samples if t > samples[-1][0] - 60] or [samples[-1][1]]
    growth = max(last) - max(first)
    print("soak: %d s, %d requests, %d errors, daemon RSS first minute max %d kB, last minute max %d kB (growth %d kB)"
          % (SECONDS, counts[0], len(errors), max(first), max(last), growth))
    for e in errors[:5]:
        print("error:", e)
    ok = not errors and growth <= GROWTH_KB
    print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
    sys.exit(0 if ok else 1)
