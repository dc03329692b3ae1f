"""Figures for docs/benchmarks.md "Deploy": see deploy.sh."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from thawtest import BUILD, THAW, Daemon, handler_so, write_function  # noqa: E402

MIB = int(os.environ.get("BENCH_DEPLOY_WEIGHTS_MIB", "1024"))
side = 8192 if MIB >= 1024 else 2048
# four square layers of F32 make about MIB MiB
n = max(1, round(MIB * 1048576 / (side * side * 4)))
layers = ",".join([str(side)] * (n + 1) + ["10"])

work = tempfile.mkdtemp(prefix="thaw-bench-deploy-", dir=os.environ.get("BENCH_TMP", "/var/tmp"))
fn = os.path.join(work, "predict")
os.makedirs(fn)
subprocess.run([os.path.join(BUILD, "tools", "gen_weights"), os.path.join(fn, "w.safetensors"),
                "--layers", layers], check=True, stdout=subprocess.DEVNULL)
size = os.path.getsize(os.path.join(fn, "w.safetensors"))
warm = '{"instances": [[%s]]}' % ",".join(["0.5"] * side)
write_function(work, "predict", {"handler": handler_so("predict"), "timeout": 120,
                          "memorySize": 4096, "cpu": os.cpu_count(), "modelFiles": ["w.safetensors"],
                          "environmentVariables": {"MODEL": "mlp", "WEIGHTS": "w.safetensors",
                                                   "PREDICT_DEVICE": "cpu"},
                          "warmup": {"method": "POST", "path": "/", "body": warm}})


def deploy(d):
    env = dict(os.environ, THAW_URL="http://127.0.0.1:%d" % d.port)
    t0 = time.time()
    p = subprocess.run([THAW, "deploy", fn, "--state-dir", d.state_dir], env=env,
                       capture_output=True, text=True, timeout=900)
    wall = time.time() - t0
    if p.returncode:
        sys.exit("deploy failed: %s %s" % (p.stdout, p.stderr))
    out = p.stdout
    build = float(re.search(r"^built \S+ \S+ \(([\d.]+) s\)", out, re.M).group(1))
    up = sum(float(x) for x in re.findall(r"uploaded in ([\d.]+) s", out))
    return wall, build, up, out


print("deploy: predict with %.0f MiB of synthetic weights (modelFiles), folder %s" % (size / 1048576, fn))
print("%-34s %8s %8s %8s %10s" % ("", "wall s", "build s", "upload s", "rest s"))
try:
    with Daemon() as d:
        rows = []
        rows.append(("first deploy (clean state)",) + deploy(d))
        rows.append(("same folder again",) + deploy(d))
        with open(os.path.join(fn, "fc.yaml"), "a") as f:
            f.write("description: changed\n")
        rows.append(("fc.yaml changed",) + deploy(d))
        for name, wall, build, up, out in rows:
            print("%-34s %8.2f %8.2f %8.2f %10.2f" % (name, wall, build, up, wall - build - up))
        print("(rest: the daemon unpacks the layers, starts the instance, runs the warm-up and takes the snapshot)")
        print("daemon log, first deploy:")
        for line in d.logs().splitlines():
            if re.search(r"unpacked in|ready in|snapshot of pid", line):
                print("  " + line.split(": ", 1)[-1])
                if "snapshot of pid" in line:
                    break
        print("last deploy's output:\n" + out)
finally:
    shutil.rmtree(work, ignore_errors=True)
