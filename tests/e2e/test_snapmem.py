"""Mapped snapshot memory (docs/snapshots.md): the bigstate handler builds
256 MiB of non-zero state in malloc'ed memory; at checkpoint the instance
moves it into memory files of the snapshot (on a huge-page tmpfs this test
mounts), so the CRIU image holds no copy of it. Eight copies restored at
once each see the whole state intact, write to it without another copy
seeing the write, and get their own instance id and random numbers. A
missing, truncated or altered memory file is refused (cold start, log
line). Falls back with one log line where memory cannot move (tmpfs full,
fc.yaml snapshotMemory.mapped false). thaw_state_alloc() state works the
same."""
import glob
import os
import re
import subprocess
import tempfile
import threading

from thawtest import Daemon, check, finish, handler_so, skip, wait_for

probe = subprocess.run([os.environ.get("THAW_CRIU", "/usr/local/lib/thaw/criu/criu"), "check"],
                       capture_output=True, text=True)
if os.geteuid() != 0 or probe.returncode != 0:
    skip("snapshots need root and a working CRIU (make deps)")

MIB = 1 << 20
IMAGE_BOUND = 8 * MIB  # CRIU's images without the state: ~0.2 MiB seen


def big(mb, **extra):
    f = {"handler": handler_so("bigstate"), "memorySize": 1024, "timeout": 20,
         "environmentVariables": {"STATE_MB": str(mb)},
         "scalingConfig": {"maxInstances": 8, "maxQueueLength": 50}}
    f.update(extra)
    return f


def restores(d, fn):
    return d.metrics().get('thaw_instance_starts_total{function="%s",kind="restore"}' % fn, 0)


def cold(d, fn):
    return d.metrics().get('thaw_instance_starts_total{function="%s",kind="cold"}' % fn, 0)


def sizes(folder):
    mem = img = 0
    for p in glob.glob(folder + "/*"):
        if os.path.basename(p).startswith("thaw-mem-"):
            mem += os.path.getsize(p)
        else:
            img += os.path.getsize(p)
    return mem, img


def mount_tmpfs(size, opts):
    mnt = tempfile.mkdtemp(prefix="thaw-e2e-snapmem-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700%s" % (size, opts),
                    "thaw-e2e", mnt], check=True)
    return mnt


def umount(mnt):
    subprocess.run(["umount", "-l", mnt])
    os.rmdir(mnt)


def concurrent(d, path, n):
    res = {}

    def call(i):
        res[i] = d.request("GET", path, timeout=60)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [res[i] for i in range(n)]


