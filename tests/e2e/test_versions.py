"""Versions: every deploy is a new version; it takes traffic once ready, a
broken one never does; rollback switches atomically; no request fails while
versions change under load; TF Serving's /versions/N reaches a given one."""
import json
import os
import time

from thawtest import Daemon, Load, check, finish, handler_so, write_function, wait_for

V1 = {"handler": handler_so("echo"), "timeout": 5, "scalingConfig": {"maxInstances": 2}}
V2 = {"handler": handler_so("fault"), "timeout": 5, "scalingConfig": {"maxInstances": 2}}
BROKEN = {"handler": handler_so("fault"), "environmentVariables": {"FAULT_INIT_FAIL": "bad weights"}}



with Daemon({"svc": V1}, threads=2) as d:
    auth = {"Authorization": "Bearer " + open(os.path.join(d.state_dir, "admin.token")).read().strip()}

    def info():
        return d.request("GET", "/admin/functions/svc", headers=auth).json()

    def deploy(name, fields):
        folder = write_function(os.path.join(d.tmp, name), "svc", fields)
        return d.request("POST", "/admin/functions", body=json.dumps({"dir": folder}), headers=auth)

    # steady load on two threads for the whole test: not one request may fail
    load = Load(d, lambda c: d.request("POST", "/svc/id", body=b"x", conn=c), workers=2).start()
    time.sleep(0.3)

    r = deploy("v2", V2)
    check(r.status == 201 and r.json()["version"] == 2, "deploy answers 201 with version 2", r)
    check(wait_for(lambda: info()["current"] == 2), "version 2 serves once ready", info())
    r = d.request("GET", "/svc/id")
    check(r.status == 200 and b"instance_id" in r.body, "traffic reaches version 2 (fault handler)", r)

    r = deploy("v3", BROKEN)
    check(r.status == 201 and r.json()["version"] == 3, "broken deploy accepted as version 3", r)
    check(wait_for(lambda: [v["state"] for v in info()["versions"]][2] == "failed"), "version 3 fails init", info())
    check(info()["current"] == 2, "version 2 still serves after a broken deploy", info())
    check(d.request("GET", "/readyz").status == 200, "still ready beside the failed deploy")
    check("bad weights" in json.dumps(info()), "the failed version's error is shown", info())

    # rollback bodies that are not {"version": N >= 1}: 400, and nothing moves (version 2 serves)
    for body in ('{"version": 1.9}', '{"version": 0}', '{"version": -1}', '{"version": "1"}',
                 '{"version": 4294967296}', '{"version": 1e400}', '{"version": null}', '{}',
                 '[1]', '1', 'not json'):
        r = d.request("POST", "/admin/functions/svc/rollback", body=body, headers=auth)
        check(r.status == 400 and "integer >= 1" in r.json().get("error", ""),
              "rollback body %s: 400" % body, r)
    check(info()["current"] == 2, "no refused rollback moved the traffic", info())
    for v in (100, 4294967295):  # past the versions there are, past MAX_VERSIONS: no such version
        r = d.request("POST", "/admin/functions/svc/rollback", body=json.dumps({"version": v}), headers=auth)
        check(r.status == 404 and r.json().get("error") == "svc has no version %d" % v,
              "rollback to version %d: 404 no such version" % v, r)

    r = d.request("POST", "/admin/functions/svc/rollback", body=json.dumps({"version": 1}), headers=auth)
    check(r.status == 200 and r.json()["current"] == 1, "rollback to version 1", r)
    r = d.request("POST", "/svc/", body=b"echoed")
    check(r.status == 200 and r.body == b"echoed", "traffic back on version 1 (echo)", r)
    r = d.request("POST", "/admin/functions/svc/rollback", body=json.dumps({"version": 3}), headers=auth)
    check(r.status == 409, "rollback to a failed version: 409", r)
    r = d.request("POST", "/admin/functions/svc/rollback", body=json.dumps({"version": 9}), headers=auth)
    check(r.status == 404, "rollback to a missing version: 404", r)
    r = d.request("POST", "/admin/functions/svc/rollback", headers=auth)
    check(r.status == 404 and r.json().get("error") == "svc has no ready version older than version 1",
          "rollback without a body from version 1: 404 naming the version serving", r)

    r = d.request("POST", "/v1/models/svc/versions/2:predict", body=b"{}")
    check(r.status == 200 and r.header("x-echo-path") is None, "TF Serving path pinned to version 2 reaches it (fault)", r)
    r = d.request("POST", "/v1/models/svc/versions/1:predict", body=b"{}")
    check(r.status == 200 and r.header("x-echo-path") == "/v1/models/svc/versions/1:predict",
          "pinned to version 1 reaches echo with the whole path", r.headers)
    r = d.request("GET", "/v1/models/svc/versions/7:predict")
    check(r.status == 404, "pinned to a missing version: 404", r)

    flips = []
    for _ in range(3):  # flip back and forth under load; each rollback is checked
        for v in (2, 1):
            r = d.request("POST", "/admin/functions/svc/rollback", body=json.dumps({"version": v}), headers=auth)
            flips.append((v, r.status, r.json().get("current") if r.status == 200 else r.body))
            time.sleep(0.1)
    check(flips == [(v, 200, v) for v in (2, 1) * 3], "six rollbacks under load: each 200, each switched", flips)
    outcomes = load.finish("load during deploys and rollbacks")
    failures = [o for o in outcomes if o != 200]
    check(len(outcomes) > 50, "load ran (%d requests)" % len(outcomes))
    check(not failures, "no request failed during deploys and rollbacks", failures[:3])
    m = d.metrics()
    check(m.get('thaw_requests_total{function="svc",code="200"}', 0) >= len(outcomes),
          "metrics sum the versions of a function")

    # a restarted daemon serves the same versions, from the same snapshots
    before = info()
    d.restart()
    after = info()
    check(after["current"] == before["current"] == 1 and len(after["versions"]) == 3,
          "after a restart: same versions, same one serving", after)
    r = d.request("POST", "/svc/", body=b"again")
    check(r.status == 200 and r.body == b"again", "version 1 serves after the restart", r)
    check("reuses its snapshot" in d.logs(), "the snapshot of the earlier run is reused")
    m = d.metrics()
    check(m.get('thaw_instance_starts_total{function="svc",kind="cold"}', 0) == 0 and
          m.get('thaw_instance_starts_total{function="svc",kind="restore"}', 0) >= 1,
          "no cold start after the restart: restores only", {k: v for k, v in m.items() if "starts" in k})

finish()
