"""thaw serve's options and fc.yaml settings that docs/ promised with no
test (issue 19, item 9): what headers reach a handler, --no-snapshots,
--max-header-bytes, --body-timeout, --idle-timeout, fc.yaml `snapshot: false`.
Each says what the option does by a number it changes, not only that the
daemon starts with it."""
import socket
import time

from thawtest import Daemon, check, criu_works, finish, handler_so, skip_part, wait_for

ECHO = {"handler": handler_so("echo")}
FAULT = {"handler": handler_so("fault"), "timeout": 10, "scalingConfig": {"maxInstances": 3},
         "warmup": {"method": "GET", "path": "/random"}}


def starts(d, fn, kind):
    return d.metrics().get('thaw_instance_starts_total{function="%s",kind="%s"}' % (fn, kind), 0)


# --- what reaches the handler (docs/http-api.md): hop-by-hop headers and
# client x-fc-* other than the request id are dropped; the rest arrive
with Daemon({"echo": ECHO}, args=["--max-header-bytes", "1024", "--body-timeout", "400",
                                  "--idle-timeout", "500"]) as d:
    sent = {"Connection": "keep-alive", "Keep-Alive": "timeout=5", "TE": "trailers", "Upgrade": "h2c",
            "x-fc-function-name": "evil", "X-FC-Whatever": "1", "x-fc-request-id": "client-id-1",
            "X-Custom": "kept", "Content-Type": "text/plain"}
    r = d.request("POST", "/echo/json", b"body", sent)
    got = r.json().get("headers", {}) if r.status == 200 else {}
    for h in ("connection", "keep-alive", "te", "upgrade", "content-length", "x-fc-function-name",
              "x-fc-whatever"):
        check(h not in got, "header %s does not reach the handler" % h, got)
    check(got.get("x-custom") == "kept" and got.get("content-type") == "text/plain",
          "other headers reach the handler unchanged", got)
    check(r.status == 200 and r.json().get("request_id") == "client-id-1" == r.header("x-fc-request-id"),
          "a sane client request id is the handler's and the answer's", r)
    out = d.raw(b"POST /echo/json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
                read_until_close=False, timeout=3)
    check(out.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in out.split(b"\r\n\r\n", 1)[-1].lower(),
          "transfer-encoding does not reach the handler", out[-300:])

    # --max-header-bytes 1024: 431 past it, served below it
    out = d.raw(b"GET /echo/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1100 + b"\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 431"), "--max-header-bytes 1024: 1.1 kB of headers is a 431", out[:80])
    out = d.raw(b"GET /echo/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 700 + b"\r\n\r\n", read_until_close=False)
    check(out.startswith(b"HTTP/1.1 200"), "--max-header-bytes 1024: 700 bytes are served", out[:80])

    # --body-timeout 400: a body that stops coming is a 408 after ~0.4 s
    t0 = time.time()
    out = d.raw(b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", timeout=5)
    took = time.time() - t0
    check(out.startswith(b"HTTP/1.1 408") and 0.3 < took < 2.5,
          "--body-timeout 400: a stalled body is a 408 in %.2f s" % took, out[:80])

    # --idle-timeout 500: an idle keep-alive connection is closed after ~0.5 s
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(4096)
    t0 = time.time()
    try:
        rest = s.recv(4096)  # b"" when the server closes
    except socket.timeout:
        rest = None
    took = time.time() - t0
    s.close()
    check(first.startswith(b"HTTP/1.1 200") and rest == b"" and 0.3 < took < 3,
          "--idle-timeout 500: the idle connection closed after %.2f s" % took, (first[:40], rest))

# --- --no-snapshots, and fc.yaml snapshot: false, beside a function that
# snapshots; what snapshots means here depends on CRIU (probed)
no_criu = criu_works()
with Daemon({"fault": FAULT}, args=["--no-snapshots"]) as d:
    check("snapshots off: --no-snapshots" in d.logs(), "--no-snapshots: said in one line", d.logs()[-1500:])
    out = [d.request("GET", "/fault/sleep?ms=300&n=%d" % n, timeout=20) for n in range(1)]
    check(all(r.status == 200 for r in out), "serves", out)
    check(starts(d, "fault", "restore") == 0 and "snapshot of pid" not in d.logs(),
          "--no-snapshots: no snapshot, no restore", d.metrics())

if no_criu:
    skip_part("fc.yaml snapshot: false against a function that snapshots: " + no_criu)
else:
    with Daemon({"fault": FAULT, "nosnap": dict(FAULT, snapshot=False)}) as d:
        check(wait_for(lambda: starts(d, "fault", "restore") >= 1), "the default function is restored from its snapshot",
              d.metrics())
        r = d.request("GET", "/nosnap/id")
        check(r.status == 200, "snapshot: false serves", r)
        check(starts(d, "nosnap", "restore") == 0 and starts(d, "nosnap", "cold") >= 1 and
              "nosnap: snapshot of pid" not in d.logs(),
              "snapshot: false: cold starts only, no snapshot taken", d.metrics())

finish()
