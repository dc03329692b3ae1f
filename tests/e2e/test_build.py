"""`thaw build`: a function folder -> OCI image layout, checked from outside
with Python's hashlib and tarfile: every blob's digest and size, the config,
the layers' entries; the same digest from two builds and from a copy of the
folder elsewhere; exit codes 1 (bad fc.yaml, compiler error) and 2 (usage)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thawtest import ROOT, THAW, check, finish, skip, skip_part  # noqa: E402


def thaw_build(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([THAW, "build", *args], capture_output=True, text=True, env=e,
                          timeout=120)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest(), os.path.getsize(path)


def blob(image, desc, media_type):
    path = os.path.join(image, "blobs", "sha256", desc["digest"][7:])
    digest, size = sha256(path)
    check(desc.get("mediaType") == media_type, "media type " + media_type, desc)
    check(digest == desc["digest"] and size == desc["size"],
          "blob %s matches its digest and size" % desc["digest"][:19], (digest, size, desc))
    return path


def make_function(root):
    os.makedirs(os.path.join(root, "models"))
    shutil.copy(os.path.join(ROOT, "handlers", "echo", "echo.c"), os.path.join(root, "echo.c"))
    with open(os.path.join(root, "fc.yaml"), "w") as f:
        f.write("name: echo_img\nhandler: echo.c\ntimeout: 5\n"
                "environmentVariables:\n  GREETING: hello\n"
                "modelFiles:\n  - models/weights.bin\n")
    with open(os.path.join(root, "models", "weights.bin"), "wb") as f:
        f.write(bytes(range(256)) * 4096)  # 1 MiB
    with open(os.path.join(root, ".env"), "w") as f:
        f.write("SECRET=1\n")


def main():
    if not os.access(THAW, os.X_OK):
        check(False, "%s is built (run make)" % THAW)
        finish()
    probe = thaw_build("--help")
    # thaw build ships: a thaw without it is a failure, not a skip
    check(probe.returncode == 0 and "usage: thaw build" in probe.stdout, "thaw build --help shows its usage",
          (probe.returncode, probe.stdout, probe.stderr))
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        skip("no C compiler to build the echo handler from source")

    tmp = tempfile.mkdtemp(prefix="thaw-e2e-build-")
    try:
        fn = os.path.join(tmp, "fn")
        make_function(fn)
        r = thaw_build(fn, "--json")
        check(r.returncode == 0, "thaw build exits 0", r.stderr)
        if r.returncode != 0:
            return
        out = json.loads(r.stdout)
        image = out["image"]
        check(image == os.path.realpath(os.path.join(fn, ".thaw", "image")),
              "image defaults to DIR/.thaw/image", image)
        check(out["digest"] == out["manifest"]["digest"], "digest is the manifest's", out)

        with open(os.path.join(image, "oci-layout")) as f:
            check(json.load(f) == {"imageLayoutVersion": "1.0.0"}, "oci-layout")
        with open(os.path.join(image, "index.json")) as f:
            index = json.load(f)
        check(index["schemaVersion"] == 2 and len(index["manifests"]) == 1, "index.json", index)
        mpath = blob(image, index["manifests"][0], "application/vnd.oci.image.manifest.v1+json")
        with open(mpath) as f:
            manifest = json.load(f)
        check(index["manifests"][0]["digest"] == out["digest"], "index names the manifest")
        cpath = blob(image, manifest["config"], "application/vnd.oci.image.config.v1+json")
        with open(cpath) as f:
            config = json.load(f)
        check(config["config"]["Entrypoint"] == ["thaw-instance"], "Entrypoint", config)
        check(config["config"]["Env"] == ["GREETING=hello"], "Env", config)
        check(config["config"]["Labels"]["io.thaw.function"] == "echo_img", "Labels", config)
        check(config["thaw"]["timeout"] == 5 and config["thaw"]["handler"] == "handler.so",
              "thaw section", config.get("thaw"))
        layers = manifest["layers"]
        check([l["annotations"]["io.thaw.layer"] for l in layers] == ["model", "code"],
              "model layer below the code layer", layers)
        check(config["rootfs"]["diff_ids"] == [l["digest"] for l in layers], "diff_ids")
        names = []
        for l in layers:
            p = blob(image, l, "application/vnd.oci.image.layer.v1.tar")
            with tarfile.open(p) as t:
                members = t.getmembers()
                names.append([m.name for m in members])
                check(all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname
                          for m in members), "fixed mtime and owner in the %s layer"
                      % l["annotations"]["io.thaw.layer"])
                check([m.name for m in members] == sorted(m.name for m in members),
                      "entries sorted")
        check(names[0] == ["function", "function/models", "function/models/weights.bin"],
              "model layer entries", names[0])
        check(names[1] == ["function", "function/echo.c", "function/fc.yaml",
                           "function/handler.so"], "code layer entries (no dotfiles)", names[1])

        # Another tool reads it: umoci unpacks it into an OCI runtime bundle.
        if shutil.which("umoci"):
            bundle = os.path.join(tmp, "bundle")
            u = subprocess.run(["umoci", "unpack", "--rootless", "--image", image + ":latest",
                                bundle], capture_output=True, text=True, timeout=120)
            check(u.returncode == 0, "umoci unpacks the image", u.stderr)
            s = subprocess.run(["umoci", "stat", "--image", image + ":latest"],
                               capture_output=True, text=True, timeout=60)
            check(s.returncode == 0 and "thaw build: model layer" in s.stdout,
                  "umoci stat shows the layers' history", s.stdout + s.stderr)
            if u.returncode == 0:
                with open(os.path.join(bundle, "config.json")) as f:
                    proc = json.load(f)["process"]
                check(proc["args"] == ["thaw-instance"] and proc["cwd"] == "/function"
                      and "GREETING=hello" in proc["env"], "umoci: process", proc)
                rootfs = os.path.join(bundle, "rootfs", "function")
                check(os.path.isfile(os.path.join(rootfs, "handler.so"))
                      and os.path.getsize(os.path.join(rootfs, "models", "weights.bin"))
                      == 1 << 20, "umoci: files in place", os.listdir(rootfs))
        else:
            skip_part("no umoci (scripts/debian-packages.txt): the layout is checked by this test only")

        # Again, and from a copy elsewhere: the same digest.
        r2 = thaw_build(fn, "--json")
        check(r2.returncode == 0 and json.loads(r2.stdout)["digest"] == out["digest"],
              "second build, same digest", r2.stdout)
        fn2 = os.path.join(tmp, "elsewhere", "fn")
        os.makedirs(os.path.dirname(fn2))
        make_function(fn2)
        r3 = thaw_build(fn2, "-o", os.path.join(tmp, "img2"), "--json")
        check(r3.returncode == 0 and json.loads(r3.stdout)["digest"] == out["digest"],
              "copy in another folder, same digest", r3.stdout + r3.stderr)

        # Text output: the digest on its own last line.
        r4 = thaw_build(fn)
        check(r4.returncode == 0 and r4.stdout.strip().splitlines()[-1] == out["digest"],
              "text output ends with the digest", r4.stdout)

        # Errors.
        with open(os.path.join(fn, "fc.yaml"), "a") as f:
            f.write("memorySize: 100\n")
        r5 = thaw_build(fn)
        check(r5.returncode == 1 and "fc.yaml:8: memorySize:" in r5.stderr,
              "bad fc.yaml: exit 1 with file:line", (r5.returncode, r5.stderr))
        bad = os.path.join(tmp, "bad")
        os.makedirs(bad)
        with open(os.path.join(bad, "fc.yaml"), "w") as f:
            f.write("name: bad\nhandler: bad.c\n")
        with open(os.path.join(bad, "bad.c"), "w") as f:
            f.write("int f(void) { return undeclared_thing; }\n")
        r6 = thaw_build(bad)
        check(r6.returncode == 1 and "undeclared_thing" in r6.stderr,
              "compiler error: exit 1 with its output", (r6.returncode, r6.stderr))
        r7 = thaw_build(fn, fn)
        check(r7.returncode == 2, "two folders: usage, exit 2", r7.returncode)
        r8 = thaw_build("--frobnicate")
        check(r8.returncode == 2, "unknown option: usage, exit 2", r8.returncode)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main()
finish()
