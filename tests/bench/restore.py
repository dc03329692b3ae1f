#!/usr/bin/env python3
"""Cold start vs snapshot restore, measured through the daemon.

What is timed: from "an instance is needed" to "its first response is sent".
Every measured request goes to a function that is scaled to zero
(minInstances 0, scaleToZeroGracePeriodSeconds 0, stableWindowSeconds 6: the
autoscaler stops an idle instance about one stable window after its last
request), so each request makes the daemon start one instance. The client
waits until /metrics shows no instance of the function (thaw_instances
starting + idle + busy == 0) and the stopped instances' pids are gone, opens
its connection(s), then times send -> whole response read. With concurrency
C, C connections send at once (a barrier) and each is one sample. Each
function exists BENCH_RESTORE_REPLICAS (4) times under different names; a
cycle waits until every replica is at zero, then times one round on each in
turn, so the ~7 s scale-in wait is shared. A replica whose snapshot failed is
left out of the restore series (and named).

Kinds: restore (snapshots on: the first instance was cold-started, warmed and
checkpointed at daemon start, every measured instance is a CRIU restore by a
criu started ahead, docs/criu.md), restore-exec (the same with criu exec'd per
restore: THAW_CRIU_WORKERS=0; echo, predict and bigstate only), restore-shared
(the same as restore with --scratch-mb 0: instances share the daemon's /tmp
and /dev/shm instead of each having its own; echo and bigstate only), cold
(the same daemon with --no-snapshots) and cold-shared (cold with
--scratch-mb 0; echo only). The daemon's own per-instance log
lines ("restored in X ms: verify A, criu B, on_restore and channel C", "ready in
X ms") give the server-side breakdown of the same starts.

Series (each run --runs times, the run with the lower p50 is reported):
  echo              echo handler, POST 64 bytes
  predict           predict, MODEL=mlp, ~1 GiB synthetic weights made by
                    build/tools/gen_weights (8192x8192 x4 + 8192x10, F32),
                    first request GET /v1/models/predict (status: no inference)
  predict+infer     the same, first request a 1-row :predict (a GEMV over all
                    1 GiB: its run time is in the figure)
  predict cN        restore only, N simultaneous requests, maxInstances 16,
                    instanceConcurrency 1 (N new instances per round)
  bigstate          handlers/bigstate: init builds BENCH_RESTORE_STATE_MIB
                    (1024) MiB of non-zero state with malloc; first request
                    GET / (restores map that state from the snapshot's memory
                    files: docs/snapshots.md "Mapped snapshot memory")
Memory: a daemon with a long grace period; 1 then 16 instances of predict, each
having answered a 1-row :predict (so every weight page is mapped); Pss, Rss and
private memory from /proc/PID/smaps_rollup. Snapshot size: du of the image
folder and the daemon's "snapshot of pid N in DIR: X MiB" line.

Usage: tests/bench/restore.py [--build DIR] [--n 20] [--runs 2]
       [--weights-mib 1024] [--only echo,predict,...] [--json FILE]
Needs root and a working CRIU (make deps); exits 77 otherwise.
"""
import argparse
import http.client
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--build", default=os.environ.get("THAW_BUILD", os.path.join(ROOT, "build")))
ap.add_argument("--n", type=int, default=int(os.environ.get("BENCH_RESTORE_N", "20")),
                help="starts per series (at least; concurrency rounds are whole)")
ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RESTORE_RUNS", "2")),
                help="runs per series; the one with the lower p50 is reported")
ap.add_argument("--weights-mib", type=int, default=int(os.environ.get("BENCH_RESTORE_WEIGHTS_MIB", "1024")))
ap.add_argument("--only", default=os.environ.get("BENCH_RESTORE_ONLY", ""),
                help="comma-separated: echo, predict, infer, conc, memory, bigstate")
ap.add_argument("--state-mib", type=int, default=int(os.environ.get("BENCH_RESTORE_STATE_MIB", "1024")))
ap.add_argument("--json", default=os.environ.get("BENCH_RESTORE_JSON", ""), help="write all samples here")
args = ap.parse_args()
os.environ["THAW_BUILD"] = os.path.abspath(args.build)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from thawtest import BUILD, Daemon, Log, handler_so  # noqa: E402

