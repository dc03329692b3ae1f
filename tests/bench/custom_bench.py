"""Figures for docs/benchmarks.md, custom runtime (see custom.sh).

cold:    `python3 server.py` started directly (import torch, model load,
         uvicorn) until its first :predict answer, COLDS times.
restore: the function at zero (scaled in), one :predict request: client
         time to its answer, RESTORES times; the daemon's own split (criu
         restore, restore hook) from its log.
rps:     wrk, one connection per thread, DURATION s, the same POST :predict,
         against uvicorn directly on loopback and through thaw (one
         instance, instanceConcurrency 8), alternately, same run.
Restores, the snapshot and memory run side by side for two copies of the
function in one daemon: "agent" (snapshotMemory.mapped, the default: the
agent moves the server's large anonymous memory into memory files before
the dump) and "copy" (mapped: false: CRIU copies it), alternating which
goes first. memory: COPIES restored copies of each (brought up by bursts
of concurrent requests, instanceConcurrency 1; a cold one left out), after
a request or a few each, their processes' Pss and anonymous bytes
(smaps_rollup) per copy: the anonymous bytes are what one more copy costs
(memory files are in the tmpfs once, shared by all copies).
"""
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from thawtest import ROOT, Daemon, free_port, skip, wait_for  # noqa: E402

PY = "/usr/bin/python3"
MEM_TMPFS = "/dev/shm/thaw-mem"
RESTORES = int(os.environ.get("RESTORES", "20"))
COLDS = int(os.environ.get("COLDS", "5"))
DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "8"))
COPIES = int(os.environ.get("COPIES", "4"))
VARIANTS = {"agent": "torch-digits", "copy": "torch-digits-copy"}
# the same path for both (the function's name first, the server sees the rest)
PATH = {k: "/%s/v1/models/torch-digits:predict" % fn for k, fn in VARIANTS.items()}
ROW = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0,
       8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6,
       13, 10, 0, 0, 0]
