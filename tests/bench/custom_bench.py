"""Figures for docs/benchmarks.md, custom runtime (see custom.sh).

cold:    `python3 server.py` started directly (import torch, model load,
         uvicorn) until its first :predict answer, COLDS times.
restore: the function at zero (scaled in), one :predict request: client
         time to its answer, RESTORES times; the daemon's own split (criu
         restore, restore hook) from its log.
rps:     wrk, one connection per thread, DURATION s, the same POST :predict,
         against uvicorn directly on loopback and through thaw (one
         instance, instanceConcurrency 8), alternately, same run.
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
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from thawtest import ROOT, Daemon, free_port, skip, wait_for  # noqa: E402

PY = "/usr/bin/python3"
RESTORES = int(os.environ.get("RESTORES", "20"))
COLDS = int(os.environ.get("COLDS", "5"))
DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "8"))
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


def at_zero(d):
    m = d.metrics()
    return all(m.get('thaw_instances{function="torch-digits",state="%s"}' % s) == 0
               for s in ("starting", "idle", "busy"))


def restores(d):
    out = []
    for _ in range(RESTORES):
        if not wait_for(lambda: at_zero(d), secs=60, step=0.1):
            raise RuntimeError("did not scale to zero")
        t0 = time.perf_counter()
        st = predict(d.port, "/v1/models/torch-digits:predict")
        out.append((time.perf_counter() - t0) * 1e3)
        if st != 200:
            raise RuntimeError("status %d" % st)
    return out


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


def main():
    if os.geteuid() != 0:
        skip("needs root")
    if subprocess.run([PY, "-c", "import torch, fastapi, uvicorn, sklearn"]).returncode:
        skip("needs python3-torch python3-fastapi python3-uvicorn python3-sklearn")
    if not shutil.which("wrk"):
        skip("needs wrk")
    d = Daemon({}, ready_timeout=120, wait_ready=False)
    fn_dir = os.path.join(d.fn_dir, "torch-digits")
    shutil.copytree(os.path.join(ROOT, "examples", "torch-digits"), fn_dir)
    subprocess.run([PY, "train.py"], cwd=fn_dir, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(fn_dir, "fc.yaml"), "a") as f:
        f.write("instanceConcurrency: %d\nscalingConfig:\n  maxInstances: 1\n"
                "  stableWindowSeconds: 6\n  scaleToZeroGracePeriodSeconds: 0\n" % CONNS)
    colds = cold(fn_dir)
    with d:
        if not wait_for(lambda: d.request("GET", "/readyz").status == 200, secs=120, step=0.2):
            raise RuntimeError("function not ready:\n" + "\n".join(
                l for l in d.logs().splitlines() if not l.startswith('{"ts'))[-3000:])
        rs = restores(d)
        logs = d.logs()
        snap = re.search(r"torch-digits: snapshot of pid \d+ in \S+: ([\d.]+) MiB in \d+ files, dump ([\d.]+) ms", logs)
        criu = [float(x) for x in re.findall(r"torch-digits: instance \S+ \(pid \d+\) restored in [\d.]+ ms: .*?criu ([\d.]+)", logs)]
        hook = [float(x) for x in re.findall(r"on_restore and channel ([\d.]+)", logs)]
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
    print("torch-digits custom runtime (%s)" % time.strftime("%Y-%m-%d"))
    print("cold start, process start -> first :predict answer (%d runs): p50 %.0f ms, min %.0f, max %.0f"
          % (len(colds), statistics.median(colds), min(colds), max(colds)))
    print("restore from zero -> first :predict answer, client side (%d runs): p50 %.1f ms, p99 %.1f ms, min %.1f"
          % (len(rs), statistics.median(rs), pct(rs, 99), min(rs)))
    if criu:
        print("  of which criu restore: p50 %.1f ms; restore hook + port: p50 %.2f ms"
              % (statistics.median(criu), statistics.median(hook)))
    print("  cold / restore (p50): %.0fx" % (statistics.median(colds) / statistics.median(rs)))
    if snap:
        print("snapshot image %s MiB, dump %s ms" % (snap.group(1), snap.group(2)))
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
