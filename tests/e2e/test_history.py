"""The console without a browser: GET /admin/functions/NAME/history needs the
token, has every field as arrays of one length, gets a point with the
traffic sent (rate, latency, instances) within a step or two, and ?since=
keeps the newer points only; a running echo's memory (its memory cgroup's
usage) is in the history, its `now` and /metrics where memory cgroups work,
and absent (null, no metric line), not 0, where they do not; /console/ is served without the token with a
strict CSP, /console redirects, other files 404, other methods 405; a
function cannot be named console."""
import json
import os
import time

from thawtest import Daemon, cgroup_works, check, finish, handler_so, wait_for, write_function

FIELDS = ["rps_2xx", "rps_3xx", "rps_4xx", "rps_5xx", "p50_ms", "p90_ms", "p99_ms", "starting",
          "idle", "busy", "spare", "queue", "cold_starts", "restores", "init_ms", "restore_ms", "cancelled_ps",
          "mem_mb", "mem_total_mb"]
ECHO = {"handler": handler_so("echo"), "timeout": 3}
FAULT = {"handler": handler_so("fault"), "timeout": 3}

with Daemon({"echo": ECHO, "f": FAULT}) as d:
    auth = {"Authorization": "Bearer " + open(os.path.join(d.state_dir, "admin.token")).read().strip()}

    r = d.request("GET", "/admin/functions/echo/history")
    check(r.status == 401, "history without the token: 401", r)
    r = d.request("GET", "/admin/functions/echo/history", headers={"Authorization": "Bearer x"})
    check(r.status == 401, "history with a wrong token: 401", r)
    r = d.request("GET", "/admin/functions/nosuch/history", headers=auth)
    check(r.status == 404, "history of no function: 404", r)

    # traffic: 200 answered by echo, 20 5xx from the fault handler
    t0 = time.time() * 1000
    c = d.connect()
    for _ in range(200):
        d.request("POST", "/echo/", body=b"x", conn=c)
    for _ in range(20):
        d.request("GET", "/f/status?code=503", conn=c)

    def with_traffic(name, field, count):
        """The history once its points hold count requests in field (the
        requests may straddle a step: wait for the next point too)."""
        h = d.request("GET", "/admin/functions/%s/history" % name, headers=auth).json()
        return h if sum(v or 0 for v in h[field]) * h["step_s"] >= count * 0.98 else None

    h = wait_for(lambda: with_traffic("echo", "rps_2xx", 200), secs=20, step=0.5)
    check(h is not None, "echo's history has a point with its requests", h)
    h = h or d.request("GET", "/admin/functions/echo/history", headers=auth).json()
    n = h["points"]
    check(h["step_s"] == 5 and n >= 1 and len(h["t"]) == n and all(len(h[f]) == n for f in FIELDS),
          "every field is an array of `points` values", {k: h[k] for k in ("step_s", "points")})
    # all 200 requests fall in the points so far: rate * step sums to 200
    total = sum((v or 0) * 5 for v in h["rps_2xx"])
    check(abs(total - 200) < 200 * 0.02 + 1, "rps_2xx over the points adds up to the 200 requests", total)
    i = max(range(n), key=lambda k: h["rps_2xx"][k] or 0)
    check(h["p50_ms"][i] is not None and 0 < h["p50_ms"][i] <= h["p99_ms"][i] <= 3000,
          "the point with traffic has p50 <= p99, in ms", (h["p50_ms"][i], h["p99_ms"][i]))
    check(all(t > t0 - 10000 for t in h["t"]) and h["t"] == sorted(h["t"]), "t: unix ms, in order", h["t"])
    check(h["now"]["requests_2xx"] == 200 and h["now"]["idle"] + h["now"]["busy"] >= 1,
          "now: totals and instances", h["now"])
    # spares (spareInstances: 1 by default): a restored copy kept beside the
    # serving one after traffic, where snapshots work; sampled like the others
    def spare_sampled():
        p = d.request("GET", "/admin/functions/echo/history", headers=auth).json()
        g = d.metrics().get('thaw_instances{function="echo",state="spare"}')
        return p["spare"] and p["spare"][-1] == p["now"]["spare"] == g == 1 and p
    if "snapshots on" in d.logs():
        p = wait_for(spare_sampled, secs=15, step=0.5)
        check(p, "history and now have echo's spare, as /metrics does", p and p["spare"])
    else:
        check(h["now"]["spare"] == 0 and all(v == 0 for v in h["spare"]),
              "no snapshots here: no spares in the history", h["spare"])

    # memory per instance: the echo that runs has its memory cgroup's usage
    no_memcg = cgroup_works("memory")
    m = d.metrics()
    if not no_memcg:
        check(h["now"]["memory_instances"] >= 1 and (h["now"]["memory_bytes"] or 0) > 0,
              "now: the running echo's memory, > 0", h["now"])
        check(m.get('thaw_instance_memory_bytes{function="echo"}', 0) > 0 and
              m.get('thaw_instance_memory_instances{function="echo"}', 0) >= 1,
              "/metrics: thaw_instance_memory_bytes > 0 for echo, and how many instances",
              {k: v for k, v in m.items() if "memory" in k})

        def mem_point():
            p = d.request("GET", "/admin/functions/echo/history", headers=auth).json()
            return [v for v in p["mem_mb"] if v is not None] and p
        p = wait_for(mem_point, secs=12, step=0.5)
        mem = [v for v in (p or h)["mem_mb"] if v is not None]
        tot = [v for v in (p or h)["mem_total_mb"] if v is not None]
        check(mem and all(v > 0 for v in mem) and tot and tot[-1] >= mem[-1],
              "history: mem_mb > 0 per instance, mem_total_mb >= it", (mem[-3:], tot[-3:]))
    else:
        check(h["now"]["memory_bytes"] is None and h["now"]["memory_instances"] == 0,
              "no memory cgroup (%s): memory unknown (null), not 0" % no_memcg, h["now"])
        check(not any(k.startswith("thaw_instance_memory_bytes") for k in m),
              "no memory cgroup: no thaw_instance_memory_bytes line", m)
        check(all(v is None for v in h["mem_mb"]), "no memory cgroup: mem_mb all null", h["mem_mb"])

    hf = wait_for(lambda: with_traffic("f", "rps_5xx", 20), secs=20, step=0.5)
    check(hf is not None and hf["now"]["requests_5xx"] == 20, "f's history has its 5xx", hf and hf["now"])
    since = h["t"][-1]
    r = d.request("GET", "/admin/functions/echo/history?since=%d" % since, headers=auth).json()
    check(all(t > since for t in r["t"]) and r["points"] == len(r["t"]), "?since= keeps newer points only", r["t"])

    # the page: no token needed, strict CSP; nothing else under /console/
    r = d.request("GET", "/console/")
    csp = r.header("content-security-policy") or ""
    check(r.status == 200 and b"console.js" in r.body and "default-src 'none'" in csp and
          "connect-src 'self'" in csp, "/console/ without a token, strict CSP", (r.status, csp))
    for f, ctype in (("console.js", "text/javascript"), ("console.css", "text/css")):
        r = d.request("GET", "/console/" + f)
        check(r.status == 200 and (r.header("content-type") or "").startswith(ctype) and
              r.header("x-content-type-options") == "nosniff", "/console/%s: %s" % (f, ctype), r)
    r = d.request("GET", "/console")
    check(r.status == 301 and r.header("location") == "/console/", "/console: 301 to /console/", r)
    r = d.request("GET", "/console/../admin/functions")
    check(r.status == 400, "/console/../: 400", r)
    r = d.request("GET", "/console/admin.token")
    check(r.status == 404, "an unknown console file: 404", r)
    r = d.request("POST", "/console/", body=b"x")
    check(r.status == 405, "POST /console/: 405", r)

    # no GPU here (or none NVML answers for): no GPU figures, no error
    if not os.path.exists("/dev/nvidiactl"):
        m = d.request("GET", "/metrics").body.decode()
        check("thaw_gpu_" not in m and "gpu: " not in d.logs(), "/metrics: no GPU figures, no error", m[-300:])
        r = d.request("GET", "/admin/gpus", headers=auth)
        check(r.status == 200 and r.json()["gpus"] == [], "/admin/gpus: none", r)
    r = d.request("GET", "/admin/gpus")
    check(r.status == 401, "/admin/gpus without the token: 401", r)

    folder = write_function(os.path.join(d.tmp, "bad"), "console", ECHO)
    r = d.request("POST", "/admin/functions", body=json.dumps({"dir": folder}), headers=auth)
    check(r.status == 400 and b"console" in r.body, "a function named console is refused", r)
finish()
