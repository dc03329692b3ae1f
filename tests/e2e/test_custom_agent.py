"""The custom-runtime agent (agent/agent.h): a Python server with 128 MiB of
non-zero state built in 8 threads, 4 more threads alive and a forked helper
child with 32 MiB of its own, is snapshotted with libthaw-agent.so in its
LD_PRELOAD. Every process of the tree moves its large anonymous mappings
into thaw-mem-PID-* files before the dump, so the CRIU image holds no copy
of the state; restored copies (four at once) see the whole state intact,
file-backed, and a write in one copy is not seen by another. With
snapshotMemory {mapped: false} the agent is not loaded and CRIU copies the
state. A thread that blocks the park signal makes the agent give up in its
bound and leave memory as it was; the snapshot still works. With
populate, a copy's agent maps the moved memory in after its first
response. A damaged
memory file is refused (the next instance cold starts)."""
import glob
import os
import re
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thawtest import BUILD, Daemon, check, criu_works, finish, skip, wait_for  # noqa: E402

PY = "/usr/bin/python3"
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom", "state_server.py")
MIB = 1 << 20
STATE_MB, CHILD_MB, POP_MB = 128, 32, 64
IMAGE_BOUND = 64 * MIB  # the interpreter's own heap and the rest: ~20 MiB seen


def fn(**extra):
    f = {"runtime": "custom",
         "customRuntimeConfig": {"command": [PY, SERVER], "port": 9000},
         "environmentVariables": {"STATE_MB": str(STATE_MB), "CHILD_MB": str(CHILD_MB)},
         "memorySize": 1024, "timeout": 20,
         "scalingConfig": {"maxInstances": 4, "maxQueueLength": 50}}
    f.update(extra)
    return f


def sizes(folder):
    mem = img = 0
    names = []
    for p in glob.glob(folder + "/*"):
        n = os.path.basename(p)
        if n.startswith("thaw-mem-"):
            mem += os.path.getsize(p)
            names.append(n)
        else:
            img += os.path.getsize(p)
    return mem, img, names


def concurrent(d, path, n):
    res = {}

    def call(i):
        res[i] = d.request("GET", path, timeout=60)
    ts = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return [res[i] for i in range(n)]


def starts(d, fn_name, kind):
    return d.metrics().get('thaw_instance_starts_total{function="%s",kind="%s"}' % (fn_name, kind), 0)


