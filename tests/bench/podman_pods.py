"""New pod to first response under podman, with the snapshot layer vs
without it (cold start), same function, same base, same run
(docs/benchmarks.md, "New pods under podman").

For each function: `thaw build --base` (image A, no snapshot), a snapshot
taken in a container of A and added as a layer (`thaw build --snapshot`,
image B), both pushed to a local docker-registry and pulled before timing
(pulls are not timed). Then ROUNDS times, alternating: `podman kube play` of
the generated Deployment (1 replica) of A and of B; the clock starts just
before `kube play` and stops at the first 200 answer from the pod's address
(polled every 5 ms); then `podman kube down`. Also the daemon's own figures
from the pod's log (cold start "ready in", restore "restored in", the
travelled snapshot's verification in place: "import").

    bash tests/bench/podman_pods.sh build      # or: python3 tests/bench/podman_pods.py [ROUNDS]
    BENCH_POD_FUNCTIONS=state1g bash tests/bench/podman_pods.sh build   # only those

tests/k8s/podlab.py says what the lab changes in the played manifest.
"""
import os
import re
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "k8s"))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import podlab  # noqa: E402
from test_podman import take_snapshot  # noqa: E402

FUNCTIONS = [
    # name, handler, memorySize, extra fc.yaml, what it stands for
    ("echo", "echo", 1024, "", "init does nothing"),
    ("slowinit", "fault", 1024, "environmentVariables:\n  FAULT_INIT_SLEEP_MS: \"1000\"\n",
     "init sleeps 1 s (loading a model)"),
    ("state256", "bigstate", 1024, "environmentVariables:\n  STATE_MB: \"256\"\n",
     "init builds 256 MiB of state"),
    ("state1g", "bigstate", 2048, "environmentVariables:\n  STATE_MB: \"1024\"\n",
     "init builds 1 GiB of state (the issue's handler)"),
]
# BENCH_POD_FUNCTIONS=echo,state1g: only those
ONLY = [f for f in os.environ.get("BENCH_POD_FUNCTIONS", "").split(",") if f]


def make_function(root, name, handler, memory, extra):
    fn = os.path.join(root, name)
    os.makedirs(fn)
    shutil.copy(os.path.join(podlab.BUILD, "handlers", handler + ".so"), fn)
    with open(os.path.join(fn, "fc.yaml"), "w") as f:
        f.write("name: %s\nhandler: %s.so\ntimeout: 10\nmemorySize: %d\n"
                "instanceConcurrency: 4\nscalingConfig:\n  maxInstances: 1\n%s"
                % (name, handler, memory, extra))
    return fn


def one_pod(lab, fn_dir, name, repo, digest, tag):
    man = lab.run([podlab.THAW, "k8s", fn_dir, "--image", "%s@%s" % (repo, digest), "--kind",
                   "deployment", "--seccomp", "unconfined", "--instances-per-pod", "1",
                   "--name", tag]).stdout
    y = lab.kube_yaml(man, 1)
    path = os.path.join(lab.dir, tag + ".yaml")
    with open(path, "w") as f:
        f.write(y)
    t0 = time.monotonic()
    lab.podman("kube", "play", "--tls-verify=false", path, timeout=300)
    t_play = time.monotonic() - t0
    ip = lab.pod_ip(tag + "-pod-0")
    got, end = None, time.monotonic() + 60
    while time.monotonic() < end:
        try:
            st, got = lab.request(ip, path="/%s/" % name, body=b"x", timeout=2)
            if st == 200:
                break
        except OSError:
            pass
        time.sleep(0.005)
    t_first = time.monotonic() - t0
    log = lab.logs(tag + "-pod-0-thaw")
    lab.podman("kube", "down", path, timeout=300, check=False)
    m = re.search(r"(ready|restored) in ([0-9.]+) ms", log)
    # before in-place restores the daemon copied the folder first
    c = re.search(r"(?:copied and verified|verified in place) in ([0-9.]+) ms", log)
    return {"first_ms": t_first * 1e3, "play_ms": t_play * 1e3, "answered": got is not None,
            "how": m.group(1) if m else "?", "daemon_ms": float(m.group(2)) if m else None,
            "import_ms": float(c.group(1)) if c else None}


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    miss = podlab.missing_tools()
    if os.geteuid() != 0 or miss:
        sys.exit("needs root and %s" % " ".join(podlab.TOOLS))
    lab = podlab.Lab()
    try:
        lab.start_registry()
        lab.build_base()
        print("machine: %s, %d cpus, kernel %s; podman %s" % (
            os.uname().nodename, os.cpu_count(), os.uname().release,
            lab.podman("--version").stdout.split()[-1]))
        for name, handler, memory, extra, what in FUNCTIONS:
            if ONLY and name not in ONLY:
                continue
            fn = make_function(lab.dir, name, handler, memory, extra)
            a = lab.build_function(fn, os.path.join(lab.dir, name + "-a"))
            repo = lab.repo(name)
            lab.push(os.path.join(lab.dir, name + "-a"), repo + ":a")
            out = os.path.join(lab.dir, name + "-out")
            os.makedirs(out)
            snap, log = take_snapshot(lab, "%s@%s" % (repo, a["digest"]), out)
            if not snap:
                print("%s: no snapshot taken:\n%s" % (name, log[-2000:]))
                continue
            b = lab.build_function(fn, os.path.join(lab.dir, name + "-b"),
                                   snapshot=os.path.join(out, snap))
            lab.push(os.path.join(lab.dir, name + "-b"), repo + ":b")
            for d in (a, b):
                lab.podman("pull", "-q", "--tls-verify=false", "%s@%s" % (repo, d["digest"]),
                           timeout=300)
            res = {"cold": [], "snapshot": []}
            for i in range(rounds):
                for kind, d in (("cold", a), ("snapshot", b)):
                    r = one_pod(lab, fn, name, repo, d["digest"], "%s-%s-%d" % (name, kind[0], i))
                    res[kind].append(r)
            print("\n%s (%s): snapshot layer %.1f MiB (%d files), image without it %.1f MiB"
                  % (name, what, b["snapshot"]["size"] / 2**20, b["snapshot"]["files"],
                     (a["base"]["bytes"] + sum(l["size"] for l in a["layers"])) / 2**20))
            for kind in ("cold", "snapshot"):
                rs = res[kind]
                firsts = sorted(r["first_ms"] for r in rs)
                print("  %-8s first response %s ms (median %.0f); kube play %.0f ms median; "
                      "daemon: %s %s ms%s; all answered: %s" % (
                          kind, " ".join("%.0f" % x for x in firsts), statistics.median(firsts),
                          statistics.median(r["play_ms"] for r in rs),
                          "/".join(sorted({r["how"] for r in rs})),
                          " ".join("%.1f" % r["daemon_ms"] for r in rs if r["daemon_ms"]),
                          "" if kind == "cold" else "; import (verify, or copy+verify) " + " ".join(
                              "%.1f" % r["import_ms"] for r in rs if r["import_ms"]),
                          all(r["answered"] for r in rs)))
    finally:
        lab.close()


if __name__ == "__main__":
    main()