ONLY = set(x for x in args.only.split(",") if x)
CRIU = os.environ.get("THAW_CRIU", "/usr/local/lib/thaw/criu/criu")


def want(part):
    return not ONLY or part in ONLY


def skip(why):
    print("restore: skipped: " + why)
    sys.exit(77)


for f in ("thaw", "thaw-instance", "handlers/echo.so", "handlers/predict.so", "tools/gen_weights"):
    if not os.path.exists(os.path.join(BUILD, f)):
        skip("%s/%s is not built (make build/thaw build/thaw-instance build/handlers/echo.so "
             "build/handlers/predict.so build/tools/gen_weights)" % (BUILD, f))
if os.geteuid() != 0:
    skip("snapshots need root")
probe = subprocess.run([CRIU, "check"], capture_output=True, text=True) if os.path.exists(CRIU) else None
if not probe or probe.returncode != 0:
    skip("no working CRIU at %s (make deps)" % CRIU)

RE_RESTORED = re.compile(r"(\S+): instance \S+ \(pid (\d+)\) restored in ([\d.]+) ms: queue [\d.]+, verify ([\d.]+), "
                         r"criu ([\d.]+), back to loop [\d.]+, on_restore and channel ([\d.]+)")
RE_READY = re.compile(r"(\S+): instance \S+ \(pid (\d+)\) ready in ([\d.]+) ms")
RE_SNAP = re.compile(r"(\S+): snapshot of pid (\d+) in (\S+): ([\d.]+) MiB in (\d+) files, dump ([\d.]+) ms")

ECHO_BODY = b"0123456789abcdef" * 4
SCALE = {"minInstances": 0, "maxInstances": 16, "scaleToZeroGracePeriodSeconds": 0, "maxQueueLength": 100,
         "stableWindowSeconds": 6}  # the shortest: the autoscaler keeps an instance for one window
REPLICAS = int(os.environ.get("BENCH_RESTORE_REPLICAS", "4"))
LAYERS = None  # set from --weights-mib


