"""Custom runtime (runtime: custom): any HTTP server command as a function.

Uses tests/e2e/custom/server.py (stdlib Python) as the server: what thaw
forwards, the start sequence (port, health check, initializer), snapshots
and restores into fresh network namespaces with the restore hook, four
copies at once on the same port, deadline 504 + recycle, 502 for a crash
or a garbage answer (only those requests), a client that goes away closes
the forwarded request, a server that never opens its port or fails its
health check fails init with a clear message in /readyz.
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thawtest import Daemon, check, finish, skip, wait_for  # noqa: E402

PY = "/usr/bin/python3"
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom", "server.py")


def fn(**extra):
    f = {"runtime": "custom",
         "customRuntimeConfig": {"command": [PY, SERVER], "port": 9000},
         "customHealthCheckConfig": {"httpGetUrl": "/health", "periodSeconds": 1},
         "instanceLifecycleConfig": {"initializer": {"handler": "init", "timeout": 5}},
         "timeout": 5}
    f.update(extra)
    return f


def snapshots_work():
    crit = "/usr/local/lib/thaw/criu/criu"
    if not os.access(crit, os.X_OK):
        return False
    import subprocess
    out = subprocess.run([crit, "--version"], capture_output=True, text=True).stdout
    return "Version: 4.1" not in out and "Version: 3." not in out


def check_stream(d):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    t0 = time.time()
    s.sendall(b"GET /cf/events HTTP/1.1\r\nHost: x\r\n\r\n")
    got, first_at = b"", None
    while b"0\r\n\r\n" not in got and time.time() - t0 < 8:
        piece = s.recv(65536)
        if not piece:
            break
        got += piece
        if first_at is None and b"data: first" in got:
            first_at = time.time() - t0
    total = time.time() - t0
    s.close()
    check(b"transfer-encoding: chunked" in got.lower() and b"text/event-stream" in got,
          "an event stream is relayed chunked", got[:300])
    check(first_at is not None and first_at < 1.0 and b"data: last" in got and total >= 1.4,
          "a streamed response arrives in pieces (first event %.2f s, all %.2f s)"
          % (first_at or -1, total), got[-200:])


def test_forwarding_and_restore(d):
    r = d.request("POST", "/cf/a/b?x=1&y=2", b"hello",
                  headers={"X-Test": "1", "Connection": "keep-alive, X-Drop", "X-Drop": "no",
                           "x-fc-account-id": "forged", "x-fc-request-id": "req-42"})
    check(r.status == 200, "a deployed custom function answers", r)
    j = r.json()
    check((j["method"], j["path"], j["query"], j["body"]) == ("POST", "/a/b", "x=1&y=2", "hello"),
          "method, path, query and body forwarded", j)
    h = j["headers"]
    check(h.get("x-test") == "1", "client headers forwarded", h)
    check("x-drop" not in h and "connection" not in h,
          "hop-by-hop headers (and those Connection names) removed", h)
    check("x-fc-account-id" not in h, "a client's x-fc-* header is not forwarded", h)
    check(h.get("x-fc-request-id") == "req-42", "x-fc-request-id set", h)
    check(h.get("x-fc-function-name") == "cf" and h.get("x-fc-function-memory") == "512",
          "FC headers added", h)
    check(r.header("x-server-pid") is not None, "server's response headers come back", r.headers)
    check(j["initialized"], "initializer POST /initialize ran before the first request", j)
    check(j["port"] == 9000, "server got FC_SERVER_PORT", j)
    logs = d.logs()
    check("snapshot of pid" in logs, "the warmed server was checkpointed", logs[-2000:])
    check(j["restored"] == 1, "the serving copy is a restore and got POST /thaw/restored", j)
    st = d.request("GET", "/cf/state").json()
    check(st["hook_before_first"] is True, "restore hook came before the first request", st)
    check(st["prefreeze"] == 1, "GET /pre-freeze was called before the dump", st)
    r = d.request("GET", "/cf/chunked")
    check(r.status == 200 and r.body == b"one two three", "a chunked response is relayed", r)
    # a streamed response arrives in pieces: the first event before the last
    # is sent (twice: with two loops, one of them likely crosses loops)
    for _ in range(2):
        check_stream(d)
    r = d.request("GET", "/cf/x")
    check(r.status == 200, "the next request after a stream is served", r)
    r = d.request("GET", "/cf/garbage")
    check(r.status == 502 and b"malformed HTTP response" in r.body, "garbage answer gives 502", r)
    r = d.request("GET", "/cf/x")
    check(r.status == 200, "the next request after garbage is served", r)


def test_four_copies_from_zero(d):
    # scale to zero (grace 0): the function has no instance left
    def at_zero():
        m = d.metrics()
        return all(m.get('thaw_instances{function="cf",state="%s"}' % s) == 0
                   for s in ("starting", "idle", "busy"))
    ok = wait_for(at_zero, secs=20, step=0.3)
    check(ok, "the function scaled to zero")
    logs = d.logs()
    check("pre-stop called" in logs and "stopped after its preStop hook" in logs,
          "a scaled-in instance got GET /pre-stop before it stopped", logs[-1500:])
    out = [None] * 4

    def call(i):
        try:
            out[i] = d.request("GET", "/cf/sleep?s=1.5", timeout=20)
        except OSError as e:
            out[i] = e
    ts = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = all(getattr(r, "status", None) == 200 for r in out)
    check(ok, "four concurrent requests at zero all answered", out)
    if not ok:
        return
    js = [r.json() for r in out]
    check(len({j["netns"] for j in js}) == 4, "served by four copies, each in its own netns", js)
    check({j["port"] for j in js} == {9000}, "all on the same port", js)
    check(all(j["restored"] == 1 for j in js), "all four are restores that got the hook", js)
    check(len({j["random"] for j in js}) == 4, "copies give different random values", js)
    # criu workers with a network namespace made ahead (docs/criu.md) exist
    # from the first restore of a custom runtime on: some of these used one
    ahead = [l for l in d.logs().splitlines() if "cf: instance" in l and "criu started ahead" in l]
    check(len(ahead) >= 1, "restores served by a criu started ahead, each in its own netns",
          d.logs()[-2000:])


def test_deadline_crash_cancel(d):
    r = d.request("GET", "/cf2/sleep?s=30", headers={"X-Timeout": "1"}, timeout=20)
    check(r.status == 504, "a request past its deadline gets 504", r)
    check(wait_for(lambda: "recycled after a request passed its deadline" in d.logs(), secs=5),
          "the instance was recycled")
    r = d.request("GET", "/cf2/x", timeout=20)
    check(r.status == 200, "the function serves again after the recycle", r)
    # a stream past its deadline: the client's connection closes after the first event
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"GET /cf2/events HTTP/1.1\r\nHost: x\r\nX-Timeout: 1\r\n\r\n")
    got, t0 = b"", time.time()
    while time.time() - t0 < 8:
        piece = s.recv(65536)
        if not piece:
            break
        got += piece
    s.close()
    check(b"data: first" in got and b"data: last" not in got and time.time() - t0 < 5,
          "a stream past its deadline: the connection closes after what was sent", got[-200:])
    r = d.request("GET", "/cf2/x", timeout=20)
    check(r.status == 200, "the function serves again after a stream's deadline", r)
    # cancel: the client goes away, the server sees the forwarded request close
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"GET /cf2/sleep?s=4&marker=gone HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.5)
    s.close()
    seen = wait_for(lambda: "s=4&marker=gone" in
                    json.dumps(d.request("GET", "/cf2/state").json()["cancelled"]), secs=6, step=0.2)
    check(seen, "a client that went away closed the forwarded request (the server saw it)")
    # crash: only the crashing request fails, a concurrent one on another copy is fine
    res = {}

    def slow():
        res["slow"] = d.request("GET", "/cf/sleep?s=1", timeout=20)
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    r = d.request("GET", "/cf/crash", timeout=20)
    t.join()
    check(r.status == 502, "a crashing server gives 502", r)
    check(res["slow"].status == 200, "a request on another copy is not hurt by the crash", res)
    r = d.request("GET", "/cf/x", timeout=20)
    check(r.status == 200, "the function serves after the crash", r)


def test_thaw_deploy(d):
    """thaw deploy of a custom function's folder: its image carries the
    server's files; the deployed version serves from a snapshot."""
    import shutil
    import subprocess
    import tempfile
    from thawtest import THAW, write_function
    root = tempfile.mkdtemp(prefix="thaw-custom-deploy-")
    try:
        f = fn()
        f["customRuntimeConfig"] = {"command": [PY, "server.py"], "port": 9000}
        src = write_function(root, "deployed", f)
        shutil.copy(SERVER, src)
        r = subprocess.run([THAW, "deploy", src, "--url", "http://127.0.0.1:%d" % d.port,
                            "--state-dir", d.state_dir, "--timeout", "60"],
                           capture_output=True, text=True, timeout=90)
        check(r.returncode == 0 and "serves" in r.stdout, "thaw deploy of a custom function", r)
        r = d.request("GET", "/deployed/hello?x=1")
        check(r.status == 200 and r.json()["path"] == "/hello" and r.json()["restored"] == 1,
              "the deployed custom function answers from a restored copy", r)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_failed_starts():
    with Daemon({"noport": fn(environmentVariables={"MODE": "noport"},
                              customHealthCheckConfig={"periodSeconds": 1, "failureThreshold": 2}),
                 "sick": fn(environmentVariables={"MODE": "unhealthy"},
                            customHealthCheckConfig={"httpGetUrl": "/health", "periodSeconds": 1,
                                                     "failureThreshold": 2})},
                wait_ready=False) as d:
        def errors():
            r = d.request("GET", "/readyz")
            f = r.json()["functions"]
            if "error" in f["noport"] and "error" in f["sick"]:
                return r
        r = wait_for(errors, secs=20, step=0.2)
        check(r is not None and r.status == 503, "readyz 503 with servers that failed to start", r)
        if r is None:
            return
        f = r.json()["functions"]
        check("did not open port 9000 in 2 s" in f["noport"]["error"],
              "a server that never opens its port: a clear message", f)
        check("health check GET /health failed 2 times: answered 500" in f["sick"]["error"],
              "a failing health check: a clear message", f)
        r = d.request("GET", "/noport/x")
        check(r.status == 503 and b"did not open port" in r.body, "its requests get 503 with it", r)


def main():
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    if not snapshots_work():
        skip("needs CRIU >= 4.2 at /usr/local/lib/thaw/criu/criu (make deps)")
    fns = {"cf": fn(scalingConfig={"maxInstances": 4, "scaleToZeroGracePeriodSeconds": 0,
                                    "stableWindowSeconds": 6},
                    instanceLifecycleConfig={"initializer": {"handler": "init", "timeout": 5},
                                             "preStop": {"handler": "stop", "timeout": 2}}),
           "cf2": fn(scalingConfig={"maxInstances": 1})}
    with Daemon(fns, ready_timeout=60, threads=2) as d:
        test_forwarding_and_restore(d)
        test_four_copies_from_zero(d)
        test_deadline_crash_cancel(d)
        test_thaw_deploy(d)
    test_failed_starts()
    finish()


if __name__ == "__main__":
    main()
