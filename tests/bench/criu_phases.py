#!/usr/bin/env python3
"""Where a criu restore's time goes: restores the snapshot folder IMG N times
(fresh socketpair and pipe handed in as thaw does, the copy killed after
each) with a -v4 log, and prints the median (min) time between marker lines
of CRIU's log, plus the wall time outside the log (exec and link of criu,
its start before the log opens, its exit; this script forks from Python,
which adds to that part). Usage: criu_phases.py IMG N (root; IMG e.g. kept
by THAW_TEST_KEEP=1 build/tests/unit/test_snapshot: ROOT/img)."""
import os, re, socket, subprocess, sys, time, statistics
img, n = sys.argv[1], int(sys.argv[2])
fds = open(img + "/thaw-fds").read().split()
chan, log = fds[1], fds[3]
MARK = [("log open", None), ("kdat cache loaded", "Loaded kdat cache"), ("cpu, inherit-fds, image tree", "Reading image tree"),
        ("pstree, ns, collect", "Forking task with"), ("clone3 into new pidns, task setup, fds", "Opening fdinfo-s"),
        ("fds, vmas premap, restorer args", "Switched to the restorer"), ("restorer: vmas, vdso, threads", "Running post-restore scripts"),
        ("unfreeze, ptrace detach", "Restore finished successfully")]
rows = []
for i in range(n):
    a, b = socket.socketpair(); r, w = os.pipe()
    pidf = "/dev/shm/thaw-criu/phases-%d.pid" % i
    if os.path.exists(pidf): os.unlink(pidf)
    logf = "/tmp/criu-phases.log"
    def pre():
        os.dup2(b.fileno(), 3); os.dup2(w, 4)
    t0 = time.perf_counter()
    subprocess.run(["/usr/local/lib/thaw/criu/criu", "restore", "-D", img, "-o", logf, "-v4", "-d", "-S",
        "--pidfile", pidf, "--inherit-fd", "fd[3]:socket:[%s]" % chan, "--inherit-fd", "fd[4]:pipe:[%s]" % log,
        "--manage-cgroups=ignore"], preexec_fn=pre, close_fds=False, capture_output=True)
    wall = (time.perf_counter() - t0) * 1e3
    pid = int(open(pidf).read()); os.unlink(pidf); os.kill(pid, 9); os.waitpid(pid, 0)
    a.close(); b.close(); os.close(r); os.close(w)
    ts = {}
    last = 0
    for line in open(logf):
        m = re.match(r"\((\d+\.\d+)\)", line)
        if not m: continue
        t = float(m.group(1)) * 1e3; last = t
        for name, pat in MARK:
            if pat and pat in line and name not in ts: ts[name] = t
    prev = 0.0; row = {}
    for name, pat in MARK[1:]:
        row[name] = ts.get(name, prev) - prev; prev = ts.get(name, prev)
    row["after finish"] = last - prev
    row["outside the log: exec, link, exit"] = wall - last
    row["wall"] = wall
    rows.append(row)
print("criu restore of %s, %d runs, -v4 log to a file; per phase median (min) ms:" % (img, n))
for k in rows[0]:
    xs = [r[k] for r in rows]
    print("  %-40s %6.2f (%5.2f)" % (k, statistics.median(xs), min(xs)))
