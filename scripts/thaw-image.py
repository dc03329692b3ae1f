#!/usr/bin/python3
"""The runnable base image of thaw: an OCI image layout holding thaw,
thaw-instance, CRIU and the shared libraries they load, entrypoint
`thaw serve`. `thaw build --base LAYOUT` puts a function on it.

    scripts/thaw-image.py [-o OUT] [--build build] [--criu PATH] [--handlers echo,fault,bigstate]
                          [--from-archive [--sources FILE] [--suite bookworm]]

What goes in, all from this machine's Debian 12 packages and this build:
  /usr/local/bin/thaw, /usr/local/bin/thaw-instance   (the build), and
  /usr/local/bin/libthaw-agent.so                      (the custom-runtime agent)
  /usr/local/lib/thaw/criu/criu                        (make deps: CRIU 4.2.1)
  every shared library these and the named handlers' .so files load (ldd),
    at their Debian paths (merged /usr: /lib -> usr/lib, /lib64 -> usr/lib64)
  /bin/sh, cp, cat, ls, mkdir, sleep (dash, coreutils): for `podman exec`
    into a pod (taking a snapshot out of it, looking around)
  /etc/passwd, /etc/group, /etc/nsswitch.conf, /tmp, /var/lib/thaw, /run
Working folder /var/lib/thaw: instances inherit the daemon's, and CRIU's
parasite mkdirs in the instance's cwd to mount a /proc of its pid namespace
(podman makes the image's / 0555, and the pod has no CAP_DAC_OVERRIDE:
`Can't create a directory (-13)` at dump with / as the cwd).
No network is used: nothing is downloaded, the files are copied from this
machine, and the image's config records which Debian package (name and
version, from dpkg) each library came from (label io.thaw.debian-packages).

--from-archive: the same packages (by name) installed from Debian's archive
into a fresh root by mmdebstrap (--variant=essential, this machine's apt
sources), as a layer of its own (~200 MiB, ~25 s here), with thaw's files
in a second layer; io.thaw.debian-packages then lists what was installed.
mmdebstrap with SOURCE_DATE_EPOCH gives the same tar while the archive
serves the same versions (seen: the same digest twice); a point release
changes it. The archive's versions may be newer than this machine's (the
machine's own are not all still served); Debian 12 keeps their ABI.

Reproducible: one uncompressed tar layer, entries sorted by path, mtime
SOURCE_DATE_EPOCH (default 0), uid/gid 0, no user names, modes 0755/0644
(1777 for /tmp); JSON with sorted keys. The same files give the same
manifest digest, printed on stdout.
"""
import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ["sh", "cp", "cat", "ls", "mkdir", "sleep"]
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


