"""thaw rm and DELETE /admin/functions/NAME: the name stops routing at once
(404) while a request under way finishes, its instances stop, its snapshot
folders go, a restart keeps it removed (the journal's "rm" line), and a new
deploy of the name starts again at version 1."""
import os
import subprocess
import threading
import time

from thawtest import THAW, Daemon, check, criu_works, finish, handler_so, skip_part, write_function, wait_for

FAULT = {"handler": handler_so("fault"), "timeout": 10}


def thaw(env, *args, timeout=60):
    p = subprocess.run([THAW] + list(args), env=env, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")



def fault_snapshots(d):
    return [e for e in os.listdir(d.snap_dir) if e.startswith("fault-v")] if os.path.isdir(d.snap_dir) else []


with Daemon() as d:
    env = dict(os.environ, THAW_URL="http://127.0.0.1:%d" % d.port)
    env.pop("THAW_TOKEN", None)
    sd = ["--state-dir", d.state_dir]
    fdir = write_function(d.tmp, "fault", FAULT)
    rc, out, err = thaw(env, "deploy", fdir, *sd)
    check(rc == 0, "deploy fault", (rc, out, err))
    rc, out, err = thaw(env, "deploy", fdir, *sd)
    check(rc == 0 and "version 2" in out, "deploy fault again: version 2", (rc, out, err))
    check(d.request("GET", "/fault/id").status == 200, "fault answers")
    # "its snapshot folders are deleted" means something only if there were
    # some: where CRIU works, there must be (decided by the machine)
    no_criu = criu_works()
    if no_criu:
        skip_part("snapshot folders deleted on rm: " + no_criu)
    else:
        check(wait_for(lambda: fault_snapshots(d)), "snapshot folders exist before the rm", os.listdir(d.snap_dir))

    # a request under way when the function is removed finishes
    slow = {}
    t = threading.Thread(target=lambda: slow.update(r=d.request("GET", "/fault/sleep?ms=1500", timeout=10)))
    t.start()
    time.sleep(0.4)
    rc, out, err = thaw(env, "rm", "fault", *sd)
    check(rc == 0 and "fault: removed" in out, "thaw rm exits 0", (rc, out, err))
    r = d.request("GET", "/fault/id")
    check(r.status == 404, "the name stops routing at once: 404", r)
    check(d.request("GET", "/v2/models/fault/versions/1/infer").status == 404, "its versions too: 404")
    t.join(10)
    check(slow.get("r") is not None and slow["r"].status == 200, "the request under way finished", slow)
    rc, out, err = thaw(env, "rm", "fault", *sd)
    check(rc == 1, "thaw rm of a removed function exits 1", (rc, out, err))
    rc, out, err = thaw(env, "rm", "nope", *sd)
    check(rc == 1 and "not found" in err, "thaw rm of an unknown function exits 1", (rc, out, err))
    rc, out, err = thaw(env, "ls", "--json", *sd)
    check(rc == 0 and "fault" not in out, "ls no longer lists it", (rc, out, err))
    check(wait_for(lambda: "function removed" in d.logs()), "its idle instance stops")
    if not no_criu:
        check(wait_for(lambda: not fault_snapshots(d)), "its snapshot folders are deleted", fault_snapshots(d))
    journal = open(os.path.join(d.state_dir, "deployments.jsonl")).read()
    check('"op":"rm","name":"fault"' in journal, "the journal has the rm line", journal)

    # a restart keeps it removed
    d.restart()
    r = d.request("GET", "/fault/id")
    check(r.status == 404, "after a restart it is still removed", r)
    rc, out, err = thaw(env, "ls", "--json", *sd)
    check(rc == 0 and "fault" not in out, "ls after the restart does not list it", (rc, out, err))

    # a new deploy starts at version 1
    rc, out, err = thaw(env, "deploy", fdir, *sd)
    check(rc == 0 and "fault version 1 serves" in out, "a new deploy starts again at version 1", (rc, out, err))
    check(d.request("GET", "/fault/id").status == 200, "and it serves")
    d.restart()
    r = d.request("GET", "/fault/id")
    check(r.status == 200, "after another restart the new deploy serves", r)
    rc, out, err = thaw(env, "history", "fault", *sd)
    check(rc == 0 and len([l for l in out.splitlines()[1:] if l.strip()]) == 1, "history shows one version", out)

finish()