BODY = json.dumps({"instances": [ROW]})


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def predict(port, path, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, BODY, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def cold(fn_dir):
    out = []
    for _ in range(COLDS):
        port = free_port()
        t0 = time.perf_counter()
        p = subprocess.Popen([PY, "server.py"], cwd=fn_dir, env=dict(os.environ, FC_SERVER_PORT=str(port)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def up():
                try:
                    return predict(port, "/v1/models/torch-digits:predict", 5) == 200
                except OSError:
                    return False
            if not wait_for(up, secs=120, step=0.01):
                raise RuntimeError("server did not come up")
            out.append((time.perf_counter() - t0) * 1e3)
        finally:
            p.kill()
            p.wait()
    return out


def at_zero(d, fn):
    m = d.metrics()
    return all(m.get('thaw_instances{function="%s",state="%s"}' % (fn, s)) == 0
               for s in ("starting", "idle", "busy"))


def restores(d):
    """Client time of one :predict to each variant from zero, RESTORES each."""
    out = {k: [] for k in VARIANTS}
    for i in range(RESTORES):
        order = list(VARIANTS) if i % 2 == 0 else list(reversed(list(VARIANTS)))
        for k in order:
            fn = VARIANTS[k]
            if not wait_for(lambda: all(at_zero(d, f) for f in VARIANTS.values()), secs=60, step=0.1):
                raise RuntimeError("did not scale to zero")
            t0 = time.perf_counter()
            st = predict(d.port, PATH[k])
            out[k].append((time.perf_counter() - t0) * 1e3)
            if st != 200:
                raise RuntimeError("%s: status %d" % (fn, st))
    return out


def burst(d, path, n):
    """n concurrent :predict requests."""
    ts = [threading.Thread(target=predict, args=(d.port, path)) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def snapshot_mib(folder):
    """(CRIU images, memory files) of a snapshot folder, in MiB: the files'
    sizes, and the memory files' blocks (they are sparse)."""
    img = mf = 0
    for e in os.scandir(folder):
        if e.name.startswith("thaw-mem-"):
            mf += e.stat().st_blocks * 512
        else:
            img += e.stat().st_size
    return img / 1048576.0, mf / 1048576.0


def copy_memory(d, fn):
    """(copies, Pss MiB per copy, anonymous MiB per copy) of fn's restored
    copies alive (their pids from the daemon's log; a cold one is left out).
    Anonymous memory is what one more copy costs: the memory files' pages
    are in the tmpfs once, shared by every copy that maps them."""
    roots = re.findall(r" %s: instance \S+ \(pid (\d+)\) restored in" % fn, d.logs())
    ns = {}
    for pid in roots:
        try:
            ns[os.readlink("/proc/%s/ns/pid" % pid)] = pid
        except OSError:
            pass  # gone
    pss = anon = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/ns/pid" % pid) not in ns:
                continue
            roll = open("/proc/%s/smaps_rollup" % pid).read()
        except OSError:
            continue
        kb = dict((l.split(":")[0], int(l.split()[1])) for l in roll.splitlines()[1:] if l.endswith("kB"))
        pss += kb.get("Pss", 0)
        anon += kb.get("Anonymous", 0)
    n = len(ns)
    return n, pss / 1024.0 / max(n, 1), anon / 1024.0 / max(n, 1)


def wrk(port, path):
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n'
              % json.dumps(BODY))
    lua.close()
    r = subprocess.run(["wrk", "-t", "1", "-c", str(CONNS), "-d", "%ds" % DURATION, "--latency",
                        "-s", lua.name, "http://127.0.0.1:%d%s" % (port, path)],
                       capture_output=True, text=True)
    os.unlink(lua.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", r.stdout).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", r.stdout)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    return rps, p99, int(errs.group(1)) if errs else 0


def add_function(d, name, extra):
    """The trained example as function name, with fc.yaml lines extra."""
    src = os.path.join(d.fn_dir, "torch-digits")
    dst = os.path.join(d.fn_dir, name)
    if name != "torch-digits":
        shutil.copytree(src, dst)
    with open(os.path.join(dst, "fc.yaml")) as f:
        text = f.read().replace("name: torch-digits\n", "name: %s\n" % name)
    with open(os.path.join(dst, "fc.yaml"), "w") as f:
        f.write(text + extra)


def main():
    if os.geteuid() != 0:
        skip("needs root")
    if subprocess.run([PY, "-c", "import torch, fastapi, uvicorn, sklearn"]).returncode:
        skip("needs python3-torch python3-fastapi python3-uvicorn python3-sklearn")
    if not shutil.which("wrk"):
        skip("needs wrk")
    # snapshots on thaw's own huge-page tmpfs, as the daemon's default
    snaps = tempfile.mkdtemp(prefix="bench-custom-", dir=MEM_TMPFS) if os.path.isdir(MEM_TMPFS) else None
    try:
        run(snaps)
    finally:
        if snaps:
            shutil.rmtree(snaps, ignore_errors=True)


def run(snaps):
    d = Daemon({}, args=["--snapshot-dir", snaps] if snaps else [], ready_timeout=120, wait_ready=False)
    snap_dir = snaps or d.snap_dir
    fn_dir = os.path.join(d.fn_dir, "torch-digits")
    shutil.copytree(os.path.join(ROOT, "examples", "torch-digits"), fn_dir)
    subprocess.run([PY, "train.py"], cwd=fn_dir, check=True, stdout=subprocess.DEVNULL)
    scale = ("instanceConcurrency: %d\nscalingConfig:\n  maxInstances: 1\n"
             "  stableWindowSeconds: 6\n  scaleToZeroGracePeriodSeconds: 0\n" % CONNS)
    # restored copies: bursts of concurrent requests, one request per copy
    # at a time, until COPIES are up; they stay a minute
    copies = ("instanceConcurrency: 1\nscalingConfig:\n  maxInstances: %d\n"
              "  stableWindowSeconds: 60\n" % COPIES)
    off = "snapshotMemory:\n  mapped: false\n"
    for name, extra in (("torch-digits-copy", scale + off), ("torch-digits-x%d" % COPIES, copies),
                        ("torch-digits-copy-x%d" % COPIES, copies + off), ("torch-digits", scale)):
        add_function(d, name, extra)
    colds = cold(fn_dir)
    with d:
        if not wait_for(lambda: d.request("GET", "/readyz").status == 200, secs=300, step=0.2):
            raise RuntimeError("function not ready:\n" + "\n".join(
                l for l in d.logs().splitlines() if not l.startswith('{"ts'))[-3000:])
        mem = {}
        for k, fn in VARIANTS.items():
            xfn = fn + "-x%d" % COPIES
            deadline = time.time() + 60
            while copy_memory(d, xfn)[0] < COPIES and time.time() < deadline:
                burst(d, "/%s/v1/models/torch-digits:predict" % xfn, 4 * COPIES)
            time.sleep(1)
            mem[k] = copy_memory(d, xfn)
        rs = restores(d)
        logs = d.logs()
        files = {k: snapshot_mib(os.path.join(snap_dir, fn + "-v1")) for k, fn in VARIANTS.items()}
        snap, criu, hook, moved = {}, {}, {}, {}
        for k, fn in VARIANTS.items():
            snap[k] = re.search(r" %s: snapshot of pid \d+ in \S+: ([\d.]+) MiB in \d+ files, dump ([\d.]+) ms" % fn, logs)
            criu[k] = [float(x) for x in re.findall(r" %s: instance \S+ \(pid \d+\) restored in [\d.]+ ms: .*?criu ([\d.]+)" % fn, logs)]
            hook[k] = [float(x) for x in re.findall(r" %s: instance \S+ \(pid \d+\) restored in .*on_restore and channel ([\d.]+)" % fn, logs)]
            moved[k] = re.search(r" %s: ([\d.]+) MiB in (\d+) mappings moved into memory files in ([\d.]+) ms" % fn, logs)
        # throughput: one warm instance; alternate direct and thaw
        port = free_port()
        p = subprocess.Popen([PY, "server.py"], cwd=fn_dir, env=dict(os.environ, FC_SERVER_PORT=str(port)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: predict_ok(port), secs=120, step=0.05)
            predict(d.port, "/v1/models/torch-digits:predict")
            runs = {"direct": [], "thaw": []}
            for _ in range(2):
                runs["direct"].append(wrk(port, "/v1/models/torch-digits:predict"))
                runs["thaw"].append(wrk(d.port, "/v1/models/torch-digits:predict"))
        finally:
            p.kill()
            p.wait()
    print("torch-digits custom runtime (%s), snapshots in %s" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), snap_dir))
    print("cold start, process start -> first :predict answer (%d runs): p50 %.0f ms, min %.0f, max %.0f"
          % (len(colds), statistics.median(colds), min(colds), max(colds)))
    for k, fn in VARIANTS.items():
        r = rs[k]
        print("[%s] %s%s" % (k, fn, " (snapshotMemory.mapped: false)" if k == "copy" else " (agent)"))
        print("  restore from zero -> first :predict answer, client side (%d runs): p50 %.1f ms, p99 %.1f ms, min %.1f"
              % (len(r), statistics.median(r), pct(r, 99), min(r)))
        if criu[k]:
            print("  of which criu restore: p50 %.1f ms; restore hook + port: p50 %.2f ms"
                  % (statistics.median(criu[k]), statistics.median(hook[k]) if hook[k] else -1))
        print("  cold / restore (p50): %.0fx" % (statistics.median(colds) / statistics.median(r)))
        if snap[k]:
            print("  snapshot: %s MiB in all, dump %s ms" % (snap[k].group(1), snap[k].group(2)))
        print("  of it CRIU images %.1f MiB, memory files %.1f MiB" % files[k])
        if moved[k]:
            print("  moved into memory files before the dump: %s MiB in %s mappings in %s ms"
                  % moved[k].groups())
        n, pss, anon = mem[k]
        print("  %d restored copies: Pss %.1f MiB per copy, anonymous %.1f MiB per copy (= one more copy)"
              % (n, pss, anon))
    for k, v in runs.items():
        print("%-6s wrk -t1 -c%d -d%ds: %s req/s, p99 %s ms, non-2xx %s" % (
            k, CONNS, DURATION, " / ".join("%.0f" % x[0] for x in v), " / ".join("%.2f" % x[1] for x in v),
            sum(x[2] for x in v)))
    dr = statistics.mean(x[0] for x in runs["direct"])
    tr = statistics.mean(x[0] for x in runs["thaw"])
    print("thaw / direct throughput: %.2f" % (tr / dr))


def predict_ok(port):
    try:
        return predict(port, "/v1/models/torch-digits:predict", 5) == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