def ldd(path):
    """The libraries path loads: [(path as the loader finds it, real file)]."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line) or re.match(r"\s*(/\S+ld-linux\S*)", line)
        if m:
            p = m.group(m.lastindex)
            libs.append(p)
    return libs


def usr_path(p):
    """Debian 12 merges /usr: /lib/x -> usr/lib/x, /lib64/x -> usr/lib64/x."""
    p = os.path.normpath(p)
    for top in ("/lib/", "/lib64/", "/bin/", "/sbin/"):
        if p.startswith(top):
            return "usr" + p
    return p.lstrip("/")


def debian_packages(reals):
    """The Debian packages (name=version) that own these files, by one dpkg -S
    and one dpkg-query call; files no package owns are left out."""
    cands = sorted({c for r in reals for c in (r, "/" + usr_path(r), r.replace("/usr/", "/", 1))})
    out = subprocess.run(["dpkg", "-S"] + cands, capture_output=True, text=True).stdout
    pkgs = sorted({line.split(":")[0] for line in out.splitlines()
                   if ": " in line and not line.startswith("diversion")})
    if not pkgs:
        return []
    vers = subprocess.run(["dpkg-query", "-W", "-f=${Package}=${Version}\n"] + pkgs,
                          capture_output=True, text=True).stdout
    return sorted(v for v in vers.split() if v)


class Layer:
    def __init__(self, epoch):
        self.entries = {}  # path in image -> (kind, src or target, mode)
        self.epoch = epoch

    def dir(self, path, mode=0o755):
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.entries:
                self.entries[p] = ("dir", None, 0o755)
        self.entries[path] = ("dir", None, mode)

    def file(self, path, src, exec_=None):
        path = path.strip("/")
        self.dir(os.path.dirname(path)) if "/" in path else None
        st = os.stat(src)
        x = exec_ if exec_ is not None else bool(st.st_mode & 0o111)
        self.entries.setdefault(path, ("file", src, 0o755 if x else 0o644))

    def data(self, path, text):
        path = path.strip("/")
        self.dir(os.path.dirname(path))
        self.entries[path] = ("data", text.encode(), 0o644)

    def link(self, path, target):
        self.entries[path.strip("/")] = ("link", target, 0o777)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
            # the root folder itself: without this entry the engine makes it
            # 0555, and CRIU's parasite (in an instance whose cwd is /) must
            # mkdir there to mount a /proc of the instance's pid namespace
            root = tarfile.TarInfo("./")
            root.type, root.mode, root.mtime, root.uname, root.gname = \
                tarfile.DIRTYPE, 0o755, self.epoch, "", ""
            t.addfile(root)
            for path in sorted(self.entries):
                kind, src, mode = self.entries[path]
                ti = tarfile.TarInfo(path)
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = self.epoch, 0, 0, "", ""
                ti.mode = mode
                if kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    t.addfile(ti)
                elif kind == "link":
                    ti.type, ti.linkname = tarfile.SYMTYPE, src
                    t.addfile(ti)
                else:
                    data = open(src, "rb").read() if kind == "file" else src
                    ti.size = len(data)
                    t.addfile(ti, io.BytesIO(data))
        return buf.getvalue()


def put_blob(out, data):
    d = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, "blobs", "sha256", d)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
    return {"digest": "sha256:" + d, "size": len(data)}


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def criu_version(criu):
    out = subprocess.run([criu, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"Version: (\S+)", out)
    return m.group(1) if m else "unknown"


def thaw_version():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def archive_layer(pkgs, sources, suite, tmp):
    """The packages installed from Debian's archive into a fresh root by
    mmdebstrap (variant essential: dpkg needs its tools), as one tar.
    Returns (tar bytes, ["pkg=version" of what was installed])."""
    out = os.path.join(tmp, "debian.tar")
    env = dict(os.environ, SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", "0"))
    r = subprocess.run(["mmdebstrap", "--quiet", "--variant=essential",
                        "--include=" + ",".join(pkgs), "--format=tar", suite, out, sources],
                       capture_output=True, text=True, env=env, timeout=1200)
    if r.returncode != 0:
        sys.exit("thaw-image: mmdebstrap failed:\n" + (r.stderr or r.stdout)[-2000:])
    data = open(out, "rb").read()
    os.unlink(out)
    installed = []
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        status = t.extractfile("./var/lib/dpkg/status").read().decode()
    for block in status.split("\n\n"):
        f = dict(l.split(": ", 1) for l in block.splitlines() if ": " in l and l[0] != " ")
        if f.get("Package") and "installed" in f.get("Status", ""):
            installed.append("%s=%s" % (f["Package"], f.get("Version", "?")))
    return data, sorted(installed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default=os.path.join(ROOT, "build", "image", "thaw"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--criu", default="/usr/local/lib/thaw/criu/criu")
    ap.add_argument("--handlers", default="echo,fault,bigstate",
                    help="handlers (build/handlers/NAME.so) whose libraries the base carries")
    ap.add_argument("--from-archive", action="store_true",
                    help="install the libraries' packages from Debian's archive with mmdebstrap "
                         "(a layer of its own) instead of copying this machine's files")
    ap.add_argument("--sources", default="/etc/apt/sources.list.d/debian.sources",
                    help="apt sources for --from-archive (default: this machine's)")
    ap.add_argument("--suite", default="bookworm")
    a = ap.parse_args()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    L = Layer(epoch)
    if not a.from_archive:
        for top in ("bin", "sbin", "lib", "lib64"):
            L.link(top, "usr/" + top)
        L.dir("usr/bin")
        L.dir("usr/sbin")
        L.dir("usr/lib")
        L.dir("usr/lib64")
    bins = {
        "usr/local/bin/thaw": os.path.join(a.build, "thaw"),
        "usr/local/bin/thaw-instance": os.path.join(a.build, "thaw-instance"),
        # preloaded into custom runtimes (snapshotMemory.mapped), beside thaw-instance
        "usr/local/bin/libthaw-agent.so": os.path.join(a.build, "libthaw-agent.so"),
        "usr/local/lib/thaw/criu/criu": a.criu,
    }
    tools = {}
    for t in TOOLS:
        tools["usr/bin/" + t] = os.path.realpath("/usr/bin/" + t)
    for path, src in list(bins.items()) + list(tools.items()):
        if not os.access(src, os.X_OK):
            sys.exit(f"thaw-image: {src}: not found or not executable (make, make deps)")
        if path in bins or not a.from_archive:
            L.file(path, src, True)
    need = list(bins.values()) + list(tools.values()) + \
        [os.path.join(a.build, "handlers", h + ".so") for h in a.handlers.split(",") if h]
    reals = set(tools.values())
    for b in need:
        if not os.path.exists(b):
            sys.exit(f"thaw-image: {b}: missing (make)")
        for lib in ldd(b):
            real = os.path.realpath(lib)
            if not a.from_archive:
                L.file(usr_path(lib), real, True if "ld-linux" in lib else None)
            reals.add(real)
    pkgs = debian_packages(sorted(reals))
    if not a.from_archive:
        L.data("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        L.data("etc/group", "root:x:0:\nnogroup:x:65534:\n")
        L.data("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n")
        L.data("etc/hosts", "127.0.0.1 localhost\n")
        L.dir("tmp", 0o1777)
        for d in ("root", "run", "proc", "sys", "dev"):
            L.dir(d)
    for d in ("var/lib/thaw", "function"):
        L.dir(d)
    out = a.out
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    layers = []
    if a.from_archive:
        names = sorted({p.split("=")[0] for p in pkgs})
        deb, pkgs = archive_layer(names, a.sources, a.suite, out)
        layers.append((put_blob(out, deb), "debian",
                       "mmdebstrap --variant=essential: %s from Debian's archive" % ",".join(names)))
    layer = L.tar()
    layers.append((put_blob(out, layer), "thaw" if a.from_archive else "base",
                   "scripts/thaw-image.py: thaw, CRIU" +
                   ("" if a.from_archive else " and their Debian libraries")))
    thaw_ver, criu_ver = thaw_version(), criu_version(a.criu)
    created = "1970-01-01T00:00:00Z" if epoch == 0 else \
        __import__("time").strftime("%Y-%m-%dT%H:%M:%SZ", __import__("time").gmtime(epoch))
    config = {
        "created": created, "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": ["/usr/local/bin/thaw", "serve"],
            "Cmd": ["--port", "8080", "--functions", "/", "--state-dir", "/var/lib/thaw"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "THAW_CRIU=/usr/local/lib/thaw/criu/criu"],
            "WorkingDir": "/var/lib/thaw",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {
                "org.opencontainers.image.title": "thaw",
                "io.thaw.version": thaw_ver,
                "io.thaw.criu-version": criu_ver,
                "io.thaw.debian-packages": " ".join(pkgs),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d, _, _ in layers]},
        "history": [{"created": created, "created_by": by} for _, _, by in layers],
    }
    cd = put_blob(out, canon(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cd},
        "layers": [{"mediaType": MT_LAYER, **d, "annotations": {"io.thaw.layer": kind}}
                   for d, kind, _ in layers],
        "annotations": {"org.opencontainers.image.title": "thaw", "io.thaw.version": thaw_ver},
    }
    md = put_blob(out, canon(manifest))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **md,
                            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(out, "index.json.tmp"), "wb") as f:
        f.write(canon(index))
    os.rename(os.path.join(out, "index.json.tmp"), os.path.join(out, "index.json"))
    keep = {d["digest"].split(":")[1] for d in [cd, md] + [d for d, _, _ in layers]}
    for name in os.listdir(os.path.join(out, "blobs", "sha256")):
        if name not in keep:
            os.unlink(os.path.join(out, "blobs", "sha256", name))
    print(md["digest"])
    print(f"thaw-image: {out}: {len(layers)} layer(s), "
          f"{sum(d['size'] for d, _, _ in layers) / 2**20:.1f} MiB, "
          f"{len(pkgs)} Debian packages", file=sys.stderr)


if __name__ == "__main__":
    main()
