"""A restarted daemon serves what it served before: the same version (after
rollbacks and later deploys), the same version numbers (a deploy that cannot
be loaded again stays a failed version), the same deploy times; snapshots
of an earlier run are reused only when made from the same source, and old
versions' snapshots do not pile up on the tmpfs."""
import json
import os
import shutil
import time

from thawtest import Daemon, check, finish, handler_so, skip, write_function, wait_for

if os.geteuid() != 0:
    skip("needs root (snapshots)")

FAULT = handler_so("fault")


def fields(mark):
    return {"handler": FAULT, "timeout": 5, "environmentVariables": {"MARK": mark},
            "scalingConfig": {"maxInstances": 2}}



def mark(d, name):
    r = d.request("GET", "/%s/env?name=MARK" % name, timeout=20)
    return r.json().get("value") if r.status == 200 else r


class Admin:
    def __init__(self, d):
        self.d = d

    def auth(self):
        return {"Authorization": "Bearer " + open(os.path.join(self.d.state_dir, "admin.token")).read().strip()}

    def deploy(self, name, folder_name, mark_value):
        folder = write_function(os.path.join(self.d.tmp, folder_name), name, fields(mark_value))
        r = self.d.request("POST", "/admin/functions", body=json.dumps({"dir": folder}), headers=self.auth())
        check(r.status == 201, "deploy %s from %s" % (name, folder_name), r)
        return folder

    def info(self, name):
        return self.d.request("GET", "/admin/functions/" + name, headers=self.auth()).json()

    def rollback(self, name, v):
        return self.d.request("POST", "/admin/functions/%s/rollback" % name,
                              body=json.dumps({"version": v}), headers=self.auth())

    def wait_current(self, name, v):
        return wait_for(lambda: self.info(name).get("current") == v)


# 1. --functions: an fc.yaml edited between runs is not served from the old snapshot
with Daemon({"fx": fields("first")}) as d:
    check(mark(d, "fx") == "first", "fx serves its first fc.yaml")
    check(wait_for(lambda: "snapshot of" in d.logs()), "fx was snapshotted")
    write_function(d.fn_dir, "fx", fields("second"))
    d.restart()
    check(mark(d, "fx") == "second", "after an fc.yaml change and a restart: the new fc.yaml serves")
    check("made from another image, configuration or build" in d.logs(), "the old snapshot is refused, said in the log")
    journal = os.path.join(d.state_dir, "deployments.jsonl")
    check(not os.path.exists(journal) or '"fx"' not in open(journal).read(),
          "--functions versions are not journaled (they are loaded anew each start)")
    d.restart()
    check(mark(d, "fx") == "second", "unchanged fc.yaml: still the same")
    check("fx: version 1 reuses its snapshot" in d.logs().split("listening on")[-2], "unchanged: the snapshot is reused")

# 2. a wiped state folder: version 1 of another source is not restored from the old snapshot
with Daemon() as d:
    a = Admin(d)
    a.deploy("sw", "a", "from-a")
    check(a.wait_current("sw", 1) and mark(d, "sw") == "from-a", "sw v1 serves from-a")
    check(wait_for(lambda: "snapshot of" in d.logs()), "sw v1 snapshotted")
    d.keep = True
    d.stop()
    d.keep = False
    shutil.rmtree(d.state_dir)
    d.start()
    a.deploy("sw", "b", "from-b")
    check(a.wait_current("sw", 1), "sw is version 1 again")
    check(mark(d, "sw") == "from-b", "the new version 1 serves its own code, not the old snapshot")