def layers_for(mib):
    """Square 8192-wide layers (256 MiB each) when the size allows, else one
    width w with 4 layers of w*w floats; + a 10-wide head."""
    total = mib * 1048576
    if total % (256 * 1048576) == 0:
        return [8192] * (total // (256 * 1048576) + 1) + [10]
    w = max(16, int(math.sqrt(total / 16)))
    return [w] * 5 + [10]


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pctl(xs, p):
    """Nearest-rank percentile (p99 of 20 samples is the maximum)."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def live(d, fn):
    m = d.metrics()
    return sum(m.get('thaw_instances{function="%s",state="%s"}' % (fn, s), 0)
               for s in ("starting", "idle", "busy"))


def wait_started(d, fn, timeout=60):
    """Until no instance of fn is starting: every start of the round has
    logged its READY line (with concurrency, the first copies to be ready
    serve the queue, so the last ones may finish after every response)."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        if d.metrics().get('thaw_instances{function="%s",state="starting"}' % fn, 0) == 0:
            return
        time.sleep(0.01)
    raise RuntimeError("%s: instances still starting after %d s" % (fn, timeout))


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def wait_zero(d, fn, pids, timeout=60):
    t_end = time.time() + timeout
    while time.time() < t_end:
        if live(d, fn) == 0 and all(gone(p) for p in pids):
            return
        time.sleep(0.05)
    raise RuntimeError("%s did not scale to zero in %d s:\n%s" % (fn, timeout, d.logs()[-3000:]))


class Req:
    def __init__(self, method, path, body=None, headers=None):
        self.method, self.path, self.body, self.headers = method, path, body, headers or {}


def one_round(d, req, c):
    """c connections send req at once; returns [(ms, status)]."""
    conns = [http.client.HTTPConnection("127.0.0.1", d.port, timeout=120) for _ in range(c)]
    for k in conns:
        k.connect()
        k.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = [None] * c
    barrier = threading.Barrier(c)

    def go(i):
        barrier.wait()
        t0 = time.perf_counter()
        try:
            conns[i].request(req.method, req.path, body=req.body, headers=req.headers)
            r = conns[i].getresponse()
            r.read()
            out[i] = ((time.perf_counter() - t0) * 1e3, r.status)
        except Exception as e:  # noqa: BLE001
            out[i] = ((time.perf_counter() - t0) * 1e3, repr(e))
    ts = [threading.Thread(target=go, args=(i,)) for i in range(c)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k in conns:
        k.close()
    return out


def series(d, log, fns, req, n, c, kind):
    """n starts (rounds of c) spread over the replicas fns of one function:
    each cycle waits until every replica is scaled to zero, then sends one
    round to each replica in turn (a replica's scale-in comes a stable window
    later, so no instance is stopped while another is timed)."""
    client, server, pids, bad = [], [], [], []
    log.new()
    rounds = max(1, math.ceil(n / c))
    done = 0
    while done < rounds:
        for fn in fns:
            wait_zero(d, fn, pids)
        for fn in fns[:rounds - done]:
            res = one_round(d, req(fn), c)
            for ms, st in res:
                client.append(ms)
                if st != 200:
                    bad.append(st)
            wait_started(d, fn)
            done += 1
        time.sleep(0.02)  # the READY lines reach the log file
        for line in log.new():
            m = RE_RESTORED.search(line)
            if m and m.group(1) in fns:
                pids.append(int(m.group(2)))
                server.append({"total": float(m.group(3)), "verify": float(m.group(4)),
                               "criu": float(m.group(5)), "channel": float(m.group(6))})
                continue
            m = RE_READY.search(line)
            if m and m.group(1) in fns:
                pids.append(int(m.group(2)))
                server.append({"total": float(m.group(3)), "cold": True})
    if bad:
        raise RuntimeError("%s %s c=%d: non-200 answers %r" % (fns[0], kind, c, bad[:5]))
    if not kind.startswith("cold") and any(x.get("cold") for x in server):
        print("restore: warning: cold starts in a restore series:\n" +
              "\n".join(l for l in d.logs().splitlines()
                        if ("snapshot" in l or "restore" in l) and "restored in" not in l)[-3000:])
    return {"client": client, "server": server, "starts": len(server), "load": load()}


def summary(r):
    s = {"p50": statistics.median(r["client"]), "p99": pctl(r["client"], 99),
         "min": min(r["client"]), "n": len(r["client"]), "starts": r["starts"], "load": r["load"]}
    for k in ("total", "verify", "criu", "channel"):
        xs = [x[k] for x in r["server"] if k in x]
        if xs:
            s["srv_" + k] = statistics.median(xs)
    s["cold_starts"] = sum(1 for x in r["server"] if x.get("cold"))
    if "srv_criu" in s:
        waits = [x["total"] - x["verify"] - x["criu"] - x["channel"] for x in r["server"] if "criu" in x]
        s["srv_wait"] = statistics.median(waits)
        s["srv_wait_max"] = max(waits)
    return s


def best(runs):
    return min(runs, key=lambda r: statistics.median(r["client"]))


def functions(weights):
    """REPLICAS identical copies of each function (echo0.., predict0..): one
    is timed while the others wait out their scale-in window."""
    predict_req = json.dumps({"instances": [[0.5] * LAYERS[0]]})
    echo = {"handler": handler_so("echo"), "timeout": 60, "instanceConcurrency": 1,
            "scalingConfig": SCALE, "warmup": {"method": "POST", "path": "/", "body": "warmup"}}
    # cpu: every core, as before fc.yaml cpu was enforced: OpenBLAS's
    # warm-up in init runs on 2 threads (at the default cpu 1 a cold start
    # is ~350 ms instead of ~260)
    predict = {"handler": handler_so("predict"), "timeout": 120, "instanceConcurrency": 1,
               "cpu": os.cpu_count(), "scalingConfig": SCALE,
               "environmentVariables": {"MODEL": "mlp", "WEIGHTS": weights, "PREDICT_DEVICE": "cpu"},
               "warmup": {"method": "POST", "path": "/", "body": predict_req}}
    big = {"handler": handler_so("bigstate"), "timeout": 120, "instanceConcurrency": 1,
           "memorySize": max(512, (args.state_mib * 2 // 64 + 8) * 64), "scalingConfig": SCALE,
           "environmentVariables": {"STATE_MB": str(args.state_mib)}}
    fns = {}
    for i in range(REPLICAS):
        fns["echo%d" % i] = echo
        fns["predict%d" % i] = predict
        if want("bigstate"):
            fns["bigstate%d" % i] = big
    return fns, predict_req.encode()


def pss(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                out[k] = int(v.split()[0])
    out["Private"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def memory(fns, predict_body, snapshots):
    """1, then 16 live predict instances that have each answered a :predict."""
    fn = "predict0"
    cfg = dict(fns[fn], scalingConfig=dict(SCALE, scaleToZeroGracePeriodSeconds=3600))
    argv = ["--threads", "1", "--no-access-log"] + ([] if snapshots else ["--no-snapshots"])
    with Daemon({fn: cfg}, args=argv, ready_timeout=120) as d:
        req = Req("POST", "/v1/models/%s:predict" % fn, predict_body, {"content-type": "application/json"})
        one_round(d, req, 1)
        txt = d.logs()
        snap = RE_SNAP.search(txt)
        du = None
        if snap:
            du = int(subprocess.run(["du", "-sk", snap.group(3)], capture_output=True, text=True)
                     .stdout.split()[0])

        def live_pids():
            pids = []
            for line in d.logs().splitlines():
                m = RE_RESTORED.search(line) or RE_READY.search(line)
                if m and m.group(1) == fn and not gone(int(m.group(2))):
                    pids.append(int(m.group(2)))
            return pids
        wait_started(d, fn)
        time.sleep(0.05)
        p1 = live_pids()
        m1 = [pss(p) for p in p1]
        one_round(d, req, 16)
        wait_started(d, fn)
        one_round(d, req, 16)  # now each of the (up to) 16 idle copies answers one
        time.sleep(0.05)
        p16 = live_pids()
        m16 = [pss(p) for p in p16]
        return {"snapshots": snapshots, "n1": len(p1), "n16": len(p16),
                "pss1": sum(x["Pss"] for x in m1), "pss16": sum(x["Pss"] for x in m16),
                "per_pss": statistics.median(x["Pss"] for x in m16),
                "per_rss": statistics.median(x["Rss"] for x in m16),
                "per_private": statistics.median(x["Private"] for x in m16),
                "per_anon": statistics.median(x.get("Anonymous", 0) for x in m16),
                "snap_mib": float(snap.group(4)) if snap else None,
                "snap_files": int(snap.group(5)) if snap else None,
                "dump_ms": float(snap.group(6)) if snap else None, "du_kib": du}


def main():
    global LAYERS
    LAYERS = layers_for(args.weights_mib)
    # not under /tmp: instances have their own (docs/architecture.md "Private scratch")
    tmp = tempfile.mkdtemp(prefix="thaw-bench-restore-", dir=os.environ.get("BENCH_TMP", "/var/tmp"))
    results = {"series": {}, "memory": {}, "load_start": load(), "n": args.n, "runs": args.runs}
    try:
        weights = os.path.join(tmp, "w.safetensors")
        subprocess.run([os.path.join(BUILD, "tools", "gen_weights"), weights, "--layers",
                        ",".join(map(str, LAYERS)), "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
        wbytes = os.path.getsize(weights)
        results["weights_bytes"] = wbytes
        print("restore: weights %s (%.0f MiB, synthetic, gen_weights --layers %s), n=%d starts per series, "
              "best of %d runs, load %s" % (weights, wbytes / 1048576, ",".join(map(str, LAYERS)),
                                            args.n, args.runs, load()), flush=True)
        fns, predict_body = functions(weights)
        echo_req = lambda fn: Req("POST", "/%s/" % fn, ECHO_BODY,  # noqa: E731
                                  {"content-type": "application/octet-stream"})
        status_req = lambda fn: Req("GET", "/v1/models/%s" % fn)  # noqa: E731
        infer_req = lambda fn: Req("POST", "/v1/models/%s:predict" % fn, predict_body,  # noqa: E731
                                   {"content-type": "application/json"})
        echo_fns = ["echo%d" % i for i in range(REPLICAS)]
        big_fns = ["bigstate%d" % i for i in range(REPLICAS)]
        big_req = lambda fn: Req("GET", "/%s/" % fn)  # noqa: E731
        predict_fns = ["predict%d" % i for i in range(REPLICAS)]

        plan = []  # (key, fn, req, c, kinds)
        if want("echo"):
            plan.append(("echo", echo_fns, echo_req, 1,
                         ("cold", "cold-shared", "restore-exec", "restore", "restore-shared")))
        if want("predict"):
            plan.append(("predict", predict_fns, status_req, 1, ("cold", "restore-exec", "restore")))
        if want("infer"):
            plan.append(("predict+infer", predict_fns, infer_req, 1, ("cold", "restore")))
        if want("bigstate"):
            plan.append(("bigstate", big_fns, big_req, 1, ("cold", "restore-exec", "restore", "restore-shared")))
        if want("conc"):
            for c in (4, 16):
                plan.append(("predict c%d" % c, predict_fns, status_req, c, ("restore",)))
                plan.append(("echo c%d" % c, echo_fns, echo_req, c, ("restore",)))
        runs = {}
        for run in range(args.runs):
            for kind in ("cold", "cold-shared", "restore-exec", "restore", "restore-shared"):
                todo = [p for p in plan if kind in p[4]]
                if not todo:
                    continue
                argv = ["--threads", "1", "--no-access-log"] + (["--no-snapshots"] if kind.startswith("cold") else [])
                argv += ["--scratch-mb", "0"] if kind.endswith("-shared") else []
                env = {"THAW_CRIU_WORKERS": "0"} if kind == "restore-exec" else {}
                with Daemon(fns, args=argv, ready_timeout=120, env=env) as d:
                    log = Log(d)
                    snapped = set(fns)
                    if not kind.startswith("cold"):
                        txt = d.logs()
                        snapped = set(m.group(1) for m in RE_SNAP.finditer(txt))
                        for line in txt.splitlines():
                            if "snapshot failed" in line:
                                # seen: two dumps at once race on CRIU's parasite
                                # mkdir of its proc mount point (EEXIST)
                                print("restore: warning: left out of the restore series: " + line.strip())
                    for key, fn, req, c, _ in todo:
                        use = [f for f in fn if f in snapped]
                        if not use:
                            raise RuntimeError("no replica of %s has a snapshot:\n%s" % (fn[0], d.logs()[-4000:]))
                        r = series(d, log, use, req, args.n, c, kind)
                        runs.setdefault((key, kind), []).append(r)
                        s = summary(r)
                        print("  run %d %-14s %-7s c=%-2d p50 %8.2f ms  p99 %8.2f ms  (%d starts, %d cold, load %s)"
                              % (run + 1, key, kind, c, s["p50"], s["p99"], s["starts"], s["cold_starts"], s["load"]), flush=True)
        for (key, kind), rs in runs.items():
            results["series"]["%s/%s" % (key, kind)] = {"best": summary(best(rs)), "all": rs}

        if want("memory"):
            for snaps in (True, False):
                results["memory"]["restore" if snaps else "cold"] = memory(fns, predict_body, snaps)

        report(results, wbytes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def side_by_side(S, keys, title, a_name, b_name, kinds):
    """A table of the series of kinds (kind a, kind b, the daemon's figure)
    that ran both ways."""
    rows = []
    for key in keys:
        for ka, kb, srv in kinds:
            a = S.get("%s/%s" % (key, ka), {}).get("best")
            b = S.get("%s/%s" % (key, kb), {}).get("best")
            if a and b:
                rows.append("| %s %s | %.1f / %.1f ms | %.1f / %.1f ms | %.1f / %.1f ms |" % (
                    key, ka, a["p50"], a["p99"], b["p50"], b["p99"], a.get(srv, 0), b.get(srv, 0)))
    if rows:
        print()
        print(title)
        print("| series | %s p50 / p99 | %s p50 / p99 | daemon median (criu, or ready in), %s / %s |"
              % (a_name, b_name, a_name, b_name))
        print("|---|---|---|---|")
        print("\n".join(rows))


def report(res, wbytes):
    S = res["series"]
    print()
    print("Time from the request for a scaled-to-zero function to its whole response (client side),")
    print("best of %d runs of >= %d starts each; daemon --threads 1; load at start %s, at end %s"
          % (res["runs"], res["n"], res["load_start"], load()))
    print()
    print("| function (first request) | conc. | cold p50 | cold p99 | restore p50 | restore p99 | cold/restore p50 |"
          " restore: daemon total | verify | criu | on_restore+channel | rest: worker wait, cgroup, hand-back (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = []
    for k in S:
        key = k.rsplit("/", 1)[0]
        if key not in keys:
            keys.append(key)
    for key in keys:
        c = S.get(key + "/cold", {}).get("best")
        r = S.get(key + "/restore", {}).get("best")
        conc = key.split(" c")[1] if " c" in key else "1"
        w = "%.0f MiB" % (wbytes / 1048576)
        name = {"echo": "echo (POST 64 B)", "predict": "predict %s (GET status)" % w,
                "predict+infer": "predict %s (1-row :predict)" % w,
                "bigstate": "bigstate, %d MiB anonymous state (GET /)" % args.state_mib}.get(key.split(" c")[0], key)
        f = lambda s, k: "%.1f ms" % s[k] if s and k in s else "-"  # noqa: E731
        ratio = "%.2gx" % (c["p50"] / r["p50"]) if c and r else "-"
        wait = "%.1f (%.1f)" % (r["srv_wait"], r["srv_wait_max"]) if r and "srv_wait" in r else "-"
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, conc, f(c, "p50"), f(c, "p99"), f(r, "p50"), f(r, "p99"), ratio, f(r, "srv_total"),
            f(r, "srv_verify"), f(r, "srv_criu"), f(r, "srv_channel"), wait))
    side_by_side(S, keys, "The same restores with criu exec'd per restore (THAW_CRIU_WORKERS=0) vs started "
                 "ahead (default):", "exec'd", "started ahead", [("restore-exec", "restore", "srv_criu")])
    side_by_side(S, keys, "Each instance with its own /tmp and /dev/shm (default) vs the daemon's shared "
                 "(--scratch-mb 0):", "own", "shared",
                 [("restore", "restore-shared", "srv_criu"), ("cold", "cold-shared", "srv_total")])
    for key in keys:
        c = S.get(key + "/cold", {}).get("best")
        if c and "srv_total" in c:
            print("cold %s: daemon 'ready in' (process start to READY) median %.1f ms" % (key, c["srv_total"]))
    M = res["memory"]
    if M:
        print()
        print("Memory, predict with %.0f MiB of weights, after each instance answered a 1-row :predict:" % (wbytes / 1048576))
        print("| kind | instances | Pss per instance | Private per instance | Rss per instance | sum Pss, 1 inst. | sum Pss, 16 | per extra instance |")
        print("|---|---|---|---|---|---|---|---|")
        for kind, m in M.items():
            extra = (m["pss16"] - m["pss1"]) / max(1, m["n16"] - m["n1"])
            print("| %s | %d | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |" % (
                kind, m["n16"], m["per_pss"] / 1024, m["per_private"] / 1024, m["per_rss"] / 1024,
                m["pss1"] / 1024, m["pss16"] / 1024, extra / 1024))
        r = M.get("restore")
        if r and r["snap_mib"] is not None:
            print("snapshot image: %.1f MiB in %d files (du %.1f MiB), dump %.0f ms; weights %.0f MiB"
                  % (r["snap_mib"], r["snap_files"], (r["du_kib"] or 0) / 1024, r["dump_ms"], wbytes / 1048576))


if __name__ == "__main__":
    main()
