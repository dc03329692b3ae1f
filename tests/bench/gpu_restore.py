#!/usr/bin/env python3
"""GPU cold start vs snapshot restore, measured through the daemon.

A GPU predict function (handlers/predict, MODEL=mlp, PREDICT_DEVICE=gpu,
fc.yaml gpuConfig) whose init maps WEIGHTS, uploads them to the device,
creates the cuBLAS handle and runs a warm-up pass; weights of 256 MiB
(8192x8192 + 8192x10) and 4 GiB (16 x 8192x8192 + 8192x10), made by
build/tools/gen_weights. For each size:

  cold     a daemon with --no-snapshots: every start runs init
  restore  a daemon with snapshots: the first instance is cold-started,
           warmed, its GPU state checkpointed (cuCheckpointProcessLock +
           Checkpoint) and dumped by CRIU; every measured start is a CRIU
           restore + cuCheckpointProcessRestore + Unlock
  reload   the same with PREDICT_GPU_WEIGHTS=reload: the handler frees its
           device weights in before_checkpoint (the snapshot parks no copy
           of them) and uploads them again from the mapped file through
           pinned staging in on_restore (its log line gives that time)

What is timed (client): from "an instance is needed" to "its first
:predict response is read" (a 1-row :predict, a pass over all the
weights), as tests/bench/restore.py does: the function is scaled to zero
before each start (minInstances 0, grace 0, stableWindow 6 s), REPLICAS
identical copies share the scale-in wait. p50 over --n starts per series,
fewer when --budget runs out (the count is printed).

Also printed: where restore time goes, from the daemon's lines (verify,
criu, GPU resume = cuCheckpointProcessRestore + unlock; the rest of the
first response = channel + on_restore + the first kernels), a second
:predict on the same warm instance for contrast; and whether every first
response (cold and restored) equals the first cold one bit for bit (the
predict handler prints each float in its shortest round-trip form, so
equal text is equal bits). Each figure also as "figure: NAME = VALUE UNIT".

Without root or a working CRIU only the cold series run (said so).
Usage: tests/bench/gpu_restore.py [--build DIR] [--n 10] [--sizes 4096,256]
       [--replicas 4] [--budget SECONDS]
Exit: 0; 77 without a GPU or the build; 1 on a failure (non-200, outputs
that differ).
"""
import argparse
import ctypes
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--build", default=os.environ.get("THAW_BUILD", os.path.join(ROOT, "build")))
ap.add_argument("--n", type=int, default=int(os.environ.get("BENCH_GPU_N", "10")))
ap.add_argument("--sizes", default=os.environ.get("BENCH_GPU_SIZES", "4096,256"),
                help="weights, MiB, in this order (the 4 GiB goals first: a short budget cuts the last)")
ap.add_argument("--replicas", type=int, default=int(os.environ.get("BENCH_GPU_REPLICAS", "4")))
ap.add_argument("--budget", type=float, default=float(os.environ.get("BENCH_GPU_BUDGET", "300")),
                help="seconds for the whole run; series stop early (and say so) past it")
args = ap.parse_args()
os.environ["THAW_BUILD"] = os.path.abspath(args.build)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from thawtest import BUILD, Daemon, Log, handler_so  # noqa: E402

# a time limit's SIGTERM (tests/gpu/run.sh) unwinds the with-blocks: the
# daemon and its instances are stopped, not left holding the GPU
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
CRIU = os.environ.get("THAW_CRIU", "/usr/local/lib/thaw/criu/criu")
T_END = time.time() + args.budget
SCALE = {"minInstances": 0, "maxInstances": 16, "scaleToZeroGracePeriodSeconds": 0, "maxQueueLength": 100,
         "stableWindowSeconds": 6}
RE_RESTORED = re.compile(r"(\S+): instance \S+ \(pid (\d+)\) restored in ([\d.]+) ms: queue [\d.]+, verify ([\d.]+), "
                         r"criu ([\d.]+), back to loop [\d.]+, on_restore and channel ([\d.]+)")
RE_READY = re.compile(r"(\S+): instance \S+ \(pid (\d+)\) ready in ([\d.]+) ms")
RE_GPU = re.compile(r"(\S+): GPU state of pid (\d+) resumed in ([\d.]+) ms: cuCheckpointProcessRestore ([\d.]+), "
                    r"unlock ([\d.]+)")