# 3. rollback then a deploy, broken folders, deploy times: all as before the restart
with Daemon() as d:
    a = Admin(d)
    a.deploy("rr", "r1", "r1")
    check(a.wait_current("rr", 1), "rr v1 ready")
    a.deploy("rr", "r2", "r2")
    check(a.wait_current("rr", 2), "rr v2 ready")
    check(a.rollback("rr", 1).status == 200 and mark(d, "rr") == "r1", "rolled back to v1")
    a.deploy("rr", "r3", "r3")
    check(a.wait_current("rr", 3) and mark(d, "rr") == "r3", "a later deploy (v3) serves")
    broken = write_function(os.path.join(d.tmp, "r4"), "rr", dict(fields("r4"), environmentVariables={"FAULT_INIT_FAIL": "no weights"}))
    d.request("POST", "/admin/functions", body=json.dumps({"dir": broken}), headers=a.auth())
    check(wait_for(lambda: a.info("rr")["versions"][-1]["state"] == "failed"), "v4 fails init")
    snaps = lambda: sorted(n for n in os.listdir(d.snap_dir) if n.startswith("rr-v"))
    check(wait_for(lambda: snaps() == ["rr-v1", "rr-v3"]), "v3 took over from v1: v2's snapshot deleted, v1's and v3's kept", snaps())
    before = {v["version"]: v for v in a.info("rr")["versions"]}
    time.sleep(1.1)  # deploy times are whole seconds: a reset would show

    # the folder of v1 breaks while the daemon is down; a stray folder appears
    with open(os.path.join(d.tmp, "r1", "rr", "fc.yaml"), "a") as f:
        f.write("oops: [\n")
    os.makedirs(os.path.join(d.snap_dir, "ghost-v7"))
    open(os.path.join(d.snap_dir, "notes.txt"), "w").close()
    d.restart()
    info = a.info("rr")
    states = [v["state"] for v in info["versions"]]
    check(info["current"] == 3 and mark(d, "rr") == "r3", "after the restart v3 serves, not the rolled-back v1", info.get("current"))
    check(len(states) == 4 and states[0] == "failed" and states[3] == "failed", "still 4 versions, v1 (unloadable) and v4 failed", states)
    check(states[1] == "ready", "v2 is ready, not 'starting' for ever", states)
    check("cannot be loaded again" in info["versions"][0].get("error", ""), "v1 says why it failed", info["versions"][0])
    check("no weights" in info["versions"][3].get("error", ""), "v4 keeps its init error", info["versions"][3])
    check(all(info["versions"][i]["deployed_at"] == before[i + 1]["deployed_at"] for i in range(4)),
          "deploy times survive the restart", [(v["deployed_at"], before[v["version"]]["deployed_at"]) for v in info["versions"]])
    check(a.rollback("rr", 2).status == 200 and mark(d, "rr") == "r2", "rollback to v2 reaches v2's code (numbers did not shift)")
    r1 = d.request("POST", "/v1/models/rr/versions/1:predict", body=b"{}", timeout=5)
    check(r1.status == 503 and b"cannot be loaded again" in r1.body, "a request pinned to the unloadable v1: 503 with the reason", r1)
    check(not os.path.exists(os.path.join(d.snap_dir, "ghost-v7")), "a snapshot folder no version uses is deleted at start")
    check(os.path.exists(os.path.join(d.snap_dir, "notes.txt")), "other files in the snapshot dir are left alone")
    d.restart()
    info = a.info("rr")
    check(info["current"] == 2, "the rollback after the restart holds over another restart", info.get("current"))

# 4. a name deployed 100 times keeps its newest 64 across a restart (and a
# rollback pin further back keeps what it needs)
with Daemon() as d:
    a = Admin(d)
    d.keep = True
    d.stop()
    d.keep = False
    many = write_function(os.path.join(d.tmp, "many"), "many", fields("m"))
    pin = write_function(os.path.join(d.tmp, "pin"), "pin", fields("p"))
    t = int(time.time()) - 3600
    lines = [{"op": "deploy", "name": "many", "version": v, "dir": many, "time": t + v} for v in range(1, 101)]
    lines.append({"op": "ready", "name": "many", "version": 100, "time": t + 100})
    lines += [{"op": "deploy", "name": "pin", "version": v, "dir": pin, "time": t} for v in range(1, 81)]
    lines += [{"op": "ready", "name": "pin", "version": 5, "time": t}, {"op": "rollback", "name": "pin", "version": 5, "time": t}]
    with open(os.path.join(d.state_dir, "deployments.jsonl"), "w") as f:
        f.write("".join(json.dumps(l) + "\n" for l in lines))
    d.start()
    info = a.info("many")
    check([v["version"] for v in info["versions"]] == list(range(37, 101)), "many: versions 37..100 loaded again",
          [v["version"] for v in info["versions"]][:3])
    check(info["current"] == 100 and mark(d, "many") == "m", "many: version 100 serves", info.get("current"))
    check(info["versions"][-1]["deployed_at"] == t + 100, "many: deploy times kept")
    check(a.rollback("many", 36).status == 404, "a retired version: 404")
    check(a.rollback("many", 37).status == 200, "the oldest kept version: rollback works")
    r = d.request("POST", "/v1/models/many/versions/20:predict", body=b"{}")
    check(r.status == 404, "a retired version pinned by path: 404", r)
    info = a.info("pin")
    check([v["version"] for v in info["versions"]] == list(range(5, 81)) and info["current"] == 5,
          "pin: rolled back to version 5 before the restart: versions 5..80 kept, 5 serves",
          ([v["version"] for v in info["versions"]][:2], info.get("current")))
    check("100 old version(s) retired" not in d.logs() and "40 old version(s) retired" in d.logs(),
          "the log says how many versions were retired")
    r = d.request("POST", "/admin/functions", body=json.dumps({"dir": many}), headers=a.auth())
    check(r.status == 201 and r.json()["version"] == 101, "the next deploy is version 101", r)

finish()
