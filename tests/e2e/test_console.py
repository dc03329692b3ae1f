"""The web console in a real browser: headless Chromium (Debian's chromium)
driven by puppeteer-core (tests/console, npm ci) against a daemon with the
echo example and a function that logs. The token prompt, the functions
table with figures (instances by state with spares, memory per instance),
a chart with points after traffic, the memory per instance chart with
points where memory cgroups work (and none, not zeros, where they do not), a log search that
finds a line this test caused, an invoke showing echo's answer, a rollback
changing the serving version; without the token every data call is 401; no
request leaves the origin. Screenshots: BUILD/console-screenshots/."""
import json
import os
import shutil
import subprocess
import threading

from thawtest import BUILD, ROOT, Daemon, cgroup_works, check, finish, handler_so, skip, write_function

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODE = shutil.which("node")
DRIVER = os.path.join(ROOT, "tests", "console", "console.test.mjs")
if not CHROMIUM or not NODE:
    skip("no chromium or node (make deps installs them)")
if not os.path.isdir(os.path.join(ROOT, "tests", "console", "node_modules", "puppeteer-core")):
    skip("no puppeteer-core: cd tests/console && npm ci (make deps does it)")

# the echo example's fc.yaml, with the handler this build made
ECHO = {"handler": handler_so("echo"), "timeout": 3, "memorySize": 128, "instanceConcurrency": 4}
NOISY = {"handler": handler_so("fault"), "timeout": 10}
SHOTS = os.path.join(BUILD, "console-screenshots")

# one fake GPU (tests/console/fake_nvml.c): the GPU path without a GPU
import tempfile
FAKE_NVML = os.path.join(tempfile.mkdtemp(prefix="thaw-nvml-"), "libfake-nvml.so")
subprocess.run(["cc", "-shared", "-fPIC", "-o", FAKE_NVML, os.path.join(ROOT, "tests", "console", "fake_nvml.c")],
               check=True)

with Daemon({"echo": ECHO, "noisy": NOISY}, env={"THAW_NVML_LIB": FAKE_NVML}) as d:
    token = open(os.path.join(d.state_dir, "admin.token")).read().strip()
    auth = {"Authorization": "Bearer " + token}
    # a second version of echo, so there is one to roll back to
    v2 = write_function(os.path.join(d.tmp, "v2"), "echo", dict(ECHO, timeout=5))
    r = d.request("POST", "/admin/functions", body=json.dumps({"dir": v2}), headers=auth)
    check(r.status == 201, "echo v2 deployed", r)
    from thawtest import wait_for
    check(wait_for(lambda: d.request("GET", "/admin/functions/echo", headers=auth).json().get("current") == 2),
          "echo v2 serves")
    # a newer noisy that fails to initialize: v1 keeps serving
    broken = write_function(os.path.join(d.tmp, "broken"), "noisy",
                            dict(NOISY, environmentVariables={"FAULT_INIT_FAIL": "bad weights"}))
    r = d.request("POST", "/admin/functions", body=json.dumps({"dir": broken}), headers=auth)
    check(r.status == 201, "noisy v2 (broken) deployed", r)
    check(wait_for(lambda: d.request("GET", "/admin/functions/noisy/history", headers=auth).status == 200 and
                   d.request("GET", "/admin/functions/noisy", headers=auth).json()["versions"][-1]["state"] == "failed"),
          "noisy v2 failed, v1 serves")
    # the log line the browser will search for
    r = d.request("GET", "/noisy/log?n=37")
    check(r.status == 200, "noisy logged 37 lines", r)

    # light steady traffic while the browser looks: req/s, latency, charts
    stop = threading.Event()

    def load():
        c = d.connect()
        while not stop.is_set():
            try:
                d.request("POST", "/echo/x", body=b"hello", conn=c)
            except OSError:
                c = d.connect()
            stop.wait(0.02)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    # MEMCG: whether instances have memory cgroups here, so the memory chart has points
    env = dict(os.environ, BASE="http://127.0.0.1:%d" % d.port, TOKEN=token, CHROMIUM=CHROMIUM, SHOTS=SHOTS,
               MEMCG="0" if cgroup_works("memory") else "1")
    p = subprocess.run([NODE, DRIVER], env=env, capture_output=True, text=True, timeout=240,
                       cwd=os.path.dirname(DRIVER))
    stop.set()
    t.join(5)
    print(p.stdout)
    if p.stderr.strip():
        print(p.stderr[-3000:])
    check(p.returncode == 0, "the browser checks passed (above)", p.returncode)
    lines = p.stdout.strip().splitlines()
    figures = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    print("figures:", figures)
    check(figures.get("page_bytes", 0) > 0, "console size measured", figures)
    # the settings the alert rules compare with (docs/prometheus-alerts.yml)
    m = d.request("GET", "/metrics").body.decode()
    check('thaw_function_max_instances{function="echo"} 8' in m and
          'thaw_function_timeout_seconds{function="echo"} 3' in m and
          'thaw_function_init_failed{function="noisy"} 1' in m and
          'thaw_function_init_failed{function="echo"} 0' in m, "/metrics: thaw_function_* settings")
    check('thaw_gpu_utilization_ratio{gpu="0",name="Fake GPU"} 0.42' in m and
          'thaw_gpu_memory_used_bytes{gpu="0",name="Fake GPU"} 12884901888' in m and
          'thaw_gpu_memory_total_bytes{gpu="0",name="Fake GPU"} 85899345920' in m,
          "/metrics: the (fake) GPU's utilisation and memory")
    # the daemon agrees with what the browser saw
    check(d.request("GET", "/admin/functions/echo", headers=auth).json().get("current") == 1,
          "echo serves v1 after the console's rollback")
shutil.rmtree(os.path.dirname(FAKE_NVML), ignore_errors=True)
finish()
