"""thawtest's own guarantees, against a loopback server that answers badly:
  - Load records every failed request, of any exception type: a truncated
    body (IncompleteRead) and a garbage status line (BadStatusLine) are not
    OSError, and a load thread that caught only OSError died of them
    silently, so "no request failed" passed (shown below with that loop);
  - Load.finish fails its check when a worker died or sent nothing;
  - parallel() returns each thread's exception instead of losing it."""
import http.client
import socket
import threading

import thawtest
from thawtest import Load, check, finish, parallel

ANSWERS = {
    b"/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
    b"/garbage": b"HELLO THERE\r\n\r\n",
}


def serve(srv):
    while True:
        try:
            c, _ = srv.accept()
        except OSError:
            return
        threading.Thread(target=answer, args=(c,), daemon=True).start()


def answer(c):
    try:
        while True:  # keep-alive until the answer breaks the connection
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = c.recv(4096)
                if not chunk:
                    return
                req += chunk
            path = req.split(b" ")[1]
            c.sendall(ANSWERS.get(path, ANSWERS[b"/ok"]))
            if path != b"/ok":
                return
    finally:
        c.close()


srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
threading.Thread(target=serve, args=(srv,), daemon=True).start()


class Fake:
    """Enough of thawtest.Daemon for Load: connect() and request()."""
    port = srv.getsockname()[1]
    connect = thawtest.Daemon.connect
    request = thawtest.Daemon.request


d = Fake()


def expect_check_fails(fn, what):
    """Runs fn, which must record exactly one failed check; removes it."""
    before = len(thawtest.failures)
    fn()
    failed = thawtest.failures[before:]
    del thawtest.failures[before:]
    check(len(failed) == 1, what, failed)


for path, exc in ((b"/short", "IncompleteRead"), (b"/garbage", "BadStatusLine")):
    # the old load loop: catches OSError only; its thread dies of exc, and
    # the list of failures it was to fill stays empty
    old_failures, died = [], []

    def old_loop():
        c = d.connect()
        for _ in range(5):
            try:
                r = d.request("GET", path.decode(), conn=c)
                if r.status != 200:
                    old_failures.append(r)
            except OSError as e:
                old_failures.append(repr(e))
                c = d.connect()
    t = threading.Thread(target=old_loop)
    orig = threading.excepthook
    threading.excepthook = lambda a: died.append(a.exc_type.__name__)
    t.start()
    t.join()
    threading.excepthook = orig
    check(not old_failures and died == [exc],
          "the old OSError-only loop loses %s: its thread died, 'no request failed' held" % exc, (old_failures, died))

    load = Load(d, lambda c, p=path: d.request("GET", p.decode(), conn=c), workers=2)
    load.start()
    import time
    time.sleep(0.2)
    outcomes = load.finish("bad answers")
    bad = [o for o in outcomes if o != 200]
    check(bad and all(isinstance(o, str) and o.startswith(exc) for o in bad),
          "Load records every %s as a failed request (%d of them)" % (exc, len(bad)), outcomes[:3])

# a worker that dies (here: its connect raises) fails Load.finish's check
class Dead(Fake):
    def connect(self, timeout=10):
        raise RuntimeError("no connection for you")


load = Load(Dead(), lambda c: None, workers=1).start()
expect_check_fails(lambda: load.finish("dead worker"), "Load.finish fails when a worker died")
out = load.outcomes
check(out and "worker 0 died: RuntimeError" in out[0], "the death is recorded", out)

# parallel(): each thread's exception comes back
res = parallel(lambda p: d.request("GET", p), [("/ok",), ("/short",)])
check(res[0][1] is None and res[0][0].status == 200, "parallel: the good call's response", res)
check(isinstance(res[1][1], http.client.IncompleteRead), "parallel: the bad call's exception", res)

srv.close()
finish()
