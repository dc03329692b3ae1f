"""thaw's pods under a real engine (docs/kubernetes.md, "Snapshots that
travel"): podman, Debian's docker-registry on 127.0.0.1 and skopeo, all on
this machine (tests/k8s/podlab.py says what podman 4.3 is told differently
from a kubelet, and why).

  1. thaw's base image (scripts/thaw-image.py) and the echo function made
     runnable on it (`thaw build --base`): the same inputs give the same
     digest; pushed to the registry.
  2. A snapshot taken in a container of that image (the manifest's
     capabilities, seccomp unconfined), copied out, and added as a layer
     (`thaw build --snapshot`): the registry's manifest carries its
     annotations (kernel, CPU flags, CRIU and thaw versions, the image
     digest it was taken from).
  3. `podman kube play` of `thaw k8s --kind deployment` with 2 replicas,
     capabilities added, not privileged: each pod pulls the image, restores
     from the snapshot layer (its log says so, no cold start) and answers.
  4. One pod removed: the other keeps serving. A pod under the manifests'
     default seccomp profile (deploy/seccomp-thaw.json, under which CRIU
     cannot dump) restores from the layer all the same.
  5. A snapshot whose facts do not fit the node (a CPU flag this machine
     lacks): that pod says why, cold-starts, snapshots locally, answers.
  6. A snapshot whose bytes do not match its manifest: refused the same way.
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "k8s"))
from thawtest import (THAW, check, criu_works, finish, handler_so, need_built,  # noqa: E402
                      rewrite_manifest_line, skip)
import podlab  # noqa: E402

FAKE_FLAG = "thaw_test_flag"


def make_function(root):
    fn = os.path.join(root, "echo")
    os.makedirs(fn)
    shutil.copy(handler_so("echo"), os.path.join(fn, "echo.so"))
    with open(os.path.join(fn, "fc.yaml"), "w") as f:
        f.write("name: echo\nhandler: echo.so\ntimeout: 3\nmemorySize: 128\n"
                "instanceConcurrency: 4\nscalingConfig:\n  maxInstances: 4\n")
    return fn


def take_snapshot(lab, image, out):
    """Runs image as the Deployment would, waits for its snapshot, writes it
    into out with `thaw snapshot` in the container. Returns (folder name,
    daemon log)."""
    name = "snapshot-taker"
    lab.podman("run", "-d", "--tls-verify=false", "--name", name, *lab.security_args(), "-v", "%s:/out" % out,
               image, "--port", "8080", "--functions", "/", "--state-dir", "/var/lib/thaw")
    end, log, snap = time.time() + 60, "", None
    while time.time() < end and not snap:
        log = lab.logs(name)
        for line in log.splitlines():
            if "snapshot of pid" in line and " in /" in line:
                snap = os.path.basename(line.split(" in ", 1)[1].split(":")[0])
        time.sleep(0.2)
    got = None
    while snap and time.time() < end:  # ready a moment after the log line
        got = lab.podman("exec", name, "thaw", "snapshot", snap.rsplit("-v", 1)[0], "-o",
                         "/out/" + snap, "--url", "http://127.0.0.1:8080", "--state-dir",
                         "/var/lib/thaw", check=False)
        if got.returncode == 0 or "no snapshot ready" not in got.stderr:
            break
        time.sleep(0.2)
    if got and got.returncode:
        log += "\nthaw snapshot: " + got.stderr
        snap = None
    lab.podman("rm", "-f", name, check=False)
    return snap, log


def deployment(lab, fn_dir, layout, name, ref_repo, digest, replicas, seccomp="unconfined"):
    args = ["--seccomp", seccomp] if seccomp else []
    man = lab.run([THAW, "k8s", fn_dir, "--image", "%s@%s" % (ref_repo, digest),
                   "--kind", "deployment", "--instances-per-pod", "2", "--name", name] + args).stdout
    return lab.kube_yaml(man, replicas)


def pods_of(lab, name):
    out = lab.podman("pod", "ps", "--format", "{{.Name}}").stdout.split()
    return sorted(p for p in out if p.startswith(name + "-pod-"))


def main():
    need_built(THAW, handler_so("echo"))
    if os.geteuid() != 0:
        skip("podman pods with thaw's capabilities need root")
    miss = podlab.missing_tools()
    if miss:
        skip("not installed: %s (make deps installs them)" % " ".join(miss))
    why = criu_works()
    if why:
        skip(why)
    lab = podlab.Lab(keep=os.environ.get("THAW_KEEP") == "1")
    try:
        run(lab)
    except podlab.LabError as e:
        check(False, "the podman lab ran", str(e))
    except subprocess.TimeoutExpired as e:
        check(False, "every podman, skopeo and build call finished in time", str(e))
    finally:
        lab.close()
    finish()


def run(lab):
    t0 = time.time()
    # 1. images
    lab.start_registry()
    base = lab.build_base()
    extra = ["--from-archive"] if os.environ.get("THAW_BASE_FROM_ARCHIVE") == "1" else []
    again = lab.run(["python3", podlab.IMAGE_SCRIPT, "-o", os.path.join(lab.dir, "base2"),
                     "--build", podlab.BUILD] + extra, timeout=600).stdout.strip().splitlines()[-1]
    check(base == again, "the base image is reproducible (same digest twice)", (base, again))
    fn = make_function(lab.dir)
    plain = os.path.join(lab.dir, "image-plain")
    r0 = lab.build_function(fn, plain)
    r0b = lab.build_function(fn, plain)
    check(r0["digest"] == r0b["digest"], "thaw build --base is reproducible", (r0, r0b))
    check(r0.get("base", {}).get("digest") == base and r0["base"]["layers"] == 1 + len(extra),
          "the runnable image stands on the base", r0.get("base"))
    repo = lab.repo("echo")
    lab.push(plain, repo + ":plain")
    raw = lab.inspect_raw(repo + ":plain")
    check(lab.run(["skopeo", "inspect", "--tls-verify=false", "docker://" + repo + ":plain",
                   "--format", "{{.Digest}}"]).stdout.strip() == r0["digest"],
          "the registry keeps the digest thaw build wrote (skopeo --preserve-digests)")
    ran = lab.podman("run", "--rm", "--tls-verify=false", "--entrypoint", "/usr/bin/sleep",
                     repo + "@" + r0["digest"], "0", check=False)
    if ran.returncode != 0:
        err = (ran.stderr or ran.stdout).strip().splitlines()[-1:]
        skip("podman cannot run a container here: %s" % err)
    cfg = json.loads(lab.run(["skopeo", "inspect", "--tls-verify=false", "--config", "--raw",
                              "docker://" + repo + ":plain"]).stdout)
    check(cfg["config"]["Entrypoint"] == ["/usr/local/bin/thaw", "serve"] and
          cfg.get("thaw", {}).get("name") == "echo",
          "the image's entrypoint is thaw serve, with the function's settings", cfg.get("config"))

    # 2. a snapshot taken in a container of that image, as a layer
    out = os.path.join(lab.dir, "out")
    os.makedirs(out)
    snap_name, log = take_snapshot(lab, repo + "@" + r0["digest"], out)
    check(snap_name == "echo-v1", "a container of the image (no privilege) took a snapshot",
          log[-1500:])
    if not snap_name:
        return
    snap = os.path.join(out, snap_name)
    node = dict(l.split(" ", 1) for l in open(os.path.join(snap, "thaw-node")).read().splitlines())
    withsnap = os.path.join(lab.dir, "image-snap")
    r1 = lab.build_function(fn, withsnap, snapshot=snap)
    r1b = lab.build_function(fn, withsnap, snapshot=snap)
    check(r1["digest"] == r1b["digest"], "thaw build --snapshot is reproducible")
    check(r1.get("runnable_digest") == r0["digest"],
          "the snapshot layer records the image it was taken from", r1.get("runnable_digest"))
    lab.push(withsnap, repo + ":snap")
    raw = lab.inspect_raw(repo + ":snap")
    ann = raw["layers"][-1].get("annotations", {})
    check(ann.get("io.thaw.layer") == "snapshot" and
          ann.get("io.thaw.snapshot.kernel") == os.uname().release and
          ann.get("io.thaw.snapshot.image-digest") == r0["digest"] and
          ann.get("io.thaw.snapshot.criu-version") == node["criu"] and
          ann.get("io.thaw.snapshot.thaw-version") == node["thaw"] and
          ann.get("io.thaw.snapshot.cpu-flags") == node["cpu-flags"],
          "the registry's manifest annotates the snapshot layer (kernel, CPU flags, CRIU, "
          "thaw, image digest)", {k: v[:80] for k, v in ann.items()})
    print("snapshot layer: %d bytes (%d files); base %d bytes" %
          (r1["snapshot"]["size"], r1["snapshot"]["files"], r1["base"]["bytes"]))

    # 3. two pods from the generated Deployment restore from the layer
    lab.play(deployment(lab, fn, withsnap, "echo", repo, r1["digest"], 2), "echo")
    pods = pods_of(lab, "echo")
    check(len(pods) == 2, "podman kube play made 2 pods of the Deployment", pods)
    ips = {}
    for pod in pods:
        ip = lab.pod_ip(pod)
        ips[pod] = ip
        got = lab.wait_answer(ip, body=pod.encode())
        check(got == pod.encode(), "%s answers its own request" % pod, got)
        log = lab.logs(pod + "-thaw")
        check("restoring from the snapshot that came with the image" in log,
              "%s restores from the snapshot layer (its log says so)" % pod, log[-1500:])
        check(" ready in " not in log and "restored in" in log,
              "%s: no cold start, a restore" % pod,
              [l for l in log.splitlines() if "ready in" in l or "restored in" in l])
        snap_dir = node["dir"]
        ls = lab.podman("exec", pod + "-thaw", "ls", "-l", snap_dir, check=False).stdout
        files = [l for l in ls.splitlines()[1:] if "stats-" not in l]
        check("nothing copied" in log and files and
              all(" -> /snapshot/echo/" in l for l in files),
              "%s: restores in place, nothing copied: its snapshot folder links into the layer"
              % pod, files[:6])
        status = lab.podman("exec", pod + "-thaw", "cat", "/proc/1/status").stdout
        caps = [l for l in status.splitlines() if l.startswith(("CapEff", "Seccomp:"))]
        check(any(l.startswith("Seccomp:") and l.split()[1] == "0" for l in caps) and
              not any(l.startswith("CapEff") and l.split()[1] == "000001ffffffffff" for l in caps),
              "%s: not privileged (a limited capability set), seccomp unconfined" % pod, caps)

    # 4. one pod removed, the other serves on
    if len(pods) == 2:
        lab.podman("pod", "rm", "-f", pods[0])
        ok = 0
        for i in range(20):
            try:
                st, got = lab.request(ips[pods[1]], body=b"after-%d" % i)
                ok += st == 200 and got == b"after-%d" % i
            except OSError:
                pass
        check(ok == 20, "%s removed: %s answers 20 of 20" % (pods[0], pods[1]), ok)

    # 4b. the manifests' default, a seccomp filter (deploy/seccomp-thaw.json):
    # CRIU cannot dump under it, but restoring the layer works
    lab.play(deployment(lab, fn, withsnap, "echo-filtered", repo, r1["digest"], 1, seccomp=None),
             "echo-filtered")
    fpods = pods_of(lab, "echo-filtered")
    check(len(fpods) == 1, "echo-filtered: one pod", fpods)
    for pod in fpods:
        got = lab.wait_answer(lab.pod_ip(pod), body=b"filtered")
        log = lab.logs(pod + "-thaw")
        status = lab.podman("exec", pod + "-thaw", "cat", "/proc/1/status").stdout
        check(got == b"filtered" and "restoring from the snapshot that came with the image" in log
              and " ready in " not in log and "restored in" in log,
              "%s, under thaw's seccomp profile: restores from the layer, no cold start, answers"
              % pod, (got, log[-1200:]))
        check("Seccomp:\t2" in status, "%s runs under a seccomp filter" % pod,
              [l for l in status.splitlines() if l.startswith("Seccomp")])

    # 5. facts that do not fit: a CPU flag this machine lacks
    bad = os.path.join(lab.dir, "snap-badcpu")
    shutil.copytree(snap, bad)
    text = open(os.path.join(bad, "thaw-node")).read()
    text = text.replace("\ncpu-flags ", "\ncpu-flags %s " % FAKE_FLAG)
    with open(os.path.join(bad, "thaw-node"), "w") as f:
        f.write(text)
    rewrite_manifest_line(bad, "thaw-node")
    refused(lab, fn, repo, "badcpu", bad,
            "this node's CPU lacks the flag %s" % FAKE_FLAG, "facts that do not fit the node")

    # 6. bytes that do not match the manifest
    corrupt = os.path.join(lab.dir, "snap-corrupt")
    shutil.copytree(snap, corrupt)
    with open(os.path.join(corrupt, "pages-1.img"), "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 0xff]))
    refused(lab, fn, repo, "corrupt", corrupt, "pages-1.img", "a snapshot that fails its manifest")
    print("lab took %.1f s" % (time.time() - t0))


def refused(lab, fn, repo, tag, folder, reason, what):
    layout = os.path.join(lab.dir, "image-" + tag)
    r = lab.build_function(fn, layout, snapshot=folder)
    lab.push(layout, repo + ":" + tag)
    name = "echo-" + tag
    lab.play(deployment(lab, fn, layout, name, repo, r["digest"], 1), name)
    pods = pods_of(lab, name)
    check(len(pods) == 1, "%s: one pod" % name, pods)
    if not pods:
        return
    ip = lab.pod_ip(pods[0])
    got = lab.wait_answer(ip, body=tag.encode())
    check(got == tag.encode(), "%s: the pod answers anyway" % what, got)
    log = ""
    end = time.time() + 30
    while time.time() < end and "snapshot of pid" not in log:
        log = lab.logs(pods[0] + "-thaw")
        time.sleep(0.2)
    lines = [l for l in log.splitlines() if "came with the image" in l]
    check(len(lines) == 1 and reason in lines[0] and "cold start" in lines[0],
          "%s: one log line says why (%s) and that it cold-starts" % (what, reason), lines)
    check(" ready in " in log and "snapshot of pid" in log,
          "%s: a cold start, then a snapshot taken in the pod" % what, log[-1200:])


if __name__ == "__main__":
    main()
