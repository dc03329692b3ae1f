"""The registry's bounds (docs/http-api.md, POST /admin/functions): 507
saying which bound is full: 1024 versions a name, 4096 versions in all,
1024 names; below each bound the same deploy is a 201. The versions fail
their init at once (FAULT_INIT_FAIL), so thousands of deploys take seconds."""
import json
import os
import time

from thawtest import Daemon, check, finish, handler_so, write_function

BROKEN = {"handler": handler_so("fault"), "environmentVariables": {"FAULT_INIT_FAIL": "on purpose"}}


def deployer(d):
    auth = {"Authorization": "Bearer " + open(os.path.join(d.state_dir, "admin.token")).read().strip()}
    conn = d.connect(30)
    folders = {}

    def deploy(name):
        if name not in folders:
            folders[name] = write_function(os.path.join(d.tmp, "fn", name), name, BROKEN)
        return d.request("POST", "/admin/functions", body=json.dumps({"dir": folders[name]}), headers=auth, conn=conn)
    return deploy


def deploy_n(deploy, name, n):
    """Deploys name n times; returns how many answered 201."""
    return sum(deploy(name).status == 201 for _ in range(n))


t0 = time.time()
with Daemon(args=["--no-snapshots"]) as d:
    deploy = deployer(d)
    check(deploy_n(deploy, "a", 1024) == 1024, "1024 versions of one name: each 201")
    r = deploy("a")
    check(r.status == 507 and r.json().get("error") ==
          "function a has 1024 versions, the most a name keeps: thaw rm a frees them",
          "the 1025th version of a name: 507 naming the bound", r)
    check(deploy("b").status == 201, "another name still deploys", r)
    check(deploy_n(deploy, "b", 1023) + deploy_n(deploy, "c", 1024) + deploy_n(deploy, "d", 1024) == 3071,
          "up to 4096 versions in all: each 201")
    r = deploy("e")
    check(r.status == 507 and r.json().get("error") ==
          "the daemon holds 4096 versions, the most it keeps (those of removed functions count until it restarts)",
          "version 4097 in all: 507 naming the bound", r)

with Daemon(args=["--no-snapshots"]) as d:
    deploy = deployer(d)
    check(sum(deploy("n%d" % i).status == 201 for i in range(1024)) == 1024, "1024 names: each 201")
    r = deploy("one_more")
    check(r.status == 507 and r.json().get("error") ==
          "the daemon holds 1024 function names, the most it keeps (removed ones count until it restarts)",
          "the 1025th name: 507 naming the bound", r)
    check(deploy("n7").status == 201, "a new version of a known name still deploys")
print("took %.1f s" % (time.time() - t0))
finish()
