"""A client that goes away cancels its running request: the handler sees
thaw_cancelled() (and thaw_time_left_ms() == 0) and can stop, so the
instance is free again at once instead of finishing work nobody reads;
/metrics counts such requests."""
import re
import socket
import time

from thawtest import Daemon, check, finish, handler_so, wait_for

for conc in (1, 4):
    fn = {"handler": handler_so("fault"), "timeout": 60, "instanceConcurrency": conc,
          "scalingConfig": {"maxInstances": 1}}
    with Daemon({"w": fn}) as d:
        r = d.request("GET", "/w/work?ms=200")
        check(r.status == 200 and r.json() == {"worked_ms": 200, "cancelled": False},
              "conc %d: work a client waits for is done whole" % conc, r)
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"GET /w/work?ms=20000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        s.close()  # gone before the answer
        said = wait_for(lambda: re.search(r"work cancelled after (\d+) ms", d.logs()), 10)
        check(said and int(said.group(1)) < 5000,
              "conc %d: the handler saw the cancel and stopped early" % conc, said and said.group(0))
        t0 = time.time()
        r = d.request("GET", "/w/work?ms=10", timeout=30)
        took = time.time() - t0
        check(r.status == 200 and took < 3, "conc %d: the next request is served at once (%.2f s)" % (conc, took), r)
        n = d.metrics().get('thaw_requests_cancelled_total{function="w"}')
        check(n == 1, "conc %d: /metrics counts the cancelled request" % conc, n)

finish()
