"""Harness for end-to-end tests: starts the real daemon on a free loopback
port with its own state and functions folders, and talks HTTP to it.

    with Daemon({"echo": {"handler": handler_so("echo")}}) as d:
        r = d.request("POST", "/echo/", b"hi")
        check(r.status == 200, "echo answers", r)

Each test file is one process; it exits 0 (pass), 1 (fail) or 77 (skip).
A part left out for want of something prints "skip: WHY" (skip_part), counted
by tests/run.sh; "skip[no-gpu]: WHY" marks the one expected reason, so
THAW_NO_SKIP=1 fails every other skip. A skip after a failed check is a
failure.
"""
import json
import os
import re
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

# THAW_TEST_LOOP=epoll: every Daemon runs with io_uring refused by a
# seccomp filter (tests/tools/no_io_uring, as container runtimes' default
# profiles refuse it), so it serves on its epoll loop; start() fails unless
# the daemon's log says so. tests/e2e/test_epoll.sh runs tests that way.
# CRIU cannot dump a process under any seccomp filter (docs/kubernetes.md):
# snapshot checks fail that way. THAW_TEST_LOOP=epoll-flag runs the daemon
# with --loop epoll and no filter: the same loop, snapshots working.
TEST_LOOP = os.environ.get("THAW_TEST_LOOP", "")
NO_IO_URING = os.path.join(BUILD, "tests", "tools", "no_io_uring")
EPOLL_LINE = "the loops run on epoll"
EPOLL_FALLBACK_LINE = "io_uring_setup: Operation not permitted"

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


def _skip_line(why, no_gpu):
    return ("skip[no-gpu]: " if no_gpu else "skip: ") + why


def skip(why, no_gpu=False):
    """The whole test did not run (exit 77). After a failed check it exits 1:
    a skip never hides a failure."""
    if failures:
        print("FAIL skipped after %d failed checks: %s" % (len(failures), why))
        finish()
    print(_skip_line(why, no_gpu))
    sys.exit(77)


def need_built(*paths):
    """What `make` builds is not a reason to skip: a missing one fails the
    test at once."""
    missing = [p for p in paths if not os.path.exists(p)]
    for p in missing:
        check(False, "%s is built (run make)" % p)
    if missing:
        finish()


def skip_part(why, no_gpu=False):
    """One part of the test did not run: counted by tests/run.sh, a failure
    there under THAW_NO_SKIP=1 unless no_gpu."""
    print(_skip_line(why, no_gpu))


def parallel(fn, args_list, stagger=0.0):
    """Runs fn(*args) for each args in its own thread and waits for all.
    Returns [(result, None) or (None, exception)] in order: a thread that died
    of any exception (IncompleteRead, BadStatusLine, ...) says so, never
    silently. stagger: seconds between thread starts."""
    import threading
    out = [(None, RuntimeError("thread did not run"))] * len(args_list)

    def run(i, args):
        try:
            out[i] = (fn(*args), None)
        except BaseException as e:  # recorded, checked by the caller
            out[i] = (None, e)
    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
        time.sleep(stagger)
    for t in threads:
        t.join()
    return out


class Load:
    """Workers that each send requests on a kept connection until finish()
    (or until the time `until`): send(conn) returns a Response. Every answer
    and every exception, of any kind (IncompleteRead and BadStatusLine are
    not OSError), is recorded as an outcome: the status, or "Name: message";
    a worker that died is recorded too, and finish() fails a check unless
    every worker ended cleanly having sent requests."""

    def __init__(self, d, send, workers=2, until=None, timeout=10):
        import threading
        self.d, self.send, self.until, self.timeout = d, send, until, timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes = []
        self.sent = [0] * workers
        self.ended = [False] * workers
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(workers)]

    def _run(self, i):
        c = None
        try:
            c = self.d.connect(self.timeout)
            while not self.stop.is_set() and (self.until is None or time.time() < self.until):
                try:
                    out = self.send(c).status
                except Exception as e:  # recorded: the request failed
                    out = "%s: %s" % (type(e).__name__, e)
                    c.close()
                    c = self.d.connect(self.timeout)
                with self.lock:
                    self.outcomes.append(out)
                    self.sent[i] += 1
            self.ended[i] = True
        except BaseException as e:  # recorded: the worker died
            with self.lock:
                self.outcomes.append("worker %d died: %s: %s" % (i, type(e).__name__, e))
        finally:
            if c:
                c.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self, what="load"):
        """Stops and joins the workers; checks each ended cleanly with its
        request count. Returns the outcomes."""
        self.stop.set()
        for t in self.threads:
            t.join(60)
        check(all(self.ended) and all(n > 0 for n in self.sent),
              "%s: every worker ended cleanly, each with requests sent %s" % (what, self.sent),
              [o for o in self.outcomes if isinstance(o, str)][:3])
        return self.outcomes


