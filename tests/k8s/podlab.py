"""A one-machine lab for thaw's pods under podman, for tests/e2e/test_podman.py
and tests/bench/podman_pods.py: a private podman (its own storage, run
folder and containers.conf under a temporary folder), Debian's
docker-registry on 127.0.0.1, thaw's base image (scripts/thaw-image.py),
function images made runnable with `thaw build --base`, pushed with skopeo,
and the Deployment of `thaw k8s --kind deployment` played with
`podman kube play`.

What podman 4.3 (Debian 12) does differently from a kubelet, and what this
machine lacks, is changed in the played manifest, each for a stated reason
(kube_yaml):
  - replicas: the Deployment has none (KEDA owns them); the lab sets them;
  - ports: podman 4 publishes every containerPort on the host's port, so two
    pods of one Deployment collide ("address already in use"); pods are
    reached by their own addresses instead, as a Service would;
  - seccomp: podman 4.3 reads a pod's seccomp profile only from the
    annotation seccomp.security.alpha.kubernetes.io/pod, not from
    securityContext.seccompProfile; the annotation says the same thing
    ("unconfined", or "localhost/seccomp-thaw.json": deploy/seccomp-thaw.json
    in the folder given as --seccomp-profile-root, the kubelet's seccomp
    folder; podman 4.3 reads only the first path component after
    "localhost/", so not thaw/seccomp-thaw.json as the manifest names it);
  - SYS_RESOURCE: dropped when this machine's own bounding set lacks it (a
    container cannot be given more than the engine holds).
And in containers.conf: runc (crun 1.8 refuses this machine's hybrid
cgroup v1/v2 layout: "cgroups in hybrid mode not supported"), and rlimits
no higher than this machine's (without CAP_SYS_RESOURCE the engine's
default RLIMIT_NOFILE/NPROC raise fails: "setrlimit RLIMIT_NOFILE:
Operation not permitted").

Every wait is bounded; everything made lives under the lab's folder or in
the lab's podman storage, and close() removes it.
"""
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from thawtest import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("THAW_BUILD", os.path.join(ROOT, "build")))
THAW = os.path.join(BUILD, "thaw")
IMAGE_SCRIPT = os.path.join(ROOT, "scripts", "thaw-image.py")
CAPS = ["SYS_ADMIN", "NET_ADMIN", "SYS_CHROOT", "SYS_TIME", "SETPCAP", "SYS_PTRACE"]
CAP_SYS_RESOURCE = 24
TOOLS = ["podman", "skopeo", "docker-registry", "runc"]


def missing_tools():
    return [t for t in TOOLS if not shutil.which(t)]


def has_cap(n):
    for line in open("/proc/self/status"):
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> n & 1)
    return False


class LabError(Exception):
    pass


