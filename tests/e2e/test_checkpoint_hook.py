"""The handler's before_checkpoint hook through the daemon: after the
warm-up the daemon sends CH_CHECKPOINT, the hook runs in the warmed
instance, and only then is it dumped, so every restored copy starts from
the state the hook left (the fault handler counts its hooks at /hooks). A
failing hook means no snapshot: the function serves from cold starts."""
import os
import subprocess

from thawtest import Daemon, check, finish, handler_so, skip, wait_for

probe = subprocess.run([os.environ.get("THAW_CRIU", "/usr/local/lib/thaw/criu/criu"), "check"],
                       capture_output=True, text=True)
if os.geteuid() != 0 or probe.returncode != 0:
    skip("snapshots need root and a working CRIU (make deps): " + (probe.stderr.strip().splitlines() or ["?"])[-1])

FAULT = {"handler": handler_so("fault"), "timeout": 10, "scalingConfig": {"maxInstances": 2},
         "warmup": {"method": "GET", "path": "/random"}}


def starts(d, kind):
    return d.metrics().get('thaw_instance_starts_total{function="fault",kind="%s"}' % kind, 0)


with Daemon({"fault": FAULT}) as d:
    r = d.request("GET", "/fault/hooks")
    check(r.status == 200 and r.json() == {"before_checkpoint": 1, "on_restore": 1},
          "a restored copy: before_checkpoint ran once before the dump, on_restore once after", r)
    check(starts(d, "restore") >= 1 and starts(d, "cold") == 1, "served by a restore", d.metrics())
    log = d.logs()
    check(log.find("warmup answered") < log.find("fault: before_checkpoint") < log.find("snapshot of pid"),
          "order: warm-up, before_checkpoint, dump")

with Daemon({"fault": dict(FAULT, environmentVariables={"FAULT_CHECKPOINT_FAIL": "device busy"})}) as d:
    check(wait_for(lambda: "before_checkpoint failed: device busy: no snapshot" in d.logs(), 10),
          "a failing hook: logged, no snapshot", d.logs()[-2000:])
    r = d.request("GET", "/fault/hooks")
    check(r.status == 200 and r.json() == {"before_checkpoint": 0, "on_restore": 0},
          "the function still serves, from a cold start", r)
    check(starts(d, "restore") == 0 and starts(d, "cold") == 2, "two cold starts, no restore", d.metrics())
    check("snapshot of pid" not in d.logs(), "nothing was dumped")

with Daemon({"fault": dict(FAULT, environmentVariables={"FAULT_CHECKPOINT_CRASH": "1"})}) as d:
    check(wait_for(lambda: "before_checkpoint failed: instance" in d.logs(), 10),
          "a hook that crashes: logged as a failed hook, no snapshot", d.logs()[-2000:])
    r = d.request("GET", "/fault/hooks")
    check(r.status == 200 and r.json() == {"before_checkpoint": 0, "on_restore": 0},
          "the function still serves, from a cold start (not stuck waiting for a snapshot)", r)

finish()
