"""`thaw k8s DIR` (docs/kubernetes.md): the manifests it prints validate
offline against the Kubernetes, Knative and KEDA schemas (npm packages of
tests/k8s/package-lock.json, installed by `make deps`; tests/k8s/validate.mjs);
the image is named by the digest `thaw build` wrote; the same input gives
the same bytes, on stdout or with -o; refusals exit 1 with file:line, usage
errors exit 2; the validator itself refuses a broken manifest; the shipped
seccomp profile allows io_uring and what CRIU needs."""
import json
import os
import subprocess
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thawtest import (ROOT, THAW, Daemon, check, criu_works, finish, handler_so,  # noqa: E402
                      need_built, skip, skip_part)

K8S = os.path.join(ROOT, "tests", "k8s")
VALIDATE = os.path.join(K8S, "validate.mjs")
REPO = "registry.example:5000/functions/echo"
PROFILE = os.path.join(ROOT, "deploy", "seccomp-thaw.json")
SECCOMP_EXEC = os.path.join(K8S, "seccomp_exec.py")
DEBIAN_PY = "/usr/bin/python3"  # Debian's, with python3-seccomp


class WrappedDaemon(Daemon):
    """Daemon whose thaw serve starts behind self.wrap (a command prefix)."""
    wrap = []

    def start(self):
        # Daemon.start with the wrapper in front of thaw; False when not ready
        cmd = self.wrap + [THAW, "serve", "--listen", "127.0.0.1", "--port", str(self.port),
                           "--functions", self.fn_dir, "--state-dir", self.state_dir,
                           "--snapshot-dir", self.snap_dir, "--threads", "1"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if self.request("GET", "/readyz", timeout=2).status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False


    def stop(self):
        """Daemon.stop, then kills what the daemon left behind: a criu
        restore that never finished (no SETPCAP) outlives the daemon with
        its half-restored task. Found by this daemon's own folders: criu's
        command line names the snapshot folder, the task's environment the
        function folder."""
        super().stop()
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read()
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if (self.snap_dir + "/").encode() in cmd or \
                    ("THAW_FUNCTION_DIR=%s/" % self.fn_dir).encode() in env:
                left.append(int(pid))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if left:
            print("note: the daemon left %d process(es) behind (criu restore, its task); killed" % len(left))
        return left


class SeccompDaemon(WrappedDaemon):
    """Under the shipped seccomp profile (tests/k8s/seccomp_exec.py),
    optionally without some of its syscalls."""

    def __init__(self, functions, drop=(), **kw):
        super().__init__(functions, **kw)
        self.wrap = [DEBIAN_PY, SECCOMP_EXEC, PROFILE] + (["--drop", ",".join(drop)] if drop else []) + ["--"]


class CapDaemon(WrappedDaemon):
    """With only the given capabilities (setpriv's bounding set: root's
    effective set after exec), no seccomp filter."""

    def __init__(self, functions, caps, **kw):
        super().__init__(functions, **kw)
        self.wrap = ["setpriv", "--bounding-set", ",".join(["-all"] + ["+" + c.lower() for c in caps]), "--"]


def thaw(*args):
    p = subprocess.run([THAW, *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def validate(*files):
    p = subprocess.run(["node", VALIDATE, *files], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def main():
    need_built(THAW)
    if not shutil.which("node"):
        skip("node is not installed (make deps installs Debian's nodejs)")
    if not os.path.isdir(os.path.join(K8S, "node_modules", "@kubernetes-models")):
        skip("tests/k8s/node_modules is missing (make deps runs scripts/deps.d/40-k8s-schemas.sh)")
    tmp = tempfile.mkdtemp(prefix="test_k8s.")
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


def run(tmp):
    # a function folder built into an OCI layout: its digest goes in the manifest
    fn = os.path.join(tmp, "echo")
    os.makedirs(fn)
    shutil.copy(os.path.join(ROOT, "handlers", "echo", "echo.c"), os.path.join(fn, "echo.c"))
    write(os.path.join(fn, "fc.yaml"),
          "name: echo\nhandler: echo.c\ntimeout: 20\nmemorySize: 256\ncpu: 0.5\n"
          "instanceConcurrency: 8\nscalingConfig:\n  minInstances: 2\n  maxInstances: 16\n")
    p = subprocess.run([THAW, "build", fn], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "thaw build of the function folder", p.stderr[-400:])
    digest = p.stdout.strip().splitlines()[-1] if p.returncode == 0 else "?"

    rc, knative, err = thaw("k8s", fn, "--image", REPO)
    check(rc == 0 and err == "", "thaw k8s DIR --image REPO: exit 0, nothing on stderr", (rc, err))
    check(("image: \"%s@%s\"" % (REPO, digest)) in knative,
          "the image is REPO@ the digest thaw build printed", digest)
    check("containerConcurrency: 32\n" in knative, "containerConcurrency 4 per pod x instanceConcurrency 8")
    check("autoscaling.knative.dev/min-scale: \"1\"" in knative and
          "autoscaling.knative.dev/max-scale: \"4\"" in knative,
          "min/max scale from minInstances 2, maxInstances 16 at 4 per pod")

    # every kind, and a function with every mapped field, validates
    full = os.path.join(tmp, "full")
    os.makedirs(full)
    write(os.path.join(full, "fc.yaml"),
          "name: resnet\nhandler: h.so\ntimeout: 599\nmemorySize: 4096\ncpu: 2\n"
          "instanceConcurrency: 4\nsnapshot: true\nhttpTrigger:\n  authType: anonymous\n"
          "gpuConfig:\n  gpuType: fc.gpu.tesla.1\n  gpuMemorySize: 16384\n"
          "scalingConfig:\n  minInstances: 0\n  maxInstances: 20\n  targetConcurrency: 3\n"
          "  stableWindowSeconds: 120\n  panicWindowPercentage: 15\n"
          "  panicThresholdPercentage: 250\n  scaleToZeroGracePeriodSeconds: 300\n")
    files = []
    img = REPO + "@sha256:" + "ab" * 32
    cases = [
        ("echo-knative", [fn, "--image", REPO]),
        ("echo-deployment", [fn, "--image", REPO, "--kind", "deployment", "--namespace", "fns",
                             "--host", "echo.example.com"]),
        ("full-knative", [full, "--image", img, "--instances-per-pod", "5", "--port", "9000"]),
        ("full-deployment", [full, "--image", img, "--kind", "deployment"]),
        ("root-knative", [ROOT, "--image", img, "--instances-per-pod", "1"]),
    ]
    for name, args in cases:
        out = os.path.join(tmp, name + ".yaml")
        rc, _, err = thaw("k8s", *args, "-o", out)
        check(rc == 0 and os.path.exists(out), "thaw k8s %s -o FILE" % name, (rc, err))
        files.append(out)
    rc, out = validate(*files)
    check(rc == 0, "every manifest validates against the Kubernetes, Knative and KEDA schemas", out)
    kinds = sorted(set(l.split()[2] for l in out.splitlines() if l.startswith("ok ")))
    check(kinds == ["Deployment", "HTTPScaledObject", "Service"] and out.count("ok ") == 9,
          "9 documents checked: 3 Knative Services, 2 x (Deployment, Service, HTTPScaledObject)", out)

    # deterministic: twice the same bytes, and -o writes what stdout shows
    rc2, again, _ = thaw("k8s", fn, "--image", REPO)
    check(rc2 == 0 and again == knative, "the same input gives the same bytes")
    with open(files[0]) as f:
        check(f.read() == knative, "-o FILE holds what stdout printed")

    # the validator is not vacuous: a broken manifest fails
    broken = os.path.join(tmp, "broken.yaml")
    write(broken, knative.replace("containerConcurrency: 32", "containerConcurrency: \"many\""))
    rc, out = validate(broken)
    check(rc == 1 and "containerConcurrency must be integer" in out,
          "the validator refuses containerConcurrency: \"many\"", out)
    broken_so = os.path.join(tmp, "broken-so.yaml")
    with open(files[1]) as f:
        text = f.read()
    check("targetValue: 23\n" in text, "HTTPScaledObject targetValue: 70 % of 4 x 8, rounded up")
    write(broken_so, text.replace("targetValue: 23", "targetValue: 0").replace(
        "service: \"echo\"\n    port: 80", "service: \"echo\"\n    porrt: 80"))
    rc, out = validate(broken_so)
    check(rc == 1 and "targetValue must be an integer >= 1" in out and "porrt is not a field" in out,
          "the HTTPScaledObject check refuses a bad targetValue and an unknown field", out)

    # warnings on stderr, manifest still printed
    rc, out, err = thaw("k8s", full, "--image", img)
    check(rc == 0 and err == "" and "timeoutSeconds: 600\n" in out,
          "timeout 599: timeoutSeconds 600, no warning (Knative's default cap)", err)
    write(os.path.join(full, "fc.yaml"), "name: slow\nhandler: h.so\ntimeout: 3600\n")
    rc, out, err = thaw("k8s", full, "--image", img)
    check(rc == 0 and "warning:" in err and "max-revision-timeout-seconds" in err and
          "timeoutSeconds: 3601" in out, "timeout 3600: a warning on stderr, the manifest on stdout",
          (rc, err))

    # refusals: exit 1 with file:line
    bad = os.path.join(tmp, "bad")
    os.makedirs(bad)
    write(os.path.join(bad, "fc.yaml"), "# a function\nname: Echo_1\nhandler: h.so\n")
    rc, out, err = thaw("k8s", bad, "--image", img)
    check(rc == 1 and out == "" and
          err.startswith("thaw k8s: %s/fc.yaml:2: name: \"Echo_1\" cannot name a Kubernetes" % bad),
          "a name Kubernetes cannot use: exit 1, file:line, nothing on stdout", (rc, err))
    rc, out, err = thaw("k8s", bad, "--image", img, "--name", "echo-1")
    check(rc == 0 and "name: \"echo-1\"" in out and "thaw.io/function: \"Echo_1\"" in out,
          "--name gives a Kubernetes name; the function keeps its own", (rc, err))
    write(os.path.join(bad, "fc.yaml"), "name: e\nhandler: h.so\nscalingConfig:\n  maxInstances: 2\n")
    rc, out, err = thaw("k8s", bad, "--image", img, "--instances-per-pod", "3")
    check(rc == 1 and "fc.yaml:4: scalingConfig.maxInstances: 2 is fewer than --instances-per-pod 3" in err,
          "--instances-per-pod over maxInstances: exit 1 at maxInstances's line", err)
    write(os.path.join(bad, "fc.yaml"), "name: e\nhandler: h.so\ntimeout: soon\n")
    rc, out, err = thaw("k8s", bad, "--image", img)
    check(rc == 1 and "fc.yaml:3: timeout: expected an integer of seconds" in err,
          "a bad fc.yaml: exit 1 with config_load's file:line", err)
    rc, out, err = thaw("k8s", bad, "--image", REPO)
    check(rc == 1 and ".thaw/image/index.json: No such file or directory" in err,
          "no thaw build yet: exit 1 naming the layout's index.json", err)

    # usage: exit 2
    for args, what in [([fn], "no --image"),
                       ([fn, "--image", REPO + ":latest"], "a tag instead of a digest"),
                       ([fn, "--image", REPO + "@sha256:abc"], "a short digest"),
                       ([fn, "--image", 'r/x"\nkind: Secret'], "quotes and newlines in --image"),
                       ([fn, "--image", img, "--seccomp", "/etc/x.json"], "an absolute --seccomp path"),
                       ([fn, "--kind", "statefulset", "--image", img], "an unknown --kind"),
                       ([fn, "--image", img, "--instances-per-pod", "0"], "--instances-per-pod 0")]:
        rc, out, err = thaw("k8s", *args)
        check(rc == 2 and out == "" and err.startswith("thaw k8s: "), "usage error: %s: exit 2" % what,
              (rc, err))
    rc, out, err = thaw("k8s", fn, "--image", "localhost:5000/echo")
    check(rc == 0 and "localhost:5000/echo@sha256:" in out, "a registry port is not taken for a tag", err)

    # the seccomp profile the manifests name
    with open(os.path.join(ROOT, "deploy", "seccomp-thaw.json")) as f:
        prof = json.load(f)
    names = [n for s in prof["syscalls"] for n in s["names"]]
    check(prof["defaultAction"] == "SCMP_ACT_ERRNO" and len(names) == len(set(names)),
          "seccomp profile: deny by default, no syscall listed twice")
    need = ["io_uring_setup", "io_uring_enter", "io_uring_register", "ptrace", "process_vm_readv",
            "kcmp", "clone", "clone3", "unshare", "setns", "mount", "memfd_create", "seccomp"]
    check(all(n in names for n in need), "seccomp profile allows io_uring and what CRIU needs",
          [n for n in need if n not in names])
    check(not any(n in names for n in ["bpf", "kexec_load", "init_module", "perf_event_open", "reboot",
                                       "settimeofday", "clock_settime", "adjtimex", "clock_adjtime"]),
          "seccomp profile denies bpf, kexec, modules, perf, reboot, setting the clock")
    seccomp_applied()
    capabilities()


def manifest_caps():
    """The capabilities `thaw k8s` adds, read from its output."""
    rc, out, _ = thaw("k8s", ROOT, "--image", REPO + "@sha256:" + "0" * 64, "--kind", "deployment")
    block = out.split("add:\n", 1)[1].split("seccompProfile:", 1)[0]
    return [l.strip().strip('-').strip().strip('"') for l in block.splitlines() if l.strip()]


def capabilities():
    """The manifest's capability set, and nothing else, suffices for the
    daemon, instances, criu dump and restore; without any one of the five
    the runs below showed needed, restores stop (docs/kubernetes.md)."""
    no_criu = criu_works()
    if no_criu:
        skip_part("capability set with criu: " + no_criu)
        return
    if not shutil.which("setpriv"):
        skip_part("capability set: setpriv (util-linux) missing")
        return
    with open("/proc/self/status") as f:
        bnd = int([l for l in f if l.startswith("CapBnd:")][0].split()[1], 16)
    caps = manifest_caps()
    fault = {"handler": handler_so("fault"), "timeout": 10}

    def run(caps, ready_timeout=15):
        d = CapDaemon({"fault": fault}, caps, ready_timeout=ready_timeout)
        try:
            if not d.start():
                return None, d.logs()
            outs = []
            ts = [threading.Thread(target=lambda: outs.append(
                d.request("GET", "/fault/sleep?ms=300", timeout=20).status)) for _ in range(3)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
            m = d.metrics()
            return (outs, m.get('thaw_instance_starts_total{function="fault",kind="restore"}', 0)), d.logs()
        finally:
            d.stop()

    got, log = run(caps)
    check(got is not None and got[0] == [200, 200, 200] and got[1] >= 1,
          "only the manifest's capabilities %s: instances start, criu dumps and restores" % caps,
          (got, [l for l in log.splitlines() if "rror" in l][:4]))
    if "SYS_RESOURCE" in caps and not (bnd >> 24) & 1:
        print("note: SYS_RESOURCE is not in this machine's bounding set; the run had the others")
    # NET_ADMIN: `criu check` (thaw's probe) fails on TCP repair mode
    for c, why in [("SYS_ADMIN", "namespaces need root"), ("NET_ADMIN", "criu check failed"),
                   ("SYS_CHROOT", "setns needs CAP_SYS_ADMIN and CAP_SYS_CHROOT"), ("SYS_TIME", "monotonic clock offset"),
                   # criu restore without SETPCAP: no error, the restore never
                   # completes and /readyz stays 503 (a daemon bug to chase)
                   ("SETPCAP", None)]:
        got, log = run([x for x in caps if x != c], ready_timeout=8)
        restored = got is not None and got[1] >= 1
        check(not restored and (why is None or why in log),
              "without %s: no restore%s" % (c, "" if why is None else " (%s)" % why),
              (got, [l for l in log.splitlines() if "rror" in l][:3]))


def seccomp_denies_nothing(fault):
    """The same run with the profile's default action LOG instead of EPERM:
    the kernel logs (audit type 1326) every syscall the profile would have
    refused; there must be none from the daemon, its instances or criu."""
    dm = subprocess.run(["dmesg"], capture_output=True, text=True)
    if dm.returncode:
        skip_part("profile lacks nothing: dmesg unreadable here: " + dm.stderr.strip()[:100])
        return
    before = len(dm.stdout.splitlines())
    with SeccompDaemon({"fault": fault}, env={"THAW_SECCOMP_LOG": "1"}) as d:
        check(d.request("GET", "/fault/sleep?ms=50", timeout=20).status == 200, "LOG mode: answered")
        time.sleep(0.5)
    after = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()[before:]
    logged = [l for l in after if "type=1326" in l]
    check(not logged, "the profile would refuse nothing the daemon, instances and criu dump called", logged[:3])


def seccomp_applied():
    """The profile installed for real around the daemon: its loop, instances
    in namespaces, criu dump and restore all run under the filter."""
    if subprocess.run([DEBIAN_PY, "-c", "import seccomp"], capture_output=True).returncode:
        skip_part("seccomp profile applied: python3-seccomp missing (make deps installs it)")
        return
    need_built(handler_so("fault"))
    fault = {"handler": handler_so("fault"), "timeout": 10}
    no_criu = criu_works()
    with SeccompDaemon({"fault": fault}) as d:
        check(d.proc.poll() is None, "under the profile, thaw serve starts and /readyz answers 200", d.logs()[-1500:])
        outs = []

        def call():
            outs.append(d.request("GET", "/fault/sleep?ms=400", timeout=20).status)
        ts = [threading.Thread(target=call) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        check(outs == [200, 200, 200], "3 concurrent requests answered under the profile", outs)
        m = d.metrics()
        starts = {k: v for k, v in m.items() if k.startswith("thaw_instance_starts_total")}
        log = d.logs()
        if no_criu:
            skip_part("criu under the seccomp profile: " + no_criu)
        else:
            # the kernel refuses PTRACE_O_SUSPEND_SECCOMP to a tracer that is
            # itself under seccomp: criu cannot dump the instance, whose
            # filter it inherited; thaw goes on with cold starts
            check("suspending seccomp failed: Operation not permitted" in log and
                  m.get('thaw_instance_starts_total{function="fault",kind="restore"}', 0) == 0 and
                  m.get('thaw_instance_starts_total{function="fault",kind="cold"}', 0) >= 1,
                  "under any seccomp filter criu dump fails (suspending seccomp) and instances cold start",
                  (starts, [l for l in log.splitlines() if "Error" in l][:4]))
        denied = [l for l in log.splitlines() if "Operation not permitted" in l and
                  "suspending seccomp" not in l and "RLIMIT_NOFILE" not in l]
        check(not denied, "nothing else refused in the daemon's log", denied[:3])
    seccomp_denies_nothing(fault)

    # without io_uring (what runtimes' default profiles do): the daemon
    # serves on epoll and says so in one line (docs/kubernetes.md, "What
    # degrades how")
    d = SeccompDaemon({"fault": fault}, drop=["io_uring_setup", "io_uring_enter", "io_uring_register"],
                      ready_timeout=10)
    try:
        up = d.start()
        r = d.request("GET", "/fault/sleep?ms=10", timeout=20) if up else None
        log = d.logs()
        check(up and r.status == 200 and
              log.count("io_uring_setup: Operation not permitted") == 1 and
              "the loops run on epoll" in log,
              "io_uring blocked: thaw serve says so in one line and serves on epoll",
              (up, r, log[-800:]))
    finally:
        d.stop()


main()