RE_SNAP = re.compile(r"(\S+): snapshot of pid (\d+) in (\S+): ([\d.]+) MiB in (\d+) files, dump ([\d.]+) ms")
RE_UPLOAD = re.compile(r"predict: ([\d.]+) MiB of weights uploaded again in ([\d.]+) ms")
RE_SUSPEND = re.compile(r"(\S+): GPU state of pid (\d+) moved to host memory in ([\d.]+) ms")


def skip(why):
    print("gpu_restore: skipped: " + why)
    sys.exit(77)


def figure(name, v, unit):
    print("figure: %s = %.6g %s" % (name, v, unit))


def gpu_present():
    """'' when the driver loads and sees a device, else why not."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "libcuda.so.1 not found (no NVIDIA driver)"
    if cu.cuInit(0) != 0:
        return "cuInit failed (no GPU visible)"
    n = ctypes.c_int(0)
    if cu.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value < 1:
        return "no CUDA device"
    return ""


for f in ("thaw", "thaw-instance", "handlers/predict.so", "tools/gen_weights"):
    if not os.path.exists(os.path.join(BUILD, f)):
        skip("%s/%s is not built (make)" % (BUILD, f))
# BENCH_GPU_CPU_DRYRUN=1: the same harness with PREDICT_DEVICE=cpu and no
# gpuConfig, to check the harness itself on a machine without a GPU; its
# figures are CPU figures and say so.
DRYRUN = os.environ.get("BENCH_GPU_CPU_DRYRUN") == "1"
why = "" if DRYRUN else gpu_present()
if why:
    skip(why)
if DRYRUN:
    print("gpu_restore: BENCH_GPU_CPU_DRYRUN=1: predict on the CPU, no GPU involved: not GPU figures")
criu_why = ""
if os.geteuid() != 0:
    criu_why = "not root"
elif not os.path.exists(CRIU):
    criu_why = "no CRIU at %s (make deps)" % CRIU
else:
    p = subprocess.run([CRIU, "check"], capture_output=True, text=True)
    if p.returncode != 0:
        criu_why = "criu check failed: " + (p.stdout + p.stderr).strip().splitlines()[-1][:200]
if criu_why:
    print("gpu_restore: CRIU cannot run here (%s): cold starts only, no restore figures" % criu_why)


def pctl(xs, p):
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def live(d, fn):
    m = d.metrics()
    return sum(m.get('thaw_instances{function="%s",state="%s"}' % (fn, s), 0) for s in ("starting", "idle", "busy"))


def wait_zero(d, fn, pids, timeout=90):
    t_end = time.time() + timeout
    while time.time() < t_end:
        if live(d, fn) == 0 and all(gone(p) for p in pids):
            return
        time.sleep(0.05)
    raise RuntimeError("%s did not scale to zero in %d s" % (fn, timeout))


def post(d, path, body, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    c.request("POST", path, body=body, headers={"content-type": "application/json"})
    r = c.getresponse()
    data = r.read()
    ms = (time.perf_counter() - t0) * 1e3
    c.close()
    return ms, r.status, data


def layers_for(mib):
    """mib // 256 square 8192-wide layers (256 MiB each) + a 10-wide head;
    below 256 MiB one square layer of about that size."""
    if mib < 256:
        w = max(16, int(math.sqrt(mib * 262144)))
        return [w, w, 10]
    return [8192] * (mib // 256 + 1) + [10]


def series(d, fns, body, n, kind):
    """Up to n starts over the replicas; each sample: first response (client),
    a second request on the same instance, and the daemon's lines."""
    log = Log(d)
    log.new()
    out = {"client": [], "warm": [], "bodies": [], "srv": [], "gpu": [], "cold_srv": [], "upload": []}
    pids = []
    while len(out["client"]) < n and time.time() < T_END:
        for fn in fns:
            wait_zero(d, fn, pids)
        for fn in fns[:n - len(out["client"])]:
            if time.time() >= T_END:
                break
            path = "/v1/models/%s:predict" % fn
            ms, st, data = post(d, path, body)
            if st != 200:
                raise RuntimeError("%s %s: status %d: %r" % (fn, kind, st, data[:300]))
            out["client"].append(ms)
            out["bodies"].append(data)
            ms2, st2, data2 = post(d, path, body)
            out["warm"].append(ms2)
            if st2 == 200 and data2 != data:
                out["bodies"].append(data2)
        time.sleep(0.05)
        for line in log.new():
            m = RE_RESTORED.search(line)
            if m and m.group(1) in fns:
                pids.append(int(m.group(2)))
                out["srv"].append({"total": float(m.group(3)), "verify": float(m.group(4)),
                                   "criu": float(m.group(5)), "channel": float(m.group(6))})
            m = RE_READY.search(line)
            if m and m.group(1) in fns:
                pids.append(int(m.group(2)))
                out["cold_srv"].append(float(m.group(3)))
            m = RE_UPLOAD.search(line)
            if m:
                out["upload"].append(float(m.group(2)))
            m = RE_GPU.search(line)
            if m and m.group(1) in fns:
                out["gpu"].append({"total": float(m.group(3)), "restore": float(m.group(4)),
                                   "unlock": float(m.group(5))})
    return out


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def ms(xs):
    return "%.1f" % statistics.median(xs) if xs else "n/a"


