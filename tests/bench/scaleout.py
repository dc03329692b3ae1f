#!/usr/bin/env python3
"""Scale-out response: a step from 0 to 32 closed-loop clients, with snapshot
restores vs cold starts.

Function `fault` (build/handlers/fault.so), instanceConcurrency 1,
scalingConfig minInstances 1, maxInstances 32, targetConcurrency 1,
stableWindowSeconds 6 (panic window 0.6 s), maxQueueLength 1000, timeout 30;
environmentVariables FAULT_INIT_SLEEP_MS=1500 in both modes (its init sleeps
1.5 s: it stands for a model load). The daemon runs with --threads 1 (so
maxInstances is the whole function's bound) and --no-access-log; mode "cold"
adds --no-snapshots, so every new instance runs init (1.5 s); mode "snapshot"
restores new instances from the snapshot taken at start (no init).

Each mode, one daemon:
  1. wait until exactly 1 instance is idle (the warm one of minInstances);
  2. steady phase: 1 client, GET /fault/sleep?ms=50 back to back for
     --steady seconds; steady p99 = p99 of that phase;
  3. 2 s with no load;
  4. step: --clients (32) closed-loop clients (each its own keep-alive
     connection, started at once) for --seconds (20); each request's
     completion time and latency (send -> whole response) are recorded;
  5. 6 s more of metrics after the load stops.
/metrics is sampled every 250 ms from 2 s before the step to the end:
thaw_instances (starting + idle + busy), thaw_desired_instances,
thaw_panic_mode, thaw_instance_starts_total.

Window p99: p99 of the latencies of requests completed in (t - 1 s, t], for t
every 100 ms from the step to the end of the load. A window with no
completion counts as above the bound (every client is waiting). Time to
recover: the smallest t after which every window p99 up to the end of the load
stays under 2 x steady p99. The p99 of the last 5 s of the 32-client phase is
reported too (a settled 32-client figure).

Prints a table; --json writes every sample, --svg the plot (instances and
window p99 over time, both modes; a small SVG writer, stdlib only).
Exit 0; 77 when the build, root or CRIU is missing; 1 when requests failed.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--build", default=os.environ.get("THAW_BUILD", os.path.join(ROOT, "build")))
ap.add_argument("--clients", type=int, default=32)
ap.add_argument("--seconds", type=float, default=20.0, help="length of the step phase")
ap.add_argument("--steady", type=float, default=5.0, help="length of the 1-client phase")
ap.add_argument("--sleep-ms", type=int, default=50)
ap.add_argument("--init-ms", type=int, default=1500, help="FAULT_INIT_SLEEP_MS")
ap.add_argument("--modes", default="snapshot,cold")
ap.add_argument("--json", default="")
ap.add_argument("--svg", default="")
args = ap.parse_args()
os.environ["THAW_BUILD"] = os.path.abspath(args.build)

import thawtest  # noqa: E402  (reads THAW_BUILD)
from thawtest import Daemon, handler_so  # noqa: E402

CRIU = os.environ.get("THAW_CRIU", "/usr/local/lib/thaw/criu/criu")


def skip(why):
    print("scaleout: skipped: " + why)
    sys.exit(77)


for f in ("thaw", "thaw-instance", "handlers/fault.so"):
    if not os.path.exists(os.path.join(args.build, f)):
        skip("%s/%s is not built (make build/thaw build/thaw-instance build/handlers/fault.so)"
             % (args.build, f))
MODES = [m for m in args.modes.split(",") if m]
if "snapshot" in MODES:
    if os.geteuid() != 0:
        skip("snapshots need root")
    probe = subprocess.run([CRIU, "check"], capture_output=True, text=True) if os.path.exists(CRIU) else None
    if not probe or probe.returncode != 0:
        skip("no working CRIU at %s (make deps)" % CRIU)

FN = "fault"
CFG = {"handler": handler_so("fault"), "timeout": 30, "instanceConcurrency": 1,
       "environmentVariables": {"FAULT_INIT_SLEEP_MS": str(args.init_ms)},
       "scalingConfig": {"minInstances": 1, "maxInstances": 32, "targetConcurrency": 1,
                         "stableWindowSeconds": 6, "scaleToZeroGracePeriodSeconds": 60,
                         "maxQueueLength": 1000}}
PATH = "/%s/sleep?ms=%d" % (FN, args.sleep_ms)
MAX_REQ_PER_CLIENT = 100000


def pct(xs, p):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))]


def parse_metrics(body):
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def snapshot_metrics(conn):
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    m = parse_metrics(r.read())
    g = lambda name, extra="": m.get('%s{function="%s"%s}' % (name, FN, extra), 0)  # noqa: E731
    states = {s: g("thaw_instances", ',state="%s"' % s) for s in ("starting", "idle", "busy")}
    return {"instances": sum(states.values()), "starting": states["starting"], "idle": states["idle"],
            "busy": states["busy"], "desired": g("thaw_desired_instances"), "panic": g("thaw_panic_mode"),
            "cold": g("thaw_instance_starts_total", ',kind="cold"'),
            "restore": g("thaw_instance_starts_total", ',kind="restore"')}


def load(d, nclients, seconds):
    """nclients closed-loop clients for `seconds`; returns [(t_done, latency)], errors."""
    samples, errors, lock = [], [], threading.Lock()
    stop_at = time.time() + seconds
    go = threading.Barrier(nclients)

    def client():
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=40)
        n = 0
        try:
            go.wait(10)
        except threading.BrokenBarrierError:
            pass
        while time.time() < stop_at and n < MAX_REQ_PER_CLIENT:
            t0 = time.time()
            try:
                c.request("GET", PATH)
                r = c.getresponse()
                r.read()
                ok = r.status == 200
                err = r.status
            except OSError as e:
                ok, err = False, repr(e)
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=40)
            t1 = time.time()
            with lock:
                if ok:
                    samples.append((t1, t1 - t0))
                else:
                    errors.append(err)
            n += 1
        c.close()

    ts = [threading.Thread(target=client) for _ in range(nclients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 60)
    return samples, errors


def run_mode(mode):
    argv = ["--no-access-log"] + (["--no-snapshots"] if mode == "cold" else [])
    with Daemon({FN: CFG}, args=argv, threads=1, ready_timeout=120) as d:
        mc = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        end = time.time() + 30
        m = snapshot_metrics(mc)
        while time.time() < end and not (m["instances"] == 1 and m["idle"] == 1):
            time.sleep(0.1)
            m = snapshot_metrics(mc)
        if not (m["instances"] == 1 and m["idle"] == 1):
            print("scaleout: %s: no single idle instance before the step: %r" % (mode, m))
            return None
        steady, steady_err = load(d, 1, args.steady)
        time.sleep(2.0)
        series, stop = [], threading.Event()
        t_step = [None]
        before = snapshot_metrics(mc)

        def watch():
            t_end = time.time() + args.seconds + 40
            while not stop.is_set() and time.time() < t_end:
                t = time.time()
                try:
                    s = snapshot_metrics(mc)
                except (OSError, http.client.HTTPException):
                    continue
                s["t"] = t
                series.append(s)
                stop.wait(max(0.0, 0.25 - (time.time() - t)))
        w = threading.Thread(target=watch)
        w.start()
        time.sleep(2.0)
        t_step[0] = time.time()
        samples, errors = load(d, args.clients, args.seconds)
        t_stop = time.time()
        time.sleep(6.0)
        stop.set()
        w.join(10)
        after = snapshot_metrics(mc)
        mc.close()
        log = d.logs()
    import re
    restored = [float(x) for x in re.findall(r"restored in ([\d.]+) ms", log)]
    ready = [float(x) for x in re.findall(r"ready in ([\d.]+) ms", log)]
    t0 = t_step[0]
    steady_p99 = pct([l for _, l in steady], 0.99)
    bound = 2 * steady_p99
    windows = []
    ss = sorted(samples)
    lo = 0
    t = t0 + 0.1
    while t <= t_stop + 1e-9 and len(windows) < 100000:
        while lo < len(ss) and ss[lo][0] <= t - 1.0:
            lo += 1
        hi = lo
        lat = []
        while hi < len(ss) and ss[hi][0] <= t:
            lat.append(ss[hi][1])
            hi += 1
        windows.append((t - t0, pct(lat, 0.99) if lat else None, len(lat)))
        t += 0.1
    recover = None
    for i in range(len(windows)):
        if all(p is not None and p < bound for _, p, _ in windows[i:]):
            recover = windows[i][0]
            break
    lats = [l for _, l in samples]
    slow = [tc - t0 for tc, l in samples if l >= bound]
    tail = [l for tc, l in samples if tc >= t_stop - 5.0]
    ser = [dict(s, t=s["t"] - t0) for s in series]
    return {"mode": mode, "steady_n": len(steady), "steady_p50": pct([l for _, l in steady], 0.5),
            "steady_p99": steady_p99, "bound": bound, "recover_s": recover,
            "peak_instances": max([s["instances"] for s in series] or [0]),
            "peak_desired": max([s["desired"] for s in series] or [0]),
            "panic_s": 0.25 * sum(1 for s in ser if s["panic"] > 0 and 0 <= s["t"] <= t_stop - t0),
            "starts_cold": after["cold"] - before["cold"], "starts_restore": after["restore"] - before["restore"],
            "n": len(samples), "errors": len(errors) + len(steady_err), "error_sample": (errors + steady_err)[:3],
            "p50": pct(lats, 0.5), "p99": pct(lats, 0.99), "tail_p99": pct(tail, 0.99),
            "load_s": t_stop - t0, "max": max(lats or [float("nan")]),
            "last_slow_s": max(slow) if slow else 0.0, "n_slow": len(slow),
            "restore_ms": sorted(restored), "ready_ms": sorted(ready), "windows": windows, "series": ser}


# ---- SVG ------------------------------------------------------------------

COLORS = {"snapshot": "#1f77b4", "cold": "#d62728"}


class Svg:
    def __init__(self, w, h):
        self.w, self.h, self.parts = w, h, []

    def add(self, s):
        self.parts.append(s)

    def line(self, x1, y1, x2, y2, color="#000", width=1, dash=None):
        self.add('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%s"%s/>'
                 % (x1, y1, x2, y2, color, width, ' stroke-dasharray="%s"' % dash if dash else ""))

    def polyline(self, pts, color, width=1.5, dash=None):
        if pts:
            self.add('<polyline fill="none" stroke="%s" stroke-width="%s"%s points="%s"/>'
                     % (color, width, ' stroke-dasharray="%s"' % dash if dash else "",
                        " ".join("%.1f,%.1f" % p for p in pts)))

    def text(self, x, y, s, size=12, anchor="start", color="#000", rotate=None):
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        rot = ' transform="rotate(%d %.1f %.1f)"' % (rotate, x, y) if rotate else ""
        self.add('<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" fill="%s"%s>%s</text>'
                 % (x, y, size, anchor, color, rot, s))

    def render(self):
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
                'font-family="sans-serif">\n<rect width="100%%" height="100%%" fill="#fff"/>\n%s\n</svg>\n'
                % (self.w, self.h, self.w, self.h, "\n".join(self.parts)))


def panel(svg, x0, y0, w, h, xr, yr, xticks, yticks, ylabel, ylog=False):
    import math
    def X(x):
        return x0 + (x - xr[0]) / (xr[1] - xr[0]) * w

    def Y(y):
        if ylog:
            y = max(y, yr[0])
            return y0 + h - (math.log10(y) - math.log10(yr[0])) / (math.log10(yr[1]) - math.log10(yr[0])) * h
        return y0 + h - (y - yr[0]) / (yr[1] - yr[0]) * h
    svg.add('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#000"/>' % (x0, y0, w, h))
    for t in xticks:
        svg.line(X(t), y0, X(t), y0 + h, "#ddd")
        svg.text(X(t), y0 + h + 14, "%g" % t, 11, "middle")
    for t in yticks:
        svg.line(x0, Y(t), x0 + w, Y(t), "#ddd")
        svg.text(x0 - 4, Y(t) + 4, "%g" % t, 11, "end")
    svg.text(x0 - 40, y0 + h / 2, ylabel, 12, "middle", rotate=-90)
    return X, Y


def plot(results, path):
    svg = Svg(860, 620)
    tmax = max(r["load_s"] for r in results) + 6
    xr = (-2, tmax)
    xt = list(range(0, int(tmax) + 1, 2))
    svg.text(430, 20, "thaw scale-out: step from 0 to %d clients at t = 0 (fault /sleep?ms=%d, init %d ms)"
             % (args.clients, args.sleep_ms, args.init_ms), 14, "middle")
    X, Y = panel(svg, 70, 40, 760, 250, xr, (0, 40), xt, [0, 4, 8, 12, 16, 20, 24, 28, 32],
                 "instances")
    for r in sorted(results, key=lambda r: r["mode"] != "cold"):
        c = COLORS.get(r["mode"], "#000")
        wide = 3.5 if r["mode"] == "cold" else 1.8
        ser = [s for s in r["series"] if s["t"] >= xr[0]]
        svg.polyline([(X(s["t"]), Y(s["instances"] - s["starting"])) for s in ser], c, wide)
        svg.polyline([(X(s["t"]), Y(s["instances"])) for s in ser], c, 1, "1,2")
        svg.polyline([(X(s["t"]), Y(s["desired"])) for s in ser], c, 1.2, "5,3")
    lx = X(tmax) - 390
    for i, r in enumerate(results):
        c = COLORS.get(r["mode"], "#000")
        svg.line(lx, 52 + 16 * i, lx + 25, 52 + 16 * i, c, 2)
        svg.text(lx + 30, 56 + 16 * i, "%s: recovered %s" % (
            "snapshot restores" if r["mode"] == "snapshot" else "cold starts (--no-snapshots)",
            "%.1f s" % r["recover_s"] if r["recover_s"] is not None else "never"), 12)
    svg.text(lx + 30, 56 + 16 * len(results), "solid: ready; dotted: with starting; "
             "dashed: desired", 11, color="#444")
    svg.line(X(0), 40, X(0), 290, "#888", 1, "2,2")
    lo, hi = 10, 10000
    X2, Y2 = panel(svg, 70, 330, 760, 250, xr, (lo, hi), xt, [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000],
                   "p99 over the last 1 s (ms, log)", ylog=True)
    for r in results:
        c = COLORS.get(r["mode"], "#000")
        pts = []
        for t, p, _ in r["windows"]:
            if p is None:
                if pts:
                    svg.polyline(pts, c, 2)
                pts = []
            else:
                pts.append((X2(t), Y2(min(hi, p * 1e3))))
        svg.polyline(pts, c, 2)
        svg.line(X2(xr[0]), Y2(r["bound"] * 1e3), X2(tmax), Y2(r["bound"] * 1e3), c, 1, "6,3")
        if r["recover_s"] is not None:
            svg.line(X2(r["recover_s"]), 330, X2(r["recover_s"]), 580, c, 1, "2,2")
    svg.text(X2(tmax) - 4, Y2(results[0]["bound"] * 1e3) - 4, "2 x steady p99 (1 client)", 11, "end")
    svg.line(X2(0), 330, X2(0), 580, "#888", 1, "2,2")
    for r in results[:1]:
        svg.line(X(r["load_s"]), 40, X(r["load_s"]), 290, "#888", 1, "2,2")
        svg.line(X2(r["load_s"]), 330, X2(r["load_s"]), 580, "#888", 1, "2,2")
    svg.text(450, 608, "seconds since the step (load stops at %.0f s; gaps: windows with no completed request)"
             % min(r["load_s"] for r in results), 12, "middle")
    with open(path, "w") as f:
        f.write(svg.render())


def fmt_ms(x):
    return "%.0f" % (x * 1e3) if x == x else "-"


results = []
for mode in MODES:
    r = run_mode(mode)
    if r is None:
        sys.exit(1)
    results.append(r)
    print("scaleout: %s: steady (1 client) %d requests, p50 %s ms, p99 %s ms; step: %d requests, %d errors, "
          "peak desired %d, panic %.2f s, last-5-s p99 %s ms"
          % (mode, r["steady_n"], fmt_ms(r["steady_p50"]), fmt_ms(r["steady_p99"]), r["n"], r["errors"],
             r["peak_desired"], r["panic_s"], fmt_ms(r["tail_p99"])), flush=True)

print()
for r in results:
    for k, what in (("restore_ms", "restores"), ("ready_ms", "cold starts")):
        v = r[k]
        if v:
            print("scaleout: %s: daemon log, %d %s: median %.0f ms, max %.0f ms"
                  % (r["mode"], len(v), what, v[len(v) // 2], v[-1]))
print()
print("| mode | steady p99 (1 client), ms | time to recover, s | last request over 2x steady done at, s "
      "| peak instances | restores / cold starts | overall p50 / p99 / max (32 clients), ms "
      "| last 5 s p99, ms | requests | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in results:
    print("| %s | %s | %s | %.1f (%d requests) | %d | %d / %d | %s / %s / %s | %s | %d | %d |" % (
        r["mode"], fmt_ms(r["steady_p99"]),
        "%.1f" % r["recover_s"] if r["recover_s"] is not None else "not within %.0f s" % r["load_s"],
        r["last_slow_s"], r["n_slow"],
        r["peak_instances"], r["starts_restore"], r["starts_cold"], fmt_ms(r["p50"]), fmt_ms(r["p99"]),
        fmt_ms(r["max"]), fmt_ms(r["tail_p99"]), r["n"], r["errors"]))
if args.json:
    with open(args.json, "w") as f:
        json.dump(results, f)
if args.svg:
    plot(results, args.svg)
    print("scaleout: plot in %s" % args.svg)
if any(r["errors"] for r in results):
    print("scaleout: errors: %r" % [r["error_sample"] for r in results])
    sys.exit(1)
