"""Dev-pod proxy: /proxy/{port}/ reaches an allow-listed loopback port with
the token, streams, and is never an open proxy. Bodies up to 32 MiB pass;
hop-by-hop headers (also those the client's Connection header names) and
client copies of the proxy's own forwarding headers do not."""
import hashlib
import http.server
import json
import os
import socket
import threading
import time

from thawtest import Daemon, check, finish, free_port, handler_so


class Upstream(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for i in range(3):
                self.wfile.write(b"chunk%d\n" % i)
                self.wfile.flush()
                time.sleep(0.4)
            return
        n = int(self.headers.get("Content-Length") or 0)
        got = b""
        while len(got) < n:  # bounded by the declared length
            chunk = self.rfile.read(min(n - len(got), 1 << 20))
            if not chunk:
                break
            got += chunk
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                           "pairs": [[k.lower(), v] for k, v in self.headers.items()],
                           "body_len": len(got), "body_sha256": hashlib.sha256(got).hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


up_port, dead_port = free_port(), free_port()
srv = http.server.ThreadingHTTPServer(("127.0.0.1", up_port), Upstream)
threading.Thread(target=srv.serve_forever, daemon=True).start()

with Daemon({"echo": {"handler": handler_so("echo")}}, args=["--proxy-ports", "%d,%d" % (up_port, dead_port)]) as d:
    token = open(os.path.join(d.state_dir, "admin.token")).read().strip()
    auth = {"X-Thaw-Token": token}
    r = d.request("GET", "/proxy/%d/hello?x=1" % up_port)
    check(r.status == 401, "no token: 401", r)
    r = d.request("GET", "/proxy/%d/hello" % up_port, headers={"X-Thaw-Token": "nope"})
    check(r.status == 401, "wrong token: 401", r)
    r = d.request("GET", "/proxy/%d/hello?x=1" % up_port, headers=auth)
    check(r.status == 200, "allowed port with the token: 200", r)
    seen = r.json()
    check(seen["path"] == "/hello?x=1", "path below /proxy/{port} and query forwarded", seen)
    check(seen["headers"].get("x-forwarded-context") == "/proxy/%d" % up_port, "X-Forwarded-Context set", seen)
    check("x-thaw-token" not in seen["headers"] and "authorization" not in seen["headers"], "token not passed upstream", seen)
    check(seen["headers"].get("host") == "127.0.0.1:%d" % up_port, "upstream Host is loopback", seen)
    r = d.request("POST", "/proxy/%d/post" % up_port, body=b"payload", headers=dict(auth, Authorization="Bearer " + token))
    check(r.status == 200 and r.json()["body_len"] == 7, "POST with a body through the proxy", r)

    # bodies: 32 MiB (Function Compute's sync limit, maxRequestBodySize's
    # default) passes whole; one byte more is 413 at the headers; without
    # the token a large declared body is refused at the headers (401)
    big = bytes(range(256)) * (32 * 4096)
    try:
        r = d.request("POST", "/proxy/%d/big" % up_port, body=big, headers=auth, timeout=20)
    except OSError as e:  # refused mid-body: the daemon stops reading
        r = e
    seen = r.json() if getattr(r, "status", 0) == 200 else {}
    check(seen.get("body_len") == len(big) and
          seen.get("body_sha256") == hashlib.sha256(big).hexdigest(),
          "a 32 MiB body reaches the upstream whole", r)
    for what, head, want in (
            ("32 MiB + 1 with the token: 413", "X-Thaw-Token: %s\r\n" % token, b"HTTP/1.1 413"),
            ("32 MiB + 1 without the token: 401 before the body", "", b"HTTP/1.1 401")):
        t0 = time.time()
        out = d.raw(("POST /proxy/%d/big HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n"
                     % (up_port, head, len(big) + 1)).encode(), read_until_close=False)
        check(out.startswith(want) and time.time() - t0 < 3, what, out[:80])

    # forwarding headers are the proxy's own: a client's copies are dropped
    def through(extra_headers):
        """The upstream's view of a GET with these raw header lines."""
        out = d.raw(("GET /proxy/%d/h HTTP/1.1\r\nHost: x\r\nX-Thaw-Token: %s\r\n%s\r\n"
                     % (up_port, token, "".join(h + "\r\n" for h in extra_headers))).encode(), timeout=10)
        head, _, body = out.partition(b"\r\n\r\n")
        try:
            return [tuple(p) for p in json.loads(body)["pairs"]]
        except ValueError:
            return [("unparsable", out[:200].decode(errors="replace"))]

    def values(pairs, name):
        return [v for k, v in pairs if k == name]

    pairs = through(["X-Forwarded-For: 203.0.113.9", "X-Forwarded-Host: evil.example",
                     "X-Forwarded-Context: /evil", "x-forwarded-proto: gopher",
                     "X-ProxyContextPath: /evil", "x-fc-request-id: not a sane id!",
                     "Forwarded: for=203.0.113.9"])
    check(values(pairs, "x-forwarded-context") == ["/proxy/%d" % up_port] and
          values(pairs, "x-proxycontextpath") == ["/proxy/%d" % up_port],
          "client X-Forwarded-Context / X-ProxyContextPath dropped: the proxy's one each", pairs)
    check(len(values(pairs, "x-fc-request-id")) == 1 and "not a sane id!" not in values(pairs, "x-fc-request-id"),
          "a client's x-fc-request-id is not forwarded beside the proxy's", pairs)
    check(not [k for k, _ in pairs if k.startswith("x-forwarded-") and k != "x-forwarded-context"] and
          not values(pairs, "forwarded"), "client X-Forwarded-For/-Host/-Proto and Forwarded dropped", pairs)
    pairs = through(["x-fc-request-id: client-id-1"])
    check(values(pairs, "x-fc-request-id") == ["client-id-1"], "a sane client request id arrives once", pairs)

    # hop-by-hop: what the client's Connection header(s) name stays here
    cases = [
        (["Connection: close, X-Secret", "X-Secret: s3cret", "X-Kept: yes"], ["x-secret"]),
        (["Connection: keep-alive", "Connection: x-a ,\tX-B", "X-A: 1", "x-b: 2", "X-Kept: yes"], ["x-a", "x-b"]),
        (["Connection: X-SECRET", "x-secret: s3cret", "X-Kept: yes"], ["x-secret"]),
        (["Connection: TE, Trailer, Keep-Alive", "Keep-Alive: timeout=5", "TE: trailers", "X-Kept: yes"],
         ["keep-alive", "te", "trailer"]),
    ]
    for lines, gone in cases:
        pairs = through(lines)
        names = [k for k, _ in pairs]
        check(not [g for g in gone if g in names] and values(pairs, "x-kept") == ["yes"] and "connection" in names,
              "headers named by %r are not forwarded, others are" % "; ".join(l for l in lines if l.startswith("Connection")),
              pairs)

    # streaming: the first chunk arrives long before the upstream finishes
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    t0 = time.time()
    s.sendall(b"GET /proxy/%d/stream HTTP/1.1\r\nHost: x\r\nX-Thaw-Token: %s\r\n\r\n" % (up_port, token.encode()))
    first = b""
    while b"chunk0" not in first:
        b = s.recv(4096)
        if not b:
            break
        first += b
    t_first = time.time() - t0
    rest = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        rest += b
    t_all = time.time() - t0
    s.close()
    check(b"chunk0" in first and t_first < 0.35, "streamed: first chunk after %.2f s" % t_first, first)
    check(b"chunk2" in first + rest and t_all > 0.7, "streamed: the rest follows (%.2f s)" % t_all)

    # never an open proxy
    r = d.request("GET", "/proxy/%d/x" % (up_port + 1 if up_port + 1 != dead_port else up_port + 2), headers=auth)
    check(r.status == 403, "port not in the allow-list: 403", r)
    for path in ["/proxy/%d/../admin/functions" % up_port, "/proxy/%d/%%2e%%2e/x" % up_port,
                 "/proxy/%d/a%%2Fb" % up_port, "/proxy/%d/a%%5cb" % up_port, "/proxy/99999/x",
                 "/proxy/0/x", "/proxy/abc/x", "/proxy//x"]:
        out = d.raw(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Thaw-Token: " + token.encode() + b"\r\n\r\n",
                    read_until_close=False)
        check(out.startswith(b"HTTP/1.1 400"), "path trick refused: " + path, out[:60])
    out = d.raw(b"GET http://127.0.0.1:%d/hello HTTP/1.1\r\nHost: x\r\nX-Thaw-Token: %s\r\n\r\n" % (up_port, token.encode()),
                read_until_close=False)
    check(out.startswith(b"HTTP/1.1 400"), "absolute-form target refused", out[:60])
    out = d.raw(b"GET /proxy/%d/hello HTTP/1.1\r\nHost: evil.example:80\r\nX-Thaw-Token: %s\r\nConnection: close\r\n\r\n" % (up_port, token.encode()))
    check(out.startswith(b"HTTP/1.0 200") or out.startswith(b"HTTP/1.1 200"), "client Host header does not pick the target", out[:60])
    r = d.request("GET", "/proxy/%d/x" % dead_port, headers=auth)
    check(r.status == 502, "allowed port with nothing listening: 502", r)
    check(d.request("GET", "/healthz").status == 200, "daemon fine after the proxy tests")

srv.shutdown()
finish()
