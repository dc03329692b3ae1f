"""Harness for end-to-end tests: starts the real daemon on a free loopback
port with its own state and functions folders, and talks HTTP to it.

    with Daemon({"echo": {"handler": handler_so("echo")}}) as d:
        r = d.request("POST", "/echo/", b"hi")
        check(r.status == 200, "echo answers", r)

Each test file is one process; it exits 0 (pass), 1 (fail) or 77 (skip).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import http.client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("THAW_BUILD", os.path.join(ROOT, "build")))
THAW = os.path.join(BUILD, "thaw")
# make asan builds into build-asan: ASan turns a SIGSEGV into exit status 1
SANITIZED = os.path.basename(BUILD).startswith("build-asan")

failures = []


def check(cond, what, detail=None):
    """Records a failed expectation; the test continues so one run shows all."""
    if cond:
        print("ok   " + what)
    else:
        print("FAIL " + what + ("" if detail is None else ": " + repr(detail)[:400]))
        failures.append(what)


def finish():
    print("%d checks failed" % len(failures) if failures else "all checks passed")
    sys.exit(1 if failures else 0)


def skip(why):
    print(why)
    sys.exit(77)


def wait_for(pred, secs=20, step=0.05):
    """Polls pred until it returns something true (returned), at most secs."""
    end = time.time() + secs
    while True:
        v = pred()
        if v or time.time() >= end:
            return v
        time.sleep(step)


def handler_so(name):
    return os.path.join(BUILD, "handlers", name + ".so")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def yaml_value(v, indent):
    pad = " " * indent
    if isinstance(v, dict):
        return "\n" + "".join("%s%s:%s\n" % (pad, k, yaml_value(x, indent + 2).rstrip("\n")
                                             if isinstance(x, (dict, list)) else " " + yaml_value(x, 0))
                              for k, x in v.items())
    if isinstance(v, list):
        return "\n" + "".join("%s- %s\n" % (pad, json.dumps(x)) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def write_function(root, name, fields):
    """Writes root/name/fc.yaml from a dict (name added); returns the folder."""
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    body = {"name": name}
    body.update(fields)
    with open(os.path.join(d, "fc.yaml"), "w") as f:
        for k, v in body.items():
            if isinstance(v, (dict, list)):
                f.write("%s:%s\n" % (k, yaml_value(v, 2).rstrip("\n")))
            else:
                f.write("%s: %s\n" % (k, yaml_value(v, 0)))
    return d


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:200])


class Daemon:
    """The daemon with functions {name: fc.yaml fields}; extra args appended."""

    def __init__(self, functions=None, args=(), threads=1, ready_timeout=30, wait_ready=True, env=None):
        self.tmp = tempfile.mkdtemp(prefix="thaw-e2e-")
        self.fn_dir = os.path.join(self.tmp, "functions")
        self.state_dir = os.path.join(self.tmp, "state")
        # snapshot images outlive the daemon (a restart reuses them): keep
        # this test's on a tmpfs folder of its own, removed at the end
        self.snap_dir = tempfile.mkdtemp(prefix="thaw-e2e-snap-", dir="/dev/shm")
        os.makedirs(self.fn_dir)
        for name, fields in (functions or {}).items():
            write_function(self.fn_dir, name, fields)
        self.port = free_port()
        self.args = list(args)
        self.threads = threads
        self.ready_timeout = ready_timeout
        self.wait_ready = wait_ready
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.keep = False  # restart(): keep state and snapshots across stop/start
        self.log_path = os.path.join(self.tmp, "daemon.log")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        cmd = [THAW, "serve", "--listen", "127.0.0.1", "--port", str(self.port),
               "--functions", self.fn_dir, "--state-dir", self.state_dir,
               "--snapshot-dir", self.snap_dir,
               "--threads", str(self.threads)] + self.args
        if "--grpc-port" not in self.args:  # not 8500: tests run side by side
            cmd += ["--grpc-port", "0"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited with %d:\n%s" % (self.proc.returncode, self.logs()))
            try:
                r = self.request("GET", "/readyz" if self.wait_ready else "/healthz", timeout=2)
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("daemon not ready in %ss:\n%s" % (self.ready_timeout, self.logs()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if failures:
            sys.stdout.write("--- daemon log (tail) ---\n" + self.logs()[-6000:] + "\n")
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
            shutil.rmtree(self.snap_dir, ignore_errors=True)

    def restart(self):
        """Stops the daemon (SIGTERM) and starts it again on the same state,
        functions and snapshot folders."""
        self.keep = True
        self.stop()
        self.keep = False
        self.start()

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def connect(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10, conn=None):
        own = conn is None
        c = conn or self.connect(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            if own:
                c.close()

    def raw(self, data, timeout=5, read_until_close=True):
        """Sends raw bytes on a new connection, returns every byte read until
        the server closes (or the timeout)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
                if not read_until_close and b"\r\n\r\n" in out:
                    break
            return out
        finally:
            s.close()

    def metrics(self):
        """Parses /metrics into {'name{labels}': value}."""
        r = self.request("GET", "/metrics")
        out = {}
        for line in r.body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, val = line.rpartition(" ")
            out[key] = float(val)
        return out