def criu_works():
    """"" when snapshots can work here (root and `criu check` passing), else why not."""
    if os.geteuid() != 0:
        return "snapshots need root"
    criu = os.environ.get("THAW_CRIU", "/usr/local/lib/thaw/criu/criu")
    try:
        p = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        return "no usable CRIU at %s (make deps): %s" % (criu, e)
    if p.returncode != 0:
        return "CRIU check failed (make deps): " + (p.stderr.strip().splitlines() or ["?"])[-1]
    return ""


def cgroup_works(controller):
    """"" when a group with `controller` (memory, cpu) can be made here as the
    daemon makes them (proc/reslimit.c: v2 when the root offers memory,
    else the v1 hierarchy of controller), else why not. Probed by making and
    removing one, so a test branches on the machine, not on the daemon's log."""
    try:
        ctl = open("/sys/fs/cgroup/cgroup.controllers").read().split()
    except OSError:
        ctl = []
    v2 = "memory" in ctl
    if v2 and controller not in ctl:
        return "cgroup v2 root offers no %s controller" % controller
    own = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctls, path = line.rstrip("\n").split(":", 2)
            if (v2 and ctls == "") or (not v2 and controller in ctls.split(",")):
                own = path
    if own is None:
        return "no %s cgroup hierarchy" % controller
    root = "/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/" + controller
    probe = os.path.join(root + own.rstrip("/"), "thaw-probe-%d" % os.getpid())
    try:
        os.mkdir(probe)
    except OSError as e:
        return "cannot make a %s cgroup: %s" % (controller, e)
    try:
        if v2:
            with open(os.path.join(probe, "cgroup.subtree_control"), "w") as f:
                f.write("+" + controller)
    except OSError as e:
        return "cannot enable the %s controller: %s" % (controller, e)
    finally:
        os.rmdir(probe)
    return ""


def wait_for(pred, secs=20, step=0.05):
    """Polls pred until it returns something true (returned), at most secs."""
    end = time.time() + secs
    while True:
        v = pred()
        if v or time.time() >= end:
            return v
        time.sleep(step)


def rewrite_manifest_line(folder, name):
    """After editing folder/name: its line in thaw-manifest, as the daemon
    would have written it (snapshot/manifest.h), so that only the facts
    differ, not the checksums."""
    import hashlib
    data = open(os.path.join(folder, name), "rb").read()
    path = os.path.join(folder, "thaw-manifest")
    lines = open(path).read().splitlines()
    out = [("%s %d %s" % (hashlib.sha256(data).hexdigest(), len(data), name))
           if ln.endswith(" " + name) and not ln.startswith("end ") else ln for ln in lines]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def levenshtein(a, b):
    """Edit distance between two strings (one row of the table at a time)."""
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diag, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            up = row[j]
            row[j] = min(up + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1]))
            diag = up
    return row[-1]


def cer(ref, got):
    """OCR's character error rate in %, whitespace runs folded."""
    ref, got = (re.sub(r"\s+", " ", s).strip() for s in (ref, got))
    return 100.0 * levenshtein(ref, got) / max(len(ref), 1)


class Log:
    """A daemon's log, read from where it was last read: new() gives the lines
    written since."""

    def __init__(self, d):
        self.d, self.off = d, 0

    def new(self):
        with open(self.d.log_path, "rb") as f:
            f.seek(self.off)
            data = f.read()
        self.off += len(data)
        return data.decode(errors="replace").splitlines()


def grpc_stubs():
    """Compiles proto/ into Python gRPC stubs (protoc + grpc_python_plugin)
    in a fresh folder put first on sys.path; returns it (the caller removes
    it)."""
    stubs = tempfile.mkdtemp(prefix="thaw-grpc-stubs-")
    subprocess.run(["protoc", "-I" + os.path.join(ROOT, "proto"), "-I/usr/include", "--python_out=" + stubs,
                    "--grpc_out=" + stubs, "--plugin=protoc-gen-grpc=" + shutil.which("grpc_python_plugin"),
                    "grpc_service.proto", "tensorflow_serving/apis/predict.proto",
                    "tensorflow/core/framework/tensor.proto",
                    "tensorflow/core/protobuf/meta_graph.proto"], check=True)
    sys.path.insert(0, stubs)
    return stubs


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
        self.wrap = []  # a command prefix for thaw serve (tests/tools/no_io_uring)

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
        if TEST_LOOP == "epoll" and not self.wrap:
            cmd = [NO_IO_URING] + cmd
        elif TEST_LOOP == "epoll-flag":
            cmd += ["--loop", "epoll"]
        cmd = self.wrap + cmd
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited with %d:\n%s" % (self.proc.returncode, self.logs()))
            try:
                r = self.request("GET", "/readyz" if self.wait_ready else "/healthz", timeout=2)
                if r.status == 200:
                    want = {"epoll": EPOLL_FALLBACK_LINE, "epoll-flag": EPOLL_LINE}.get(TEST_LOOP)
                    if want and (want not in self.logs() or EPOLL_LINE not in self.logs()):
                        raise RuntimeError("THAW_TEST_LOOP=%s, but the daemon's log does not say "
                                           "%r:\n%s" % (TEST_LOOP, want, self.logs()[-3000:]))
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
