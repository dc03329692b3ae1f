"""Snapshots that travel (daemon/travel.h), on this machine without an
engine: a snapshot folder a daemon took is put where `--snapshot-from`
looks, the daemon's own is deleted, and the daemon starts again:
  - it fits: the daemon says so, and the first instance is a restore;
  - it does not fit (another kernel, a CPU flag this machine lacks, another
    fc.yaml, another function): one line with the reason, a cold start,
    then a snapshot taken here;
  - its bytes do not match its manifest (a changed image file, an image file
    the manifest does not list, a folder inside): refused the same way;
  - none came (no thaw-node): nothing said, a cold start.
tests/e2e/test_podman.py does the same through images, a registry and pods."""
import hashlib
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thawtest import (THAW, Daemon, Log, check, criu_works, finish, handler_so,  # noqa: E402
                      need_built, skip, wait_for)


def rewrite_manifest_line(folder, name):
    data = open(os.path.join(folder, name), "rb").read()
    path = os.path.join(folder, "thaw-manifest")
    lines = open(path).read().splitlines()
    out = [("%s %d %s" % (hashlib.sha256(data).hexdigest(), len(data), name))
           if ln.endswith(" " + name) and not ln.startswith("end ") else ln for ln in lines]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def set_fact(folder, key, value):
    p = os.path.join(folder, "thaw-node")
    lines = [("%s %s" % (key, value)) if l.split(" ", 1)[0] == key else l
             for l in open(p).read().splitlines()]
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")
    rewrite_manifest_line(folder, "thaw-node")


def main():
    need_built(THAW, handler_so("echo"))
    why = criu_works()
    if why:
        skip(why)
    fields = {"handler": handler_so("echo"), "timeout": 3, "instanceConcurrency": 2}
    d = Daemon({"echo": fields}, args=["--snapshot-from", ""])
    travel = os.path.join(d.tmp, "travel")
    d.args = ["--snapshot-from", travel]
    os.makedirs(travel)
    with d:
        log = Log(d)
        check(d.request("POST", "/echo/", b"one").body == b"one", "the first daemon answers")
        local = os.path.join(d.snap_dir, "echo-v1")
        check(wait_for(lambda: os.path.exists(os.path.join(local, "thaw-manifest")), 20),
              "it took a snapshot")
        node = dict(l.split(" ", 1) for l in open(os.path.join(local, "thaw-node")).read().splitlines())
        check(node.get("function") == "echo" and node.get("kernel") == os.uname().release and
              node.get("dir") == local and node.get("criu") and
              node.get("thaw", "").startswith("sha256:") and "fpu" in node.get("cpu-flags", "").split(),
              "its thaw-node records function, kernel, criu, thaw build, folder and CPU flags",
              node)
        pristine = os.path.join(d.tmp, "pristine")
        shutil.copytree(local, pristine)
        fc = os.path.join(d.fn_dir, "echo", "fc.yaml")
        fc_text = open(fc).read()

        def start_with(change, what):
            """Restarts the daemon with the pristine snapshot, changed by
            change(folder), as the one that came; its own deleted. Returns
            the log lines of the start and of one request."""
            came = os.path.join(travel, "echo")
            shutil.rmtree(came, ignore_errors=True)
            shutil.copytree(pristine, came)
            if change:
                change(came)
            d.keep = True
            d.stop()
            d.keep = False
            shutil.rmtree(local, ignore_errors=True)
            log.new()
            d.start()
            got = d.request("POST", "/echo/", what.encode())
            check(got.status == 200 and got.body == what.encode(), "%s: answered" % what, got)
            wait_for(lambda: os.path.exists(os.path.join(local, "thaw-manifest")), 20)
            return log.new()

        def refused(lines, what, reason):
            said = [l for l in lines if "came with the image" in l]
            check(len(said) == 1 and reason in said[0] and "cold start" in said[0],
                  "%s: one line says why (%s) and that it cold-starts" % (what, reason), said)
            check(any(" ready in " in l for l in lines) and
                  any("snapshot of pid" in l for l in lines),
                  "%s: a cold start, then a snapshot taken here" % what, lines[-8:])

        lines = start_with(None, "fits")
        said = [l for l in lines if "came with the image" in l]
        check(len(said) == 1 and "restoring from the snapshot that came with the image" in said[0]
              and "no cold start" in said[0], "fits: the daemon says it restores from it", said)
        check(not any(" ready in " in l for l in lines) and any("restored in" in l for l in lines),
              "fits: no cold start, a restore", lines[-8:])
        check(os.path.exists(os.path.join(local, "thaw-manifest")),
              "fits: the snapshot is in the daemon's own folder, with a manifest")

        refused(start_with(lambda f: set_fact(f, "kernel", "5.10.0-elsewhere"), "kernel"),
                "another kernel", "kernel 5.10.0-elsewhere there, %s here" % os.uname().release)
        refused(start_with(lambda f: set_fact(f, "cpu-flags", node["cpu-flags"] + " thaw_test_flag"),
                           "cpuflag"),
                "a CPU flag this machine lacks", "lacks the flag thaw_test_flag")
        refused(start_with(lambda f: set_fact(f, "function", "other"), "function"),
                "another function's snapshot", "function other there, echo here")
        refused(start_with(lambda f: set_fact(f, "criu", "3.17.1"), "criu"),
                "another CRIU", "criu 3.17.1 there")

        def edit_fc(f):
            with open(fc, "a") as out:
                out.write("# changed\n")
        lines = start_with(edit_fc, "source")
        with open(fc, "w") as out:
            out.write(fc_text)
        refused(lines, "another fc.yaml", "source ")

        def corrupt(f):
            with open(os.path.join(f, "pages-1.img"), "r+b") as g:
                b = g.read(1)
                g.seek(0)
                g.write(bytes([b[0] ^ 0xff]))
        refused(start_with(corrupt, "corrupt"), "a changed image file", "pages-1.img")

        def extra(f):
            shutil.copy(os.path.join(f, "pages-1.img"), os.path.join(f, "pages-9.img"))
        refused(start_with(extra, "extra"), "an image file the manifest does not list", "pages-9.img")

        def subdir(f):
            os.makedirs(os.path.join(f, "sub"))
        refused(start_with(subdir, "subdir"), "a folder inside", "not a regular file")

        lines = start_with(lambda f: os.unlink(os.path.join(f, "thaw-node")), "none")
        check(not any("came with the image" in l for l in lines) and
              any(" ready in " in l for l in lines),
              "none came (no thaw-node): nothing said, a cold start", lines[-6:])
    finish()


if __name__ == "__main__":
    main()
