"""A small custom-runtime server for tests/e2e/test_custom.py (stdlib only).

Listens on FC_SERVER_PORT (HTTP/1.1, kept-alive connections, one thread
per connection) and reports what it saw, so the test can check what thaw
forwards, the hooks it calls and the namespace each copy runs in.
MODE=noport never opens its port; MODE=unhealthy answers /health 500.
"""
import http.server
import json
import os
import random
import select
import socket
import sys
import threading
import time
import urllib.parse

PORT = int(os.environ.get("FC_SERVER_PORT", "9000"))
MODE = os.environ.get("MODE", "")
state = {"initialized": False, "restored": 0, "prefreeze": 0, "served": 0,
         "hook_before_first": None, "cancelled": []}
lock = threading.Lock()


def netns():
    return os.stat("/proc/self/ns/net").st_ino


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stdout.write("req %s\n" % (fmt % args))
        sys.stdout.flush()

    def send(self, code, obj, ctype="application/json"):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-server-pid", str(os.getpid()))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def route(self):
        path, _, query = self.path.partition("?")
        body = self.body()
        if path == "/health":
            return self.send(500 if MODE == "unhealthy" else 200, {"ok": MODE != "unhealthy"})
        if path == "/initialize":
            state["initialized"] = True
            return self.send(200, {"initialized": True})
        if path == "/thaw/restored":
            with lock:
                state["restored"] += 1
                if state["hook_before_first"] is None:
                    state["hook_before_first"] = state["served"] == 0
            random.seed()  # a restored copy must not repeat its siblings' values
            return self.send(200, {"reseeded": True})
        if path == "/pre-stop":
            print("pre-stop called", flush=True)
            return self.send(200, {})
        if path == "/pre-freeze":
            state["prefreeze"] += 1
            return self.send(200, {})
        with lock:
            state["served"] += 1
            if state["hook_before_first"] is None:
                state["hook_before_first"] = False
        if path == "/crash":
            os._exit(3)
        if path == "/garbage":
            self.wfile.write(b"this is not HTTP\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if path == "/sleep":
            secs = float(urllib.parse.parse_qs(query).get("s", ["1"])[0])
            end = time.time() + secs
            # notice a client that went away (thaw closes the connection)
            while time.time() < end:
                r, _, _ = select.select([self.connection], [], [], 0.05)
                if r and not self.connection.recv(1, socket.MSG_PEEK):
                    with lock:
                        state["cancelled"].append(query)
                    self.close_connection = True
                    return
            return self.send(200, {"slept": secs, "netns": netns(), "port": PORT,
                                   "random": random.random(), "restored": state["restored"]})
        if path == "/state":
            return self.send(200, dict(state, pid=os.getpid(), netns=netns()))
        if path == "/events":  # server-sent events, the last one 1.5 s after the first
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i, ev in enumerate((b"data: first\n\n", b"data: last\n\n")):
                if i:
                    time.sleep(1.5)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for part in (b"one ", b"two ", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send(200, {
            "method": self.command, "path": path, "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("latin-1"), "pid": os.getpid(), "netns": netns(),
            "port": PORT, "random": random.random(), "initialized": state["initialized"],
            "restored": state["restored"],
        })

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = route


if __name__ == "__main__":
    print("server pid %d port %d mode %r" % (os.getpid(), PORT, MODE), flush=True)
    if MODE == "noport":
        while True:
            time.sleep(3600)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H)
    srv.daemon_threads = True
    srv.serve_forever()