huge = mount_tmpfs("1200m", ",huge=within_size")
try:
    snap = os.path.join(huge, "snap")
    with Daemon({"big": big(256)}, args=["--snapshot-dir", snap], ready_timeout=120) as d:
        logs = d.logs()
        check("moved into memory files" in logs, "the state was moved into memory files",
              [l for l in logs.splitlines() if "memory" in l])
        check("4 KiB pages" not in logs, "memory files on huge pages (no 4 KiB line)")
        folder = os.path.join(snap, "big-v1")
        mem, img = sizes(folder)
        check(mem >= 256 * MIB, "memory files hold the state: %.1f MiB" % (mem / MIB))
        check(img < IMAGE_BOUND, "image without the state: %.2f MiB < %d MiB" % (img / MIB, IMAGE_BOUND // MIB))
        manifest = open(os.path.join(folder, "thaw-manifest")).read()
        check("thaw-mem-" in manifest, "memory files are in the manifest")

        rs = concurrent(d, "/big/check?ms=1500", 8)
        check(all(r.status == 200 for r in rs), "8 concurrent requests answered", [r.body for r in rs])
        js = [r.json() for r in rs if r.status == 200]
        check(all(j["sum_ok"] for j in js), "each copy's full checksum is right", js)
        check(all(j["own_ok"] for j in js), "each copy's writes stay its own", js)
        check(len({j["instance_id"] for j in js}) == 8, "8 distinct instance ids",
              [j["instance_id"] for j in js])
        check(len({j["random"] for j in js}) == 8, "8 distinct random streams")
        check(restores(d, "big") >= 8 and cold(d, "big") == 1, "one cold start, 8 restores",
              (cold(d, "big"), restores(d, "big")))
        rs = concurrent(d, "/big/check", 8)
        check(all(r.status == 200 and r.json()["sum_ok"] for r in rs),
              "checksums still right after every copy wrote")
finally:
    umount(huge)

# an intact snapshot with its memory files is reused after a daemon restart
with Daemon({"big": big(16)}) as d:
    d.restart()
    check("reuses its snapshot" in d.logs() and cold(d, "big") == 0 and restores(d, "big") >= 1,
          "restart: snapshot and memory files reused, no cold start", (cold(d, "big"), restores(d, "big")))
    r = d.request("GET", "/big/check")
    check(r.status == 200 and r.json()["sum_ok"], "restart: restored copy right", r.body)

# a damaged memory file is refused: the next instance cold starts. Missing
# and altered: while the daemon runs (the next restore verifies); truncated:
# across a restart (a copy mapping a file that shrinks under it gets SIGBUS,
# which is why memory files are never written after the dump).
for damage in ("missing", "altered", "truncated"):
    with Daemon({"big": big(16, scalingConfig={"maxInstances": 2})}) as d:
        folder = os.path.join(d.snap_dir, "big-v1")
        files = sorted(glob.glob(folder + "/thaw-mem-*"))
        check(files, "%s: a 16 MiB state has a memory file" % damage)
        if not files:
            continue
        if damage == "truncated":
            d.keep = True
            d.stop()
            d.keep = False
        f = files[0]
        os.chmod(f, 0o600)
        if damage == "missing":
            os.unlink(f)
        elif damage == "truncated":
            os.truncate(f, os.path.getsize(f) - 4096)
        else:
            with open(f, "r+b") as fh:
                fh.seek(os.path.getsize(f) - 8)
                fh.write(b"altered!")
        if damage == "truncated":
            d.start()
            line = [l for l in d.logs().splitlines() if "not reusing" in l]
            check(line and "thaw-mem-" in line[0], "truncated: refused after a restart, the line names the file", line)
            check(cold(d, "big") == 1, "truncated: a cold start instead", (cold(d, "big"), restores(d, "big")))
            r = d.request("GET", "/big/check")
            check(r.status == 200 and r.json()["sum_ok"], "truncated: served right", r.body)
            continue
        rs = concurrent(d, "/big/check?ms=800", 2)
        check(all(r.status == 200 and r.json()["sum_ok"] for r in rs),
              "%s: requests served right despite the damage" % damage, [r.body for r in rs])
        wait_for(lambda: "snapshot refused" in d.logs(), 10)
        line = [l for l in d.logs().splitlines() if "snapshot refused" in l]
        check(line and "thaw-mem-" in line[0], "%s: the refusal names the memory file" % damage, line)
        check(cold(d, "big") == 2, "%s: the new instance was a cold start" % damage,
              (cold(d, "big"), restores(d, "big")))

# tmpfs too small: the mapping stays anonymous (one line); CRIU's copy does
# not fit either, so the function falls back to cold starts and serves right
small = mount_tmpfs("8m", "")
try:
    with Daemon({"big": big(64)}, args=["--snapshot-dir", os.path.join(small, "snap")]) as d:
        lines = [l for l in d.logs().splitlines() if "stays anonymous" in l]
        # one line per mapping that stays (one here; more under ASan, whose
        # own large mappings do not fit either)
        check(lines and all("tmpfs full" in l for l in lines), "tmpfs full: one line per mapping", lines)
        # cold starts while the snapshot is tried again later (issue 16 item 6)
        check(re.search(r"snapshot failed \(.*\): cold starts", d.logs()),
              "tmpfs full: the snapshot failed, cold starts meanwhile")
        r = d.request("GET", "/big/check")
        check(r.status == 200 and r.json()["sum_ok"], "tmpfs full: served right", r.body)
finally:
    umount(small)

# fc.yaml switch: plain anonymous memory
with Daemon({"big": big(16, snapshotMemory={"mapped": False})}) as d:
    check("snapshotMemory.mapped is false" in d.logs(), "switch off: one line")
    check(not glob.glob(os.path.join(d.snap_dir, "big-v1", "thaw-mem-*")), "switch off: no memory files")
    r = d.request("GET", "/big/check")
    check(r.status == 200 and r.json()["sum_ok"] and restores(d, "big") >= 1, "switch off: restore right", r.body)

# thaw_state_alloc(): file-backed from the start, in the snapshot, copies private
with Daemon({"big": big(64, environmentVariables={"STATE_MB": "64", "STATE_ALLOC": "sdk"},
                         snapshotMemory={"populate": True})}) as d:
    mem, img = sizes(os.path.join(d.snap_dir, "big-v1"))
    check(mem >= 64 * MIB and img < IMAGE_BOUND, "sdk state: in a memory file (%.1f MiB), image %.2f MiB"
          % (mem / MIB, img / MIB))
    rs = concurrent(d, "/big/check?ms=800", 2)
    check(all(r.status == 200 and r.json()["sum_ok"] and r.json()["own_ok"] for r in rs),
          "sdk state: 2 copies right and private", [r.body for r in rs])

# state in the brk heap ([heap]): moved too, and malloc keeps working on it
with Daemon({"big": big(32, environmentVariables={"STATE_MB": "32", "STATE_ALLOC": "brk"})}) as d:
    mem, img = sizes(os.path.join(d.snap_dir, "big-v1"))
    check(mem >= 32 * MIB and img < IMAGE_BOUND, "[heap] state: in a memory file (%.1f MiB), image %.2f MiB"
          % (mem / MIB, img / MIB))
    rs = concurrent(d, "/big/check?ms=300", 2) + concurrent(d, "/big/check", 2)
    check(all(r.status == 200 and r.json()["sum_ok"] and r.json()["own_ok"] for r in rs),
          "[heap] state: copies right, private, and keep serving", [r.body for r in rs])

# handler threads (one sleeping, one spinning): their stacks are not moved,
# and they run on in the restored copy
with Daemon({"big": big(16, environmentVariables={"STATE_MB": "16", "BG_THREADS": "1"}, cpu=2)}) as d:
    import re, time
    pid = int(re.search(r"\(pid (\d+)\) restored", d.logs()).group(1))
    sps = d.request("GET", "/big/threads").json()
    sps = [sps["sleeper_sp"], sps["spinner_sp"]]
    maps = []
    for l in open("/proc/%d/maps" % pid):
        f = l.split()
        a, b = (int(x, 16) for x in f[0].split("-"))
        maps.append((a, b, f[5] if len(f) > 5 else ""))
    stacks = sum(1 for sp in sps for (a, b, _) in maps if a <= sp < b)
    moved_stacks = sum(1 for sp in sps for (a, b, path) in maps if a <= sp < b and "thaw-mem-" in path)
    check(stacks >= 2 and moved_stacks == 0, "thread stacks not moved (%d stacks, %d in memory files)"
          % (stacks, moved_stacks))
    a = d.request("GET", "/big/threads").json()
    time.sleep(0.3)
    b = d.request("GET", "/big/threads").json()
    r = d.request("GET", "/big/check")
    check(b["sleeper"] > a["sleeper"] and b["spinner"] > a["spinner"] and restores(d, "big") >= 1,
          "handler threads run on in the restored copy", (a, b))
    check(r.status == 200 and r.json()["sum_ok"], "state right with threads", r.body)

finish()
