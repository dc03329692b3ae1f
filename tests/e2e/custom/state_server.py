"""A custom-runtime server with large state, for tests/e2e/test_custom_agent.py
(stdlib only).

At start it forks a helper child (it holds CHILD_MB of its own state and
sleeps), then builds STATE_MB of non-zero state in threads (16 MiB
bytearrays, one thread each: each its own anonymous mapping) and keeps 4 worker threads
alive, blocked or sleeping, as a real server's pool would be. GET /check
recomputes the state's checksum, writes a token of its own into the state,
holds it ms milliseconds, reads it back and puts the original bytes back;
it also says whether the agent is loaded and how much of its (and the
child's) memory is backed by thaw-mem-* files. BLOCK_PARK=1 adds a thread
that blocks the agent's park signal.
"""
import hashlib
import http.server
import json
import os
import queue
import random
import signal
import sys
import threading
import time
import urllib.parse

PORT = int(os.environ.get("FC_SERVER_PORT", "9000"))
STATE_MB = int(os.environ.get("STATE_MB", "128"))
CHILD_MB = int(os.environ.get("CHILD_MB", "32"))
CHUNK_MB = 16


def file_backed_mb(pid):
    """MiB of pid's mappings backed by thaw-mem-* files, and whether it maps the agent."""
    total, agent = 0, False
    with open("/proc/%s/maps" % pid) as f:
        for line in f:
            agent |= line.rstrip().endswith("/libthaw-agent.so")
            if "/thaw-mem-" in line:
                a, b = line.split()[0].split("-")
                total += int(b, 16) - int(a, 16)
    return total / (1 << 20), agent


def resident_mb():
    """MiB of this process's thaw-mem-* mappings that are mapped in (Rss)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = "/thaw-mem-" in line
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total / 1024.0


def make_chunk(i, mb):
    seed = hashlib.sha256(b"chunk%d" % i).digest()
    block = bytes((b | 1) for b in seed) * (1 << 15)  # 1 MiB, no zero byte
    return bytearray(block * mb)


# the helper child: forked before any thread, its own state, sleeps
rd, wr = os.pipe()
child = os.fork()
if child == 0:
    kept = make_chunk(999, CHILD_MB)
    os.write(wr, b"built\n")
    while True:
        time.sleep(3600)
os.read(rd, 64)


def child_proc():
    """The child's pid as /proc (the host's, in a copy a new one) numbers it."""
    for tid in os.listdir("/proc/self/task"):
        with open("/proc/self/task/%s/children" % tid) as f:
            kids = f.read().split()
        if kids:
            return kids[0]

chunks = [None] * (STATE_MB // CHUNK_MB)


def build(i):
    chunks[i] = make_chunk(i, CHUNK_MB)


threads = [threading.Thread(target=build, args=(i,)) for i in range(len(chunks))]
for t in threads:
    t.start()
for t in threads:
    t.join()


def checksum():
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


REFERENCE = checksum()
work = queue.Queue()


def worker():
    while True:
        work.get()


def ticker():
    while True:
        time.sleep(0.002)


def deaf():
    """BLOCK_PARK=1: a thread that blocks the agent's park signal (as some
    libraries block every signal in their threads): the world cannot stop."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN + 6})
    while True:
        time.sleep(0.01)


for target in (worker, worker, ticker, ticker) + ((deaf,) if os.environ.get("BLOCK_PARK") else ()):
    threading.Thread(target=target, daemon=True).start()
lock = threading.Lock()
state = {"restored": 0}


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        q = urllib.parse.parse_qs(query)
        if path == "/check":
            return self.send(200, check(int(q.get("ms", ["0"])[0])))
        if path == "/rss":  # touches none of the state
            return self.send(200, {"resident_mb": resident_mb(), "mapped_mb": file_backed_mb("self")[0]})
        return self.send(200, {"ok": True})

    def do_POST(self):
        if self.path == "/thaw/restored":
            state["restored"] += 1
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        self.send(200, {"ok": True})


def check(ms):
    sum_ok = checksum() == REFERENCE
    token = os.urandom(16)
    spot = len(chunks) // 2
    c = chunks[spot]
    with lock:
        old = bytes(c[4096:4112])
        c[4096:4112] = token
        time.sleep(ms / 1000.0)
        own_ok = bytes(c[4096:4112]) == token
        c[4096:4112] = old
    mapped, agent = file_backed_mb("self")
    child_mapped, child_agent = file_backed_mb(child_proc())
    return {"sum_ok": sum_ok, "own_ok": own_ok, "mapped_mb": mapped, "agent": agent,
            "child_mapped_mb": child_mapped, "child_agent": child_agent,
            "state_mb": STATE_MB, "restored": state["restored"], "pid": os.getpid(),
            "netns": os.stat("/proc/self/ns/net").st_ino, "random": random.random(),
            "threads": len(os.listdir("/proc/self/task"))}


sys.stdout.write("state server: %d MiB in %d chunks, child %d with %d MiB\n"
                 % (STATE_MB, len(chunks), child, CHILD_MB))
sys.stdout.flush()
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