def run_size(mib, tmp):
    widths = layers_for(mib)
    weights = os.path.join(tmp, "w%d.safetensors" % mib)
    t0 = time.time()
    subprocess.run([os.path.join(BUILD, "tools", "gen_weights"), weights, "--layers",
                    ",".join(map(str, widths))], check=True, stdout=subprocess.DEVNULL)
    print("weights %d MiB: %s (%.1f MiB on disk, made in %.1f s)" %
          (mib, weights, os.path.getsize(weights) / 1048576, time.time() - t0))
    x = [round(math.sin(i * 0.37) * 0.5, 6) for i in range(widths[0])]
    body = json.dumps({"instances": [x]}).encode()
    cfg = {"handler": handler_so("predict"), "timeout": 600, "instanceConcurrency": 1,
           "memorySize": 32768 if mib > 1024 else 8192, "cpu": min(16, os.cpu_count() or 1),
           "scalingConfig": SCALE,
           "environmentVariables": {"MODEL": "mlp", "WEIGHTS": weights, "PREDICT_DEVICE": "gpu",
                                    "PREDICT_MAX_BATCH": "8"},
           "warmup": {"method": "POST", "path": "/", "body": body.decode()}}
    if DRYRUN:
        cfg["environmentVariables"]["PREDICT_DEVICE"] = "cpu"
    else:
        cfg["gpuConfig"] = {"gpuType": "bench", "gpuMemorySize": mib + 2048}
    fns = {"gpu%d_%d" % (mib, i): cfg for i in range(args.replicas)}
    names = sorted(fns)
    res = {}
    kinds = ["cold"] + ([] if criu_why else ["restore", "reload"])
    for kind in kinds:
        if time.time() >= T_END:
            print("%d MiB %s: skipped, budget spent" % (mib, kind))
            continue
        argv = ["--no-access-log"] + (["--no-snapshots"] if kind == "cold" else [])
        if kind == "reload":
            rcfg = dict(cfg, environmentVariables=dict(cfg["environmentVariables"], PREDICT_GPU_WEIGHTS="reload"))
            fns = {n: rcfg for n in fns}
        with Daemon(fns, args=argv, ready_timeout=max(60, T_END - time.time())) as d:
            r = series(d, names, body, args.n, kind)
            txt = d.logs()
            if kind != "cold":
                for m in RE_SUSPEND.finditer(txt):
                    r.setdefault("suspend", []).append(float(m.group(3)))
                for m in RE_SNAP.finditer(txt):
                    r.setdefault("image", []).append(float(m.group(4)))
                    r.setdefault("dump", []).append(float(m.group(6)))
                if not r["srv"]:
                    print("%d MiB restore: no restore happened; daemon lines:\n%s" % (mib, "\n".join(
                        l for l in txt.splitlines() if "snapshot" in l or "GPU" in l or "restore" in l)[-3000:]))
        res[kind] = r
    return res