def test_agent_moves_state(d):
    logs = d.logs()
    check("snapshot of pid" in logs, "the warmed server was checkpointed", logs[-3000:])
    check("processes have the agent, 2 moved their memory" in logs,
          "both processes of the tree (server and forked child) moved their memory",
          [l for l in logs.splitlines() if "agent" in l or "memory" in l][-10:])
    stopped = [int(n) for n in re.findall(r"agent stopped (\d+) threads", logs)]
    check(stopped and max(stopped) >= 5, "the server's other threads were stopped while it moved",
          stopped)
    folder = os.path.join(d.snap_dir, "big-v1")
    mem, img, names = sizes(folder)
    check(mem >= (STATE_MB + CHILD_MB) * MIB,
          "memory files hold the state of both processes: %.1f MiB" % (mem / MIB), names)
    check(len({n.split("-")[2] for n in names}) == 2, "memory files of two processes (by pid)", names)
    check(img < IMAGE_BOUND, "CRIU image without the state: %.1f MiB < %d MiB"
          % (img / MIB, IMAGE_BOUND // MIB))
    manifest = open(os.path.join(folder, "thaw-manifest")).read()
    check(all(n in manifest for n in names), "every memory file is in the manifest")

    rs = concurrent(d, "/big/check?ms=1500", 4)
    check(all(r.status == 200 for r in rs), "4 concurrent requests answered", rs)
    js = [r.json() for r in rs if r.status == 200]
    if len(js) != 4:
        return
    check(len({j["netns"] for j in js}) == 4, "served by four restored copies", js)
    check(all(j["agent"] and j["child_agent"] for j in js), "the agent is loaded in both processes")
    check(all(j["mapped_mb"] >= STATE_MB for j in js),
          "each copy's state is file-backed (%s MiB)" % [round(j["mapped_mb"]) for j in js])
    check(all(j["child_mapped_mb"] >= CHILD_MB for j in js),
          "each copy's forked child's state is file-backed", [j["child_mapped_mb"] for j in js])
    check(all(j["sum_ok"] for j in js), "each copy's full checksum is right", js)
    check(all(j["own_ok"] for j in js), "each copy's writes stay its own", js)
    check(all(j["threads"] >= 6 for j in js), "the copies run with their threads",
          [j["threads"] for j in js])
    rs = concurrent(d, "/big/check", 4)
    check(all(r.status == 200 and r.json()["sum_ok"] for r in rs),
          "checksums still right after every copy wrote")
    check(starts(d, "big", "cold") == 1 and starts(d, "big", "restore") >= 4,
          "one cold start, restores after", (starts(d, "big", "cold"), starts(d, "big", "restore")))
    return folder, names


def test_agent_off(d):
    folder = os.path.join(d.snap_dir, "off-v1")
    mem, img, names = sizes(folder)
    check(not names, "mapped: false: no memory files", names)
    check(img >= STATE_MB * MIB, "mapped: false: CRIU copies the state: %.1f MiB" % (img / MIB))
    r = d.request("GET", "/off/check", timeout=60)
    check(r.status == 200, "mapped: false: a restored copy answers", r)
    if r.status == 200:
        j = r.json()
        check(not j["agent"] and not j["child_agent"], "mapped: false: the agent is not loaded", j)
        check(j["mapped_mb"] == 0 and j["sum_ok"], "mapped: false: state anonymous and right", j)


def test_threads_that_do_not_stop(d):
    """A thread blocks the park signal: the agent gives up after its bound,
    moves nothing of that process, and the snapshot still works (CRIU
    copies the memory)."""
    logs = d.logs()
    check(re.search(r"agent: error: 1 of \d+ threads did not stop in 2000 ms", logs) is not None,
          "a thread that cannot be stopped: one clear line", [l for l in logs.splitlines() if "agent" in l])
    mem, img, names = sizes(os.path.join(d.snap_dir, "stuck-v1"))
    check(not [n for n in names if n.startswith("thaw-mem-1-")],
          "the server's memory was left as it was (no memory file of it)", names)
    check(img >= STATE_MB * MIB, "CRIU copied the server's state: %.1f MiB" % (img / MIB))
    r = d.request("GET", "/stuck/check", timeout=60)
    check(r.status == 200 and r.json()["sum_ok"] and r.json()["mapped_mb"] == 0,
          "a restored copy answers with its state right, anonymous", r)


def test_populate(d):
    """snapshotMemory.populate: after a restored copy's first response its
    agent maps the moved memory in; /rss touches none of it."""
    r = d.request("GET", "/pop/rss", timeout=60)
    check(r.status == 200, "populate: a restored copy answers", r)
    if r.status != 200:
        return
    first = r.json()
    check(first["mapped_mb"] >= POP_MB and first["resident_mb"] < POP_MB,
          "populate: at the first request the moved state is not mapped in yet", first)
    got = wait_for(lambda: d.request("GET", "/pop/rss").json()["resident_mb"] >= first["mapped_mb"] - 1,
                   secs=10, step=0.2)
    check(got, "populate: after the first response all of it is mapped in",
          (first, d.request("GET", "/pop/rss").json()))


def test_damaged_file_refused(d, folder, names):
    victim = os.path.join(folder, sorted(names)[0])
    os.chmod(victim, 0o600)
    with open(victim, "r+b") as f:
        f.seek(4096)
        b = f.read(1)
        f.seek(4096)
        f.write(bytes([b[0] ^ 0xff]))
    before = starts(d, "big", "cold")
    # copies stop at zero after their grace; the next start verifies the snapshot
    ok = wait_for(lambda: all(d.metrics().get('thaw_instances{function="big",state="%s"}' % s) == 0
                              for s in ("starting", "idle", "busy")), secs=30, step=0.3)
    check(ok, "the function scaled to zero")
    r = d.request("GET", "/big/check", timeout=60)
    check(r.status == 200 and r.json()["sum_ok"], "after damage: answered right", r)
    logs = d.logs()
    check("SHA-256 mismatch" in logs or "snapshot refused" in logs,
          "an altered memory file is refused", logs[-2000:])
    check(starts(d, "big", "cold") > before, "the next instance cold starts")


def main():
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    why = criu_works()
    if why:
        skip(why)
    agent = os.path.join(BUILD, "libthaw-agent.so")
    check(os.path.exists(agent), "make built %s" % agent)
    fns = {"big": fn(scalingConfig={"maxInstances": 4, "maxQueueLength": 50,
                                     "scaleToZeroGracePeriodSeconds": 0,
                                     "stableWindowSeconds": 6}),
           "off": fn(snapshotMemory={"mapped": False},
                     environmentVariables={"STATE_MB": str(STATE_MB), "CHILD_MB": "0"}),
           "pop": fn(snapshotMemory={"populate": True},
                     environmentVariables={"STATE_MB": str(POP_MB), "CHILD_MB": "0"}),
           "stuck": fn(environmentVariables={"STATE_MB": str(STATE_MB), "CHILD_MB": "0",
                                             "BLOCK_PARK": "1"})}
    with Daemon(fns, ready_timeout=180, threads=2) as d:
        got = test_agent_moves_state(d)
        test_agent_off(d)
        test_threads_that_do_not_stop(d)
        test_populate(d)
        if got:
            test_damaged_file_refused(d, *got)
    finish()


if __name__ == "__main__":
    main()
