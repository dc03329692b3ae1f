"""Each instance's own /tmp and /dev/shm (issue 16 item 10): what a handler
writes there reaches neither the daemon's folders nor another instance, is
bounded by --scratch-mb and counted in memorySize, and goes away with its
instance; snapshots are taken and restored from inside that namespace, and
what init left there is not in the copies; --scratch-mb 0 shares them as
before."""
import os
import re

from thawtest import (Daemon, cgroup_works, check, criu_works, finish, handler_so, skip, skip_part,
                      wait_for)

if os.geteuid() != 0:
    skip("needs root (mount namespaces)")

TAG = "thaw-scratch-test-%d" % os.getpid()
INIT_FILE = "/tmp/%s-init" % TAG
FN = {"handler": handler_so("fault"), "timeout": 10, "memorySize": 512,
      "environmentVariables": {"FAULT_INIT_WRITE": INIT_FILE},
      "scalingConfig": {"maxInstances": 4}}
ENOENT, ENOSPC = 2, 28


def instance_pids(d):
    """The daemon's thaw-instance children."""
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            st = open("/proc/%s/stat" % p).read()
        except OSError:
            continue
        if "(thaw-instance)" in st and int(st.rsplit(")", 1)[1].split()[1]) == d.proc.pid:
            out.append(int(p))
    return out


def mounts_of(pid):
    """{mount point: (fs type, super options)} as pid sees them."""
    out = {}
    for line in open("/proc/%d/mountinfo" % pid):
        head, tail = line.split(" - ", 1)
        fstype, _, sopts = tail.split()[:3]
        out[head.split()[4]] = (fstype, sopts)
    return out


def memory_usage(pid):
    """Bytes charged to pid's memory cgroup (v1 or v2), or None."""
    for line in open("/proc/%d/cgroup" % pid):
        _, ctls, path = line.rstrip("\n").split(":", 2)
        for root, ctl, name in (("/sys/fs/cgroup/memory", "memory", "memory.usage_in_bytes"),
                                ("/sys/fs/cgroup", "", "memory.current")):
            f = root + path + "/" + name
            if (ctl in ctls.split(",") or ctls == ctl) and os.path.exists(f):
                return int(open(f).read())
    return None


no_snapshots = criu_works()
with Daemon({"fault": FN}, args=["--scratch-mb", "64"]) as d:
    check("private scratch: each instance gets its own /tmp and /dev/shm (tmpfs, 64 MiB each" in d.logs(),
          "the daemon says instances get their own /tmp and /dev/shm", d.logs()[-1500:])
    for top in ("/tmp", "/dev/shm"):
        path = "%s/%s" % (top, TAG)
        r = d.request("GET", "/fault/write?path=%s&mb=8" % path)
        check(r.status == 200 and r.json() == {"written_mb": 8, "errno": 0}, "a handler writes 8 MiB to " + top, r)
        check(not os.path.exists(path), "the daemon's %s does not get it" % top)
        r = d.request("GET", "/fault/open?path=" + path)
        check(r.status == 200 and r.json()["read"] == 0, "the instance reads its own file back in " + top, r)

    pids = instance_pids(d)
    check(len(pids) == 1, "one instance serves", pids)
    if pids:
        m = mounts_of(pids[0])
        for top in ("/tmp", "/dev/shm"):
            fstype, sopts = m.get(top, ("", ""))
            check(fstype == "tmpfs" and "size=65536k" in sopts,
                  "the instance's %s is a tmpfs of 64 MiB of its own" % top, m.get(top))
        check(d.snap_dir in m and d.state_dir in m,
              "the snapshot and state folders are bound back at their paths", sorted(m)[-8:])

    r = d.request("GET", "/fault/write?path=/dev/shm/%s-big&mb=100" % TAG)
    check(r.status == 200 and r.json()["errno"] == ENOSPC and 50 <= r.json()["written_mb"] <= 64,
          "past --scratch-mb 64 the write fails with ENOSPC", r)

    why = cgroup_works("memory")
    if why or not pids:
        skip_part("scratch in memorySize: " + (why or "no instance"))
    else:
        before = memory_usage(pids[0])
        r = d.request("GET", "/fault/write?path=/tmp/%s-charged&mb=32" % TAG)
        after = memory_usage(pids[0])
        check(r.status == 200 and before is not None and after - before >= 30 << 20,
              "what it writes there is charged to its memory group (+%.1f MiB)" %
              ((after - before) / 2**20 if before is not None else -1), r)

    r = d.request("GET", "/fault/open?path=" + INIT_FILE)
    if no_snapshots:
        skip_part("a copy without init's files: " + no_snapshots)
        check(r.status == 200 and r.json()["read"] == 0, "a cold-started instance has what its init wrote", r)
    else:
        check(" restored in " in d.logs(), "the function serves from a restored copy",
              d.logs()[-1500:])
        check(r.status == 200 and r.json()["read"] == ENOENT,
              "a restored copy starts with an empty /tmp: init's file is not carried", r)
        check(not os.path.exists(INIT_FILE), "nor did init write into the daemon's /tmp")

    # recycled: a new instance has none of it, and the space is free again
    r = d.request("GET", "/fault/exit?code=3")
    check(r.status == 502, "the instance exits", r)
    for top in ("/tmp", "/dev/shm"):
        r = d.request("GET", "/fault/open?path=%s/%s" % (top, TAG))
        check(r.status == 200 and r.json()["read"] == ENOENT,
              "the next instance does not see the last one's %s" % top, r)
    gone = wait_for(lambda: not any(p in instance_pids(d) for p in pids), secs=5)
    check(gone, "the exited instance is gone, and its tmpfs with it", pids)

    if not no_snapshots:
        restores = re.findall(r"restored in [0-9.]+ ms", d.logs())
        check(len(restores) >= 2, "the replacement is a restore too", restores)

# a file init keeps open in its /tmp could not be restored in a copy (which
# starts with an empty one): no snapshot, one line naming it, cold starts
if no_snapshots:
    skip_part("a file held open in scratch: " + no_snapshots)
else:
    held = dict(FN, environmentVariables={"FAULT_INIT_WRITE": INIT_FILE, "FAULT_INIT_HOLD": "1"})
    with Daemon({"fault": held}, args=["--scratch-mb", "64"]) as d:
        def cold():
            f = d.request("GET", "/readyz").json()["functions"]["fault"]
            return f.get("cold_starts") and f
        z = wait_for(cold, secs=10)
        check(z and z["state"] == "ready", "init holding a file in its /tmp: ready on cold starts", z)
        check("keeps open %s: an instance's own /tmp and /dev/shm are not carried" % INIT_FILE in d.logs(),
              "the daemon names the file that stops the snapshot", d.logs()[-1500:])
        r = d.request("GET", "/fault/id")
        check(r.status == 200, "and serves", r)

# --scratch-mb 0: the daemon's /tmp, as before
shared = "/tmp/%s-shared" % TAG
with Daemon({"fault": {"handler": handler_so("fault"), "timeout": 10}}, args=["--scratch-mb", "0"]) as d:
    r = d.request("GET", "/fault/write?path=%s&mb=1" % shared)
    check(r.status == 200 and os.path.exists(shared), "--scratch-mb 0: the handler writes the daemon's /tmp", r)
    check("private scratch off (--scratch-mb 0)" in d.logs(), "and the daemon says so")
if os.path.exists(shared):
    os.unlink(shared)
finish()