class Lab:
    def __init__(self, keep=False):
        self.dir = tempfile.mkdtemp(prefix="thaw-podlab-")
        self.keep = keep
        self.reg_port = free_port()
        self.registry = None
        self.played = []
        os.makedirs(os.path.join(self.dir, "conf"))
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
        self.conf = os.path.join(self.dir, "conf", "containers.conf")
        with open(self.conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]\n'
                    '[engine]\nruntime = "runc"\n' % (nofile, nofile, nproc, nproc))
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf)
        self.podman_args = ["podman", "--root", os.path.join(self.dir, "storage"),
                            "--runroot", os.path.join(self.dir, "run")]

    # --- processes -------------------------------------------------------
    def run(self, args, timeout=120, check=True, input=None):
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=self.env,
                           input=input)
        if check and p.returncode != 0:
            raise LabError("%s: exit %d: %s" % (" ".join(args[:4]), p.returncode,
                                                (p.stderr or p.stdout).strip()[-600:]))
        return p

    def podman(self, *args, timeout=120, check=True, input=None):
        return self.run(self.podman_args + list(args), timeout=timeout, check=check, input=input)

    # --- the registry ----------------------------------------------------
    def start_registry(self):
        cfg = os.path.join(self.dir, "registry.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    "    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%d\n"
                    % (os.path.join(self.dir, "registry"), self.reg_port))
        self.reg_log = open(os.path.join(self.dir, "registry.log"), "wb")
        self.registry = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.reg_log,
                                         stderr=subprocess.STDOUT)
        end = time.time() + 20
        while time.time() < end:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/v2/" % self.reg_port, timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise LabError("docker-registry did not answer on 127.0.0.1:%d" % self.reg_port)

    def repo(self, name):
        return "127.0.0.1:%d/thaw/%s" % (self.reg_port, name)

    # --- images ----------------------------------------------------------
    def build_base(self):
        out = os.path.join(self.dir, "base")
        # THAW_BASE_FROM_ARCHIVE=1: the libraries from Debian's archive
        # (mmdebstrap, ~25 s and the network to the archive), not this machine
        extra = ["--from-archive"] if os.environ.get("THAW_BASE_FROM_ARCHIVE") == "1" else []
        p = self.run(["python3", IMAGE_SCRIPT, "-o", out, "--build", BUILD] + extra, timeout=600)
        self.base = out
        return p.stdout.strip().splitlines()[-1]

    def build_function(self, fn_dir, out, snapshot=None):
        """thaw build --base (and --snapshot): the result of --json."""
        args = [THAW, "build", fn_dir, "-o", out, "--base", self.base, "--json"]
        if snapshot:
            args += ["--snapshot", snapshot]
        return json.loads(self.run(args, timeout=300).stdout)

    def push(self, layout, repo_tag):
        self.run(["skopeo", "copy", "-q", "--preserve-digests", "--dest-tls-verify=false",
                  "oci:%s:latest" % layout, "docker://" + repo_tag], timeout=300)

    def inspect_raw(self, ref):
        return json.loads(self.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                                    "docker://" + ref]).stdout)

    # --- containers ------------------------------------------------------
    def security_args(self):
        caps = CAPS + (["SYS_RESOURCE"] if has_cap(CAP_SYS_RESOURCE) else [])
        return ["--cap-drop", "all", "--cap-add", ",".join(caps),
                "--security-opt", "seccomp=unconfined"]

    def kube_yaml(self, manifest, replicas):
        """The Deployment of a `thaw k8s --kind deployment` output, changed
        as the module's comment says."""
        docs = manifest.split("\n---\n")
        dep = next(d for d in docs if 'kind: "Deployment"' in d)
        dep = dep.replace("spec:\n  selector:", "spec:\n  replicas: %d\n  selector:" % replicas, 1)
        dep = re.sub(r"        ports:\n(?:          .*\n|        - .*\n)+", "", dep)
        if not has_cap(CAP_SYS_RESOURCE):
            dep = dep.replace('            - "SYS_RESOURCE"\n', "")
        if 'type: "Unconfined"' in dep:
            profile = "unconfined"
        else:  # a Localhost profile, found below --seccomp-profile-root (play);
            # podman 4.3 reads only the first component after localhost/
            # ("read ROOT/thaw: is a directory"), so the file's name alone
            profile = "localhost/" + os.path.basename(
                re.search(r'localhostProfile: "([^"]+)"', dep).group(1))
        dep = re.sub(r'(      annotations:\n)',
                     r'\1        seccomp.security.alpha.kubernetes.io/pod: "%s"\n' % profile,
                     dep, count=1)
        return "---\n" + dep.lstrip("-\n") + "\n"

    def play(self, yaml_text, name):
        path = os.path.join(self.dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(yaml_text)
        self.played.append(path)
        # the kubelet's seccomp folder: deploy/seccomp-thaw.json where the
        # manifests' default Localhost profile names it
        root = os.path.join(self.dir, "seccomp")
        if not os.path.exists(root):
            os.makedirs(root)
            shutil.copy(os.path.join(ROOT, "deploy", "seccomp-thaw.json"), root)
        p = self.podman("kube", "play", "--tls-verify=false", "--seccomp-profile-root", root, path,
                        timeout=300, check=False)
        if p.returncode != 0:
            raise LabError("podman kube play %s: %s" % (name, (p.stderr or p.stdout)[-800:]))
        return path

    def pod_ip(self, pod):
        infra = self.podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()
        return self.podman("inspect", infra, "--format",
                           "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}").stdout.strip()

    def logs(self, container):
        p = self.podman("logs", container, check=False)
        return p.stdout + p.stderr

    def request(self, ip, path="/echo/", body=b"hi", timeout=3):
        req = urllib.request.Request("http://%s:8080%s" % (ip, path), data=body)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()

    def wait_answer(self, ip, secs=60, body=b"hi"):
        """Polls until the function answers 200; the answer or None."""
        end = time.time() + secs
        while time.time() < end:
            try:
                st, got = self.request(ip, body=body, timeout=2)
                if st == 200:
                    return got
            except OSError:
                pass
            time.sleep(0.02)
        return None

    def close(self):
        for path in reversed(self.played):
            self.podman("kube", "down", path, check=False, timeout=120)
        self.podman("rm", "-a", "-f", check=False, timeout=120)
        self.podman("pod", "rm", "-a", "-f", check=False, timeout=120)
        self.podman("rmi", "-a", "-f", check=False, timeout=120)
        if self.registry:
            self.registry.terminate()
            try:
                self.registry.wait(10)
            except subprocess.TimeoutExpired:
                self.registry.kill()
                self.registry.wait()
            self.reg_log.close()
        if not self.keep:
            # the storage's overlay mounts are gone with the containers
            self.run(["umount", "-R", os.path.join(self.dir, "storage", "overlay")], check=False)
            shutil.rmtree(self.dir, ignore_errors=True)
