"""End to end through the real daemon: HTTP/1.1 behaviour, limits, deadlines,
crashes, routing and metrics (issue: runtime core)."""
import re
import socket
import threading
import time

from thawtest import SANITIZED, Daemon, cgroup_works, check, finish, handler_so, parallel, skip_part

ECHO = {"handler": handler_so("echo"), "timeout": 5}
FAULT = {"handler": handler_so("fault"), "timeout": 1,
         "scalingConfig": {"maxInstances": 4, "maxQueueLength": 2}}
BROKEN = {"handler": handler_so("fault"), "environmentVariables": {"FAULT_INIT_FAIL": "weights.bin is missing"}}
SMALL = {"handler": handler_so("echo"), "maxRequestBodySize": 1000}

with Daemon({"echo": ECHO, "fault": FAULT, "small": SMALL},
            args=["--header-timeout", "500", "--max-connections", "200"]) as d:
    # keep-alive: several requests on one connection
    c = d.connect()
    rs = [d.request("POST", "/echo/ka", body=b"n%d" % i, conn=c) for i in range(5)]
    check([r.body for r in rs] == [b"n%d" % i for i in range(5)], "keep-alive: 5 requests on one connection")
    c.close()

    # pipelining: three requests in one write, answers in order
    pipe = b"".join(b"POST /echo/p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nb%d" % (i, i) for i in range(3))
    out = d.raw(pipe + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(out.count(b"HTTP/1.1 200 OK") == 4, "pipelining: 4 answers", out[:300])
    check(out.find(b"\r\n\r\nb0") < out.find(b"\r\n\r\nb1") < out.find(b"\r\n\r\nb2"), "pipelining: order kept")

    # chunked request body
    out = d.raw(b"POST /echo/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello world"), "chunked body de-chunked", out)
    out = d.raw(b"POST /echo/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400"), "malformed chunk size: 400", out)

    # 1 MiB round trip
    big = bytes(range(256)) * 4096
    r = d.request("POST", "/echo/big", body=big, headers={"Content-Type": "application/octet-stream"})
    check(r.status == 200 and r.body == big, "1 MiB body round trip", r.status)

    # request ids: accepted from the client, or made
    r = d.request("GET", "/echo/", headers={"x-fc-request-id": "abc-123"})
    check(r.header("x-fc-request-id") == "abc-123", "client request id echoed", r.headers)
    r = d.request("GET", "/echo/")
    check(len(r.header("x-fc-request-id") or "") > 8, "request id made when absent")

    # routes
    r = d.request("POST", "/invoke/echo", body=b"via invoke")
    check(r.status == 200 and r.body == b"via invoke" and r.header("x-echo-path") == "/", "/invoke/{fn} route", r)
    r = d.request("GET", "/nope/x")
    check(r.status == 404 and r.json().get("error", "").startswith("function not found"), "unknown function 404", r)
    out = d.raw(b"BLAH /echo HTTP/1.1\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 501") or out.startswith(b"HTTP/1.1 400"), "unknown method refused", out)
    out = d.raw(b"GET /echo HTTP/1.1 extra\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400"), "malformed request line 400", out)
    out = d.raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    check(out.startswith(b"HTTP/1.1 400"), "TLS hello on plain port: 400", out)
    out = d.raw(b"GET /echo/../admin HTTP/1.1\r\nHost: x\r\n\r\n", read_until_close=False)
    check(out.startswith(b"HTTP/1.1 400"), "dot segments refused", out)

    # limits
    out = d.raw(b"GET /echo/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 431"), "header too large: 431", out[:100])
    r = d.request("POST", "/small/", body=b"x" * 1001)
    check(r.status == 413, "body over the function's limit: 413", r)
    r = d.request("POST", "/small/", body=b"x" * 1000)
    check(r.status == 200, "body at the function's limit: 200", r)
    out = d.raw(b"POST /small/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                (b"100\r\n" + b"y" * 256 + b"\r\n") * 5 + b"0\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 413"), "chunked body over the limit: 413", out[:80])
    t0 = time.time()
    out = d.raw(b"GET /echo/ HTTP/1.1\r\nHost: x\r\n", timeout=5)
    check(out.startswith(b"HTTP/1.1 408") and time.time() - t0 < 3, "slow header: 408 after the header timeout", out)
    socks = []
    for i in range(205):
        try:
            socks.append(socket.create_connection(("127.0.0.1", d.port)))
        except OSError:
            break
    time.sleep(0.3)
    s = socks[-1]
    s.settimeout(2)
    try:
        got = s.recv(200)
    except OSError:
        got = b""
    check(got.startswith(b"HTTP/1.1 503"), "connection cap: 503 past it", got)
    for s in socks:
        s.close()
    time.sleep(0.3)
    check(d.request("GET", "/healthz").status == 200, "serving again after the cap")

    # deadline: 504, instance replaced, a parallel request on another instance unaffected
    before = d.metrics()
    res = {}

    def call(key, path):
        res[key] = d.request("GET", path, timeout=10)
    t_hang = threading.Thread(target=call, args=("hang", "/fault/hang"))
    t_hang.start()
    time.sleep(0.2)
    t_ok = threading.Thread(target=call, args=("ok", "/fault/sleep?ms=300"))
    t_ok.start()
    t_hang.join()
    t_ok.join()
    check(res["hang"].status == 504, "hanging handler: 504", res["hang"])
    check(res["ok"].status == 200, "parallel request on another instance: 200", res["ok"])
    r = d.request("GET", "/fault/id")
    check(r.status == 200, "function serves after the recycle", r)
    after = d.metrics()
    def starts(m):
        return sum(m.get('thaw_instance_starts_total{function="fault",kind="%s"}' % k, 0) for k in ("cold", "restore"))
    check(starts(after) >= starts(before) + 1, "a new instance replaced the recycled one")

    # X-Timeout header shortens the deadline
    t0 = time.time()
    r = d.request("GET", "/fault/sleep?ms=800", headers={"X-Timeout": "200ms"})
    check(r.status == 504 and time.time() - t0 < 0.7, "X-Timeout: 200ms gives 504 early", r)

    # crash: 502 for that request only
    r = d.request("GET", "/fault/crash")
    check(r.status == 502, "crashing handler: 502", r)
    r = d.request("GET", "/fault/id")
    check(r.status == 200, "next request served by a replacement", r)

    # queue bound: 429 with Retry-After when full
    out = parallel(lambda: d.request("GET", "/fault/sleep?ms=600", timeout=10), [()] * 10, stagger=0.01)
    codes = sorted(r.status if e is None else repr(e) for r, e in out)
    # 504: a queued request whose deadline passed while it waited
    check(all(e is None for r, e in out) and 429 in codes and 200 in codes and set(codes) <= {200, 429, 504},
          "queue full: 10 requests answered, some 429 beside 200s", codes)
    r429 = [r for r, e in out if e is None and r.status == 429]
    check(all(r.header("retry-after") for r in r429), "429 carries Retry-After")

    # metrics moved
    m = d.metrics()
    check(m.get('thaw_requests_total{function="echo",code="200"}', 0) >= 10, "requests_total counts echo 200s")
    check(m.get('thaw_requests_total{function="fault",code="504"}', 0) >= 2, "requests_total counts 504s")
    check(m.get('thaw_requests_total{function="fault",code="502"}', 0) >= 1, "requests_total counts 502s")
    check(m.get('thaw_request_duration_seconds_count{function="echo"}', 0) >= 10, "duration histogram counts")
    check(m.get('thaw_http_errors_total{code="431"}', 0) >= 1, "http_errors_total counts 431")
    check('thaw_instances{function="echo",state="idle"}' in m, "instances gauge present")
    check(m.get('thaw_init_duration_seconds_count{function="echo"}', 0) >= 1, "init duration observed")

# admin API: token required; adds a function from a folder
import json, os
from thawtest import write_function
with Daemon({"echo": ECHO}) as d:
    r = d.request("GET", "/admin/functions")
    check(r.status == 401, "admin without token: 401", r)
    r = d.request("GET", "/admin/functions", headers={"Authorization": "Bearer wrong"})
    check(r.status == 401, "admin with a wrong token: 401", r)
    tok_path = os.path.join(d.state_dir, "admin.token")
    check(oct(os.stat(tok_path).st_mode & 0o777) == "0o600", "token file readable by its owner only")
    auth = {"Authorization": "Bearer " + open(tok_path).read().strip()}
    tok = auth["Authorization"][7:]
    flip = lambda ch: "0" if ch != "0" else "1"
    # near misses (the token compared byte by byte, in constant time): each 401, on both headers
    for wrong in ("", tok[:-1], tok + "0", tok[:32], flip(tok[0]) + tok[1:], tok[:-1] + flip(tok[-1]),
                  tok.upper() if tok.upper() != tok else tok + "x", "x" * len(tok)):
        for h in ({"Authorization": "Bearer " + wrong}, {"X-Thaw-Token": wrong}):
            r = d.request("GET", "/admin/functions", headers=h)
            check(r.status == 401, "admin with a near-miss token (%s, %d bytes): 401" % (list(h)[0], len(wrong)), r)
    for h in ({"Authorization": "bearer " + tok}, {"X-Thaw-Token": tok}):
        r = d.request("GET", "/admin/functions", headers=h)
        check(r.status == 200, "the token itself on %s: 200" % list(h)[0], r)
    r = d.request("GET", "/admin/functions", headers=auth)
    check(r.status == 200 and [f["name"] for f in r.json()] == ["echo"], "admin lists functions", r)
    new_dir = write_function(d.tmp, "late", {"handler": handler_so("echo")})
    r = d.request("POST", "/admin/functions", body=json.dumps({"dir": new_dir}), headers=auth)
    check(r.status == 201 and r.json()["name"] == "late", "admin adds a function", r)
    for _ in range(100):
        if d.request("GET", "/readyz").status == 200:
            break
        time.sleep(0.05)
    r = d.request("POST", "/late/", body=b"added")
    check(r.status == 200 and r.body == b"added", "added function serves", r)
    bad = write_function(d.tmp, "bad", {"handler": handler_so("echo"), "timeout": "soon"})
    r = d.request("POST", "/admin/functions", body=json.dumps({"dir": bad}), headers=auth)
    check(r.status == 400 and "fc.yaml:" in r.json().get("error", "") and "timeout" in r.json()["error"],
          "bad fc.yaml: 400 naming file, line and field", r)

# an init failure makes the function unready, with the handler's message
with Daemon({"echo": ECHO, "broken": BROKEN}, wait_ready=False) as d:
    time.sleep(0.5)
    r = d.request("GET", "/readyz")
    check(r.status == 503, "readyz 503 with a failed function", r)
    check("weights.bin is missing" in r.json()["functions"]["broken"].get("error", ""), "readyz names the init error", r.body)
    r = d.request("GET", "/broken/")
    check(r.status == 503 and b"weights.bin is missing" in r.body, "failed function: 503 with the message", r)
    check("weights.bin is missing" in d.logs(), "init error in the daemon log")
    check(d.request("POST", "/echo/", body=b"x").status == 200, "other functions unaffected")

# memorySize enforced: the instance over it is stopped, its request alone fails
no_memcg = cgroup_works("memory")
LEAKY = {"handler": handler_so("fault"), "timeout": 10, "memorySize": 128,
         "scalingConfig": {"maxInstances": 2}}
with Daemon({"leaky": LEAKY}) as d:
    r = d.request("GET", "/leaky/leak?mb=400", timeout=20)
    if not no_memcg:  # the kernel kills the instance at its group's limit
        check(r.status == 502 and "out of memory" in r.json().get("error", ""),
              "allocating past memorySize (memory cgroup): 502 out of memory", r)
        check("out of memory (memorySize 128 MB)" in d.logs(), "clear log line for the OOM kill")
    elif not SANITIZED:  # RLIMIT_DATA: the allocation fails, the handler says so
        check(r.status == 507, "allocating past memorySize (RLIMIT_DATA, %s): 507" % no_memcg, r)
    else:
        skip_part("memorySize under ASan without a memory cgroup (no RLIMIT_DATA): " + no_memcg)
    r = d.request("GET", "/leaky/leak?mb=16")
    check(r.status == 200, "a request within the limit still succeeds", r)
    r = d.request("GET", "/leaky/crash")
    crash_says = "exited with status 1" if SANITIZED else "killed by signal Segmentation fault"
    check(r.status == 502 and crash_says in r.json().get("error", ""), "a crash names its signal", r)

def instance_cpu_groups(d, version):
    """The cpu cgroup folders of d's thaw-instance children."""
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            st = open("/proc/%s/stat" % p).read()
            if "(thaw-instance)" not in st or int(st.rsplit(")", 1)[1].split()[1]) != d.proc.pid:
                continue
            for line in open("/proc/%s/cgroup" % p):
                _, ctls, path = line.rstrip("\n").split(":", 2)
                if version == "2" and ctls == "":
                    out.append("/sys/fs/cgroup" + path)
                elif version == "1" and "cpu" in ctls.split(","):
                    out.append("/sys/fs/cgroup/cpu" + path)
        except OSError:
            continue
    return out


# cpu enforced: an instance of cpu 0.25 gets a quarter of a core (CFS quota)
SPIN = {"handler": handler_so("fault"), "timeout": 10, "cpu": 0.25,
        "scalingConfig": {"maxInstances": 1}}
no_cpucg = cgroup_works("cpu")
with Daemon({"spin": SPIN}) as d:
    m = re.search(r"cpu limits by cgroup v(\d): (\S+)", d.logs())
    if no_cpucg:
        skip_part("cpu quota: " + no_cpucg)
    elif not m:
        check(False, "a cpu cgroup works here: the daemon limits cpu by cgroup", d.logs()[-300:])
    else:
        quota_file = "cpu.max" if m.group(1) == "2" else "cpu.cfs_quota_us"
        check(d.request("GET", "/spin/spin?ms=10").status == 200, "spin answers")
        # the groups of the instance serving (criu workers wait in groups of
        # their own, unlimited until a restore makes them a copy's)
        quotas = []
        for _ in range(100):
            quotas = [open(g + "/" + quota_file).read().split() for g in instance_cpu_groups(d, m.group(1))]
            if quotas:
                break
            time.sleep(0.02)
        check(quotas and all(q[0] == "25000" for q in quotas), "cpu 0.25: a quota of 25 ms per 100 ms period",
              quotas)
        r = d.request("GET", "/spin/spin?ms=600")
        cpu_ms = r.json().get("cpu_ms", -1) if r.status == 200 else -1
        check(0 < cpu_ms < 300, "a 600 ms busy loop gets about 150 ms of CPU, not 600", r)

# httpTrigger.authType: function needs the token
with Daemon({"private": {"handler": handler_so("echo"), "httpTrigger": {"authType": "function"}}}) as d:
    r = d.request("POST", "/private/", body=b"x")
    check(r.status == 401, "authType function without a token: 401", r)
    tok = open(os.path.join(d.state_dir, "admin.token")).read().strip()
    r = d.request("POST", "/private/", body=b"x", headers={"Authorization": "Bearer " + tok})
    check(r.status == 200 and r.body == b"x", "authType function with the token: 200", r)

# SIGTERM drains: the request under way finishes, new connections are refused, exit 0
import signal
with Daemon({"fault": dict(FAULT, timeout=5)}) as d:
    res = {}
    t = threading.Thread(target=lambda: res.__setitem__("r", d.request("GET", "/fault/sleep?ms=800", timeout=10)))
    t.start()
    time.sleep(0.2)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        d.request("GET", "/healthz", timeout=1)
        refused = False
    except OSError:
        refused = True
    check(refused, "draining: new connections refused")
    t.join()
    check(res.get("r") is not None and res["r"].status == 200, "draining: the request under way finished", res)
    try:
        rc = d.proc.wait(5)
    except Exception:
        rc = None
    check(rc == 0, "daemon exited 0 after draining", rc)
    check("draining" in d.logs() and "drained" in d.logs(), "drain logged")

finish()
