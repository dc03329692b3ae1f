"""Snapshots that travel (daemon/travel.h), on this machine without an
engine: a snapshot folder a daemon took, fetched with `thaw snapshot`, is
put where `--snapshot-from` looks, the daemon's own is deleted, and the
daemon starts again:
  - it fits: the daemon says so, and the first instance is a restore;
  - it does not fit (another kernel, a CPU flag this machine lacks, another
    fc.yaml, another function): one line with the reason, a cold start,
    then a snapshot taken here;
  - its bytes do not match its manifest (a changed image file, an image file
    the manifest does not list, a folder inside): refused the same way;
  - none came (no thaw-node): nothing said, a cold start;
  - one that fits is restored where it lies: the daemon's folder holds only
    links to it, the instance maps its memory file from it, nothing is
    written into it; a restore from it that fails (a memory file's mode
    changed) leads to a snapshot taken here, of real files, and the shipped
    folder stays as it was.
`thaw snapshot` itself: the admin API's answer is a plain tar of the
folder; a wrong token, or a snapshot that fails its manifest, writes
nothing.
tests/e2e/test_podman.py does the same through images, a registry and pods."""
import json
import os
import shutil
import io
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thawtest import (BUILD, ROOT, THAW, Daemon, Log, check, criu_works, finish,  # noqa: E402
                      handler_so, need_built, rewrite_manifest_line, skip, wait_for)



def restart_without(d, local, log):
    """Restarts d with its state kept and its own snapshot folder local
    deleted; log starts a new section."""
    d.keep = True
    d.stop()
    d.keep = False
    shutil.rmtree(local, ignore_errors=True)
    log.new()
    d.start()

def set_fact(folder, key, value):
    p = os.path.join(folder, "thaw-node")
    lines = [("%s %s" % (key, value)) if l.split(" ", 1)[0] == key else l
             for l in open(p).read().splitlines()]
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")
    rewrite_manifest_line(folder, "thaw-node")


def thaw_snapshot(d, fn, out, token=None):
    env = dict(os.environ, THAW_TOKEN=token) if token else None
    return subprocess.run([THAW, "snapshot", fn, "-o", out, "--url", "http://127.0.0.1:%d" % d.port,
                           "--state-dir", d.state_dir], capture_output=True, text=True,
                          timeout=60, env=env)


def export_cases(d, local, out):
    """thaw snapshot FN -o OUT: OUT holds local's files (modes kept)."""
    p = thaw_snapshot(d, "echo", out + "-x", token="wrong")
    check(p.returncode == 4 and not os.path.exists(out + "-x") and
          not os.path.exists(out + "-x.part"),
          "thaw snapshot: a wrong admin token exits 4, nothing written", (p.returncode, p.stderr))
    p = thaw_snapshot(d, "nosuch", out + "-x")
    check(p.returncode == 1 and "not found" in p.stderr and not os.path.exists(out + "-x.part"),
          "thaw snapshot: an unknown function exits 1", (p.returncode, p.stderr))
    p = thaw_snapshot(d, "echo", out)
    check(p.returncode == 0 and "verified" in p.stdout, "thaw snapshot: exit 0",
          (p.returncode, p.stdout, p.stderr))
    want = {n: os.lstat(os.path.join(local, n)).st_mode for n in os.listdir(local)
            if not n.startswith("stats-")}
    got = {n: os.lstat(os.path.join(out, n)).st_mode for n in os.listdir(out)} \
        if os.path.isdir(out) else {}
    same = all(open(os.path.join(out, n), "rb").read() == open(os.path.join(local, n), "rb").read()
               for n in got if n in want)
    check(got == want and same, "thaw snapshot: the daemon's folder, byte for byte, modes kept",
          sorted(set(got) ^ set(want)))
    token = open(os.path.join(d.state_dir, "admin.token")).read().strip()
    r = d.request("GET", "/admin/functions/echo/snapshot",
                  headers={"Authorization": "Bearer " + token})
    names = []
    if r.status == 200:
        with tarfile.open(fileobj=io.BytesIO(r.body)) as t:
            names = [m.name for m in t.getmembers() if m.isfile()]
    check(r.status == 200 and sorted(names) == sorted(want) and names[-1] == "thaw-manifest",
          "the admin API answers a tar that tarfile reads, the manifest last", (r.status, names))
    r = d.request("GET", "/admin/functions/echo/snapshot")
    check(r.status == 401, "the admin API wants the token for a snapshot", r.status)


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
        export_cases(d, local, pristine)
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
            restart_without(d, local, log)
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
        build_cases(d, pristine, os.path.join(d.fn_dir, "echo"))
    in_place_cases()
    finish()


