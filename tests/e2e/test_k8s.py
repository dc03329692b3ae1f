"""`thaw k8s DIR` (docs/kubernetes.md): the manifests it prints validate
offline against the Kubernetes, Knative and KEDA schemas (npm packages of
tests/k8s/package-lock.json, installed by `make deps`; tests/k8s/validate.mjs);
the image is named by the digest `thaw build` wrote; the same input gives
the same bytes, on stdout or with -o; refusals exit 1 with file:line, usage
errors exit 2; the validator itself refuses a broken manifest; the shipped
seccomp profile allows io_uring and what CRIU needs."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thawtest import ROOT, THAW, check, finish, need_built, skip  # noqa: E402

K8S = os.path.join(ROOT, "tests", "k8s")
VALIDATE = os.path.join(K8S, "validate.mjs")
REPO = "registry.example:5000/functions/echo"


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
          "name: resnet\nhandler: h.so\ntimeout: 600\nmemorySize: 4096\ncpu: 2\n"
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
    check(rc == 0 and err == "", "timeout 600: no warning (Knative's default cap)", err)
    write(os.path.join(full, "fc.yaml"), "name: slow\nhandler: h.so\ntimeout: 3600\n")
    rc, out, err = thaw("k8s", full, "--image", img)
    check(rc == 0 and "warning:" in err and "max-revision-timeout-seconds" in err and
          "timeoutSeconds: 3600" in out, "timeout 3600: a warning on stderr, the manifest on stdout",
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
    check(not any(n in names for n in ["bpf", "kexec_load", "init_module", "perf_event_open", "reboot"]),
          "seccomp profile denies bpf, kexec, modules, perf, reboot")


main()