def report(mib, res, floor_ms):
    ok = True
    ref = None
    for kind in ("cold", "restore", "reload"):
        r = res.get(kind)
        if not r or not r["client"]:
            continue
        ref = ref or r["bodies"][0]
        same = all(b == ref for b in r["bodies"])
        ok &= same
        n = len(r["client"])
        print("%5d MiB %-7s n=%-2d first :predict p50 %9.1f ms (min %.1f, p99 %.1f); warm request p50 %.2f ms; "
              "outputs bit-identical to cold: %s" % (mib, kind, n, med(r["client"]), min(r["client"]),
                                                     pctl(r["client"], 99), med(r["warm"]), "yes" if same else "NO"))
        figure("%s_%dMiB_p50_ms" % (kind, mib), med(r["client"]), "ms")
        figure("%s_%dMiB_n" % (kind, mib), n, "starts")
        if kind == "cold" and r["cold_srv"]:
            print("      cold: daemon 'ready in' p50 %.1f ms (init: map, cuInit, upload, cuBLAS, warm-up)" %
                  med(r["cold_srv"]))
        if kind != "cold":
            s, g = r["srv"], r["gpu"]
            if s:
                print("      %s (daemon, p50): total %.1f ms = verify %.1f + criu %.1f + GPU resume %s "
                      "(cuCheckpointProcessRestore %s + unlock %s) + channel/on_restore %.1f + wait; "
                      "first response - daemon total %.1f ms (first kernels)" %
                      (kind, med([x["total"] for x in s]), med([x["verify"] for x in s]), med([x["criu"] for x in s]),
                       ms([x["total"] for x in g]), ms([x["restore"] for x in g]), ms([x["unlock"] for x in g]),
                       med([x["channel"] for x in s]), med(r["client"]) - med([x["total"] for x in s])))
                figure("%s_%dMiB_criu_ms" % (kind, mib), med([x["criu"] for x in s]), "ms")
                if g:
                    figure("%s_%dMiB_cuRestore_ms" % (kind, mib), med([x["restore"] for x in g]), "ms")
                    figure("%s_%dMiB_unlock_ms" % (kind, mib), med([x["unlock"] for x in g]), "ms")
                else:
                    print("      no 'GPU state ... resumed' line: the copies had no CUDA state to resume")
            if r["upload"]:
                print("      on_restore upload of the weights (pinned staging) p50 %.1f ms" % med(r["upload"]))
                figure("%s_%dMiB_upload_ms" % (kind, mib), med(r["upload"]), "ms")
            if r.get("suspend"):
                print("      checkpoint: GPU suspend %.1f ms, dump %.1f ms, image %.1f MiB" %
                      (med(r["suspend"]), med(r.get("dump", [])), med(r.get("image", []))))
            if "cold" in res and res["cold"]["client"]:
                ratio = med(res["cold"]["client"]) / med(r["client"])
                print("      cold / %s = %.1fx (goal >= 20x)" % (kind, ratio))
                figure("cold_over_%s_%dMiB" % (kind, mib), ratio, "x")
            if floor_ms:
                print("      %s / pinned H2D floor of %d MiB (%.1f ms) = %.2fx (goal <= 1.5x); "
                      "%s - floor = %.1f ms (goal with weights out of the snapshot <= 50 ms)" %
                      (kind, mib, floor_ms, med(r["client"]) / floor_ms, kind, med(r["client"]) - floor_ms))
                figure("%s_over_h2d_%dMiB" % (kind, mib), med(r["client"]) / floor_ms, "x")
                figure("%s_minus_h2d_%dMiB_ms" % (kind, mib), med(r["client"]) - floor_ms, "ms")
    figure("outputs_bit_identical_%dMiB" % mib, 1 if ok else 0, "bool")
    return ok


def h2d_floor(sizes):
    """The pinned copy floor of the same bytes, in this run: bench_gpu."""
    exe = os.path.join(BUILD, "tests", "bench", "bench_gpu")
    if not os.path.exists(exe):
        return {}
    p = subprocess.run([exe, "--sizes", ",".join(map(str, sizes)), "--peak", "1024", "--seconds", "0.2",
                        "--layers", "256,10"], capture_output=True, text=True, timeout=300)
    out = {}
    for m in re.finditer(r"figure: h2d_pinned_(\d+)MiB_ms = ([\d.e+]+)", p.stdout):
        out[int(m.group(1))] = float(m.group(2))
    return out


def main():
    sizes = [int(s) for s in args.sizes.split(",") if s]
    floors = h2d_floor(sizes)
    # not under /tmp: instances have their own (docs/architecture.md "Private scratch")
    tmp = tempfile.mkdtemp(prefix="thaw-gpu-bench-", dir=os.environ.get("BENCH_TMP", "/var/tmp"))
    ok = True
    try:
        for mib in sizes:
            if time.time() >= T_END:
                print("%d MiB: skipped, budget spent" % mib)
                continue
            res = run_size(mib, tmp)
            ok &= report(mib, res, floors.get(mib))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


main()