def listing(folder):
    """name -> (size, mtime, SHA-256) of every file of folder."""
    import hashlib
    out = {}
    for n in sorted(os.listdir(folder)):
        p = os.path.join(folder, n)
        st = os.lstat(p)
        out[n] = (st.st_size, st.st_mtime_ns, hashlib.sha256(open(p, "rb").read()).hexdigest())
    return out


def mapped_anywhere(path):
    """Whether a process of this machine maps path."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if path in open("/proc/%s/maps" % pid).read():
                return True
        except OSError:
            pass
    return False


def leave_mid_stream(d, fn):
    """Clients that go away while the daemon verifies, and after 64 KiB of
    the stream: the daemon drops the export and serves on."""
    import socket
    token = open(os.path.join(d.state_dir, "admin.token")).read().strip()
    head = b""
    for want in (0, 65536):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(("GET /admin/functions/%s/snapshot HTTP/1.1\r\nHost: t\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % (fn, token)).encode())
        got = b""
        while len(got) < want:
            b = s.recv(65536)
            if not b:
                break
            got += b
        head = head or got
        s.close()
    check(head.startswith(b"HTTP/1.1 200") and b"application/x-tar" in head.split(b"\r\n\r\n")[0]
          and d.request("POST", "/%s/" % fn, b"x").status == 200 and d.proc.poll() is None,
          "thaw snapshot: clients that leave mid-verify and mid-stream: the daemon serves on",
          head[:200])


def in_place_cases():
    """bigstate (a memory file): exported with thaw snapshot, then restored
    from where it lies; then a restore from it that fails."""
    fields = {"handler": handler_so("bigstate"), "timeout": 10,
              "environmentVariables": {"STATE_MB": "8"}}
    d = Daemon({"state": fields, "nosnap": {"handler": handler_so("echo"), "snapshot": False}},
               args=["--snapshot-from", ""])
    travel = os.path.join(d.tmp, "travel")
    came = os.path.join(travel, "state")
    with d:
        log = Log(d)
        check(d.request("POST", "/state/", b"x").status == 200, "in place: bigstate answers")
        p = thaw_snapshot(d, "nosnap", os.path.join(d.tmp, "nosnap"))
        check(p.returncode == 1 and "has no snapshot ready (off)" in p.stderr and
              not os.path.exists(os.path.join(d.tmp, "nosnap")),
              "thaw snapshot: a function without snapshots exits 1 and says so",
              (p.returncode, p.stderr))
        local = os.path.join(d.snap_dir, "state-v1")
        check(wait_for(lambda: os.path.exists(os.path.join(local, "thaw-manifest")), 30),
              "in place: it took a snapshot")
        mems = [n for n in os.listdir(local) if n.startswith("thaw-mem-")]
        check(mems, "in place: the snapshot has a memory file", os.listdir(local))
        os.makedirs(travel)
        p = thaw_snapshot(d, "state", came)
        check(p.returncode == 0 and os.stat(os.path.join(came, mems[0])).st_mode & 0o777 == 0o400,
              "in place: thaw snapshot wrote it, the memory file 0400", (p.returncode, p.stderr))
        leave_mid_stream(d, "state")
        with open(os.path.join(local, "pages-1.img"), "r+b") as g:
            b = g.read(1)
            g.seek(0)
            g.write(bytes([b[0] ^ 0xff]))
        bad = os.path.join(d.tmp, "bad")
        p = thaw_snapshot(d, "state", bad)
        check(p.returncode == 1 and "pages-1.img: SHA-256 mismatch" in p.stderr and
              not os.path.exists(bad) and not os.path.exists(bad + ".part"),
              "thaw snapshot: a snapshot that fails its manifest is not sent, nothing written",
              (p.returncode, p.stderr))
        # relative, as a command line may give it: the links must still be absolute
        d.args = ["--snapshot-from", os.path.relpath(travel)]

        def restart():
            restart_without(d, local, log)
            check(d.request("POST", "/state/", b"x").status == 200, "in place: answered")

        before = listing(came)
        restart()
        lines = [l for l in log.new() if " state:" in l]  # not nosnap's
        check(any("nothing copied" in l for l in lines) and any("restored in" in l for l in lines)
              and not any(" ready in " in l for l in lines),
              "in place: restored from the shipped snapshot", lines[-8:])
        links = {n: os.readlink(os.path.join(local, n)) for n in os.listdir(local)
                 if os.path.islink(os.path.join(local, n))}
        copied = [n for n in os.listdir(local) if n not in links and not n.startswith("stats-")]
        shipped = {n for n in before if not n.startswith("stats-")}  # criu's, per run
        check(not copied and set(links) == shipped and
              all(links[n] == os.path.join(came, n) for n in links),
              "in place: nothing copied, the daemon's folder links to every shipped file",
              (copied, links))
        check(any(mapped_anywhere(os.path.join(came, m)) for m in mems),
              "in place: the restored instance maps its memory file from the shipped folder")
        check(listing(came) == before, "in place: nothing written into the shipped folder",
              sorted(set(listing(came)) ^ set(before)))

        # a restore from it that fails (CRIU checks a memory file's mode)
        os.chmod(os.path.join(came, mems[0]), 0o644)
        restart()
        check(wait_for(lambda: os.path.exists(os.path.join(local, "thaw-manifest")), 30),
              "in place, restore failed: a snapshot taken here")
        lines = log.new()
        check(any("restore failed" in l and "taking a new snapshot" in l for l in lines) and
              any("snapshot of pid" in l for l in lines),
              "in place, restore failed: the daemon says so and takes a snapshot here", lines[-10:])
        names = os.listdir(local)
        links = [n for n in names if os.path.islink(os.path.join(local, n))]
        check(any(n.startswith("thaw-mem-") for n in names) and not links,
              "in place, restore failed: the new snapshot is of real files, no links", names)
        check(listing(came) == before, "in place, restore failed: the shipped folder is unchanged")


def build(args):
    return subprocess.run([THAW, "build"] + args, capture_output=True, text=True, timeout=120)


def build_cases(d, snap, fn):
    """thaw build --base/--snapshot: what goes into the layer, and refusals."""
    base = os.path.join(d.tmp, "base")
    subprocess.run(["python3", os.path.join(ROOT, "scripts", "thaw-image.py"), "-o", base,
                    "--build", BUILD], check=True, capture_output=True, timeout=300)
    out = os.path.join(d.tmp, "img")
    p = build([fn, "-o", out, "--snapshot", snap])
    check(p.returncode == 2 and "--snapshot needs --base" in p.stderr,
          "build: --snapshot without --base is a usage error (exit 2)", (p.returncode, p.stderr))
    p = build([fn, "-o", out, "--base", os.path.join(d.tmp, "nowhere")])
    check(p.returncode == 1 and "nowhere/index.json" in p.stderr,
          "build: a missing base layout exits 1 and names it", (p.returncode, p.stderr))
    p = build([fn, "-o", out, "--base", base, "--snapshot", snap, "--json"])
    check(p.returncode == 0, "build: --base --snapshot builds", p.stderr)
    if p.returncode:
        return
    r = json.loads(p.stdout)
    blobs = os.path.join(out, "blobs", "sha256")
    man = json.load(open(os.path.join(blobs, r["digest"][7:])))
    layer = man["layers"][-1]
    with tarfile.open(os.path.join(blobs, layer["digest"][7:])) as t:
        names = t.getnames()
    check("snapshot/echo/thaw-node" in names and "snapshot/echo/thaw-manifest" in names and
          not any("/stats-" in n for n in names) and
          len([n for n in names if n.startswith("snapshot/echo/")]) == r["snapshot"]["files"],
          "build: the snapshot layer holds the folder at /snapshot/echo, without stats-*", names)
    node = dict(l.split(" ", 1) for l in open(os.path.join(snap, "thaw-node")).read().splitlines())
    a = layer.get("annotations", {})
    check(a.get("io.thaw.snapshot.kernel") == node["kernel"] and
          a.get("io.thaw.snapshot.cpu-flags") == node["cpu-flags"] and
          a.get("io.thaw.snapshot.image-digest") == r["runnable_digest"] and
          man["annotations"].get("io.thaw.snapshot.kernel") == node["kernel"],
          "build: the layer and the manifest carry thaw-node's facts", a)
    other = os.path.join(d.tmp, "other-snap")
    shutil.copytree(snap, other)
    set_fact(other, "function", "other")
    p = build([fn, "-o", out, "--base", base, "--snapshot", other])
    check(p.returncode == 1 and "a snapshot of function 'other', not 'echo'" in p.stderr,
          "build: another function's snapshot is refused", (p.returncode, p.stderr))
    os.unlink(os.path.join(other, "thaw-node"))
    p = build([fn, "-o", out, "--base", base, "--snapshot", other])
    check(p.returncode == 1 and "no thaw-node" in p.stderr,
          "build: a folder without thaw-node is refused", (p.returncode, p.stderr))
    bm = json.load(open(os.path.join(base, "index.json")))["manifests"][0]["digest"][7:]
    bl = json.load(open(os.path.join(base, "blobs", "sha256", bm)))["layers"][0]["digest"][7:]
    with open(os.path.join(base, "blobs", "sha256", bl), "r+b") as f:
        f.seek(600)
        c = f.read(1)
        f.seek(600)
        f.write(bytes([c[0] ^ 1]))
    p = build([fn, "-o", os.path.join(d.tmp, "img2"), "--base", base])
    check(p.returncode == 1 and "hash to" in p.stderr,
          "build: a base layer whose bytes do not match its digest is refused",
          (p.returncode, p.stderr))


if __name__ == "__main__":
    main()
