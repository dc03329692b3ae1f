"""thaw dev: a function folder served as a plain HTTP debug server
(thaw-instance --http), reached directly and through the daemon's
/proxy/{port}/, rebuilt and restarted on change, the old server kept on a
compile error, bounded against bad requests, stopped cleanly by SIGTERM."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from thawtest import THAW, Daemon, SANITIZED, check, finish, free_port, handler_so, wait_for

# under ASan the host starts slower; every wait below is bounded by these
START_S = 60 if SANITIZED else 30
CHANGE_S = 40 if SANITIZED else 20

HANDLER = r"""
#include <thaw/handler.h>
#include <stdio.h>
#include <string.h>

static int init(void)
{
	if (thaw_config("FAIL_INIT")) {
		thaw_set_error("init refused: FAIL_INIT is set");
		return -22;
	}
	return 0;
}

static int invoke(const struct thaw_request *req, struct thaw_response *res)
{
	char out[1024];
	const char *who = thaw_request_header(req, "x-who");
	int n = snprintf(out, sizeof(out),
			 "{\"version\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"query\":\"%s\","
			 "\"who\":\"%s\",\"body_len\":%zu,\"greeting\":\"%s\",\"name\":\"%s\","
			 "\"has_deadline\":%s}",
			 "VERSION", req->method, req->path, req->query, who ? who : "",
			 req->body_len, thaw_config("GREETING") ? thaw_config("GREETING") : "",
			 thaw_function_name(), thaw_time_left_ms(req) > 0 ? "true" : "false");
	thaw_response_header(res, "x-handler", "dev");
	return thaw_respond(res, 200, "application/json", out, (size_t)n);
}

THAW_HANDLER(.name = "devfn", .init = init, .invoke = invoke);
"""

tmp = tempfile.mkdtemp(prefix="thaw-dev-")
fn_dir = os.path.join(tmp, "devfn")
os.makedirs(fn_dir)


def write_handler(version, broken=None):
    src = HANDLER.replace("VERSION", version)
    if broken == "syntax":
        src = src.replace("char out[1024];", "char out[1024] = } oops {;")
    elif broken == "undefined":  # compiles (implicit declaration), fails to load
        src = src.replace("return thaw_respond(", "return thaw_respond_nope(")
    with open(os.path.join(fn_dir, "handler.c"), "w") as f:
        f.write(src)


write_handler("v1")
with open(os.path.join(fn_dir, "fc.yaml"), "w") as f:
    f.write("name: devfn\nhandler: handler.c\ntimeout: 5\nmaxRequestBodySize: 4096\n"
            "environmentVariables:\n  GREETING: hello\n")

port = free_port()
log_path = os.path.join(tmp, "dev.log")
log = open(log_path, "wb")
dev = subprocess.Popen([THAW, "dev", fn_dir, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                       start_new_session=True)


def dev_log():
    with open(log_path, "rb") as f:
        return f.read().decode(errors="replace")


def get(path="/", method="GET", body=None, headers=None, timeout=5, p=None):
    c = http.client.HTTPConnection("127.0.0.1", p or port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def version_now():
    try:
        st, _, body = get("/")
        if st == 200:
            return json.loads(body)["version"]
    except (OSError, ValueError, KeyError):
        pass
    return None



def raw(data, timeout=5):
    """Sends data on a new connection; returns what came back up to the end
    of the answer's head."""
    out = b""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    finally:
        s.close()
    return out


def server_pids():
    return [int(p) for p in re.findall(r"\(pid (\d+),", dev_log())]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not a server: look at its state
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


try:
    check(wait_for(lambda: version_now() == "v1", START_S), "dev builds and serves the handler", dev_log()[-2000:])
    # dev notices the server listens a moment after a client can: wait for its line
    said = wait_for(lambda: "--proxy-ports %d" % port in dev_log(), 5)
    check(said and "/proxy/%d/" % port in dev_log() and "http://127.0.0.1:%d/" % port in dev_log(),
          "dev prints the URL and how to reach it through the daemon", dev_log()[-800:])

    # --- directly ---------------------------------------------------------
    st, hs, body = get("/a/b?x=1&y=2", method="POST", body=b"12345", headers={"X-Who": "me"})
    seen = json.loads(body) if st == 200 else {}
    check(st == 200 and seen.get("path") == "/a/b" and seen.get("query") == "x=1&y=2",
          "path and query reach the handler", body)
    check(seen.get("method") == "POST" and seen.get("body_len") == 5 and seen.get("who") == "me",
          "method, body and headers reach the handler", seen)
    check(seen.get("greeting") == "hello" and seen.get("name") == "devfn",
          "environmentVariables and the function name reach the handler", seen)
    check(seen.get("has_deadline") is True, "the request carries a deadline", seen)
    check(hs.get("x-handler") == "dev" and hs.get("content-type") == "application/json"
          and hs.get("content-length") == str(len(body)) and hs.get("x-fc-request-id"),
          "the handler's headers come back with content-length and a request id", hs)

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    statuses = []
    for i in range(3):
        c.request("GET", "/k%d" % i)
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
    c.close()
    check(statuses == [200, 200, 200], "three requests on one keep-alive connection", statuses)

    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.time()
    st, _, _ = get("/while-another-idles", timeout=5)
    check(st == 200 and time.time() - t0 < 3, "an idle connection gives way to a new client", st)
    idle.close()

    # --- limits: 4xx, and the server lives on ------------------------------
    st, _, body = get("/big", method="POST", body=b"x" * 5000)
    check(st == 413, "a body past maxRequestBodySize: 413", (st, body))
    out = raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 431"), "9 KB of headers: 431", out[:80])
    out = raw(b"BLAH / HTTP/1.1\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400"), "a malformed request line: 400", out[:80])
    out = raw(b"GET http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400"), "an absolute-form target: 400", out[:80])
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")  # short body, then gone
    s.close()
    check(version_now() == "v1", "the server still answers after the bad requests")

    # --- through the daemon's /proxy/{port}/ -------------------------------
    other = free_port()
    with Daemon({"echo": {"handler": handler_so("echo")}}, args=["--proxy-ports", str(port)]) as d:
        token = open(os.path.join(d.state_dir, "admin.token")).read().strip()
        r = d.request("GET", "/proxy/%d/via?q=1" % port, headers={"X-Thaw-Token": token})
        seen = json.loads(r.body) if r.status == 200 else {}
        check(r.status == 200 and seen.get("path") == "/via" and seen.get("query") == "q=1",
              "through /proxy/{port}/ with the token", r)
        r = d.request("POST", "/proxy/%d/p" % port, body=b"abc", headers={"Authorization": "Bearer " + token})
        check(r.status == 200 and json.loads(r.body).get("body_len") == 3, "POST through the proxy (Bearer)", r)
        r = d.request("GET", "/proxy/%d/via" % port)
        check(r.status == 401, "through the proxy without the token: 401", r)
        r = d.request("GET", "/proxy/%d/via" % other, headers={"X-Thaw-Token": token})
        check(r.status == 403, "a port not in --proxy-ports: 403", r)

    # --- edit: rebuilt and restarted ---------------------------------------
    pids_before = server_pids()
    t0 = time.time()
    write_handler("v2")
    got = wait_for(lambda: version_now() == "v2", CHANGE_S)
    check(got, "an edit is served within %d s (%.1f s)" % (CHANGE_S, time.time() - t0), dev_log()[-2000:])
    check(wait_for(lambda: "restarted" in dev_log(), 5), "dev says it rebuilt and restarted", dev_log()[-800:])
    check(pids_before and not alive(pids_before[0]), "the old server is gone after the restart", pids_before)

    # --- compile error: the old server keeps answering ----------------------
    write_handler("v3", broken="syntax")
    said = wait_for(lambda: "keeps running" in dev_log(), CHANGE_S)
    out = dev_log()
    check(said, "a compile error is reported", out[-2000:])
    check("oops" in out and "error" in out, "the compiler's output is printed", out[-2000:])
    check(version_now() == "v2", "the old version still answers after a compile error")

    # --- a build that compiles but does not load: back to the previous one ---
    write_handler("v3", broken="undefined")
    said = wait_for(lambda: "serving the previous one again" in dev_log(), CHANGE_S)
    check(said, "a version that fails to start is reported", dev_log()[-2000:])
    check(wait_for(lambda: version_now() == "v2", START_S), "the previous version serves again")

    write_handler("v4")
    check(wait_for(lambda: version_now() == "v4", CHANGE_S), "fixed: the next version is served", dev_log()[-2000:])

    # --- a dotfile or .thaw/ change does not rebuild ------------------------
    # (each rebuild says "change seen" before it builds, so before v4 served)
    n_builds = dev_log().count("change seen")
    with open(os.path.join(fn_dir, ".notes"), "w") as f:
        f.write("x")
    os.makedirs(os.path.join(fn_dir, ".thaw", "scratch"), exist_ok=True)
    with open(os.path.join(fn_dir, ".thaw", "scratch", "x.c"), "w") as f:
        f.write("x")
    time.sleep(1)
    check(dev_log().count("change seen") == n_builds, "a dotfile or .thaw/ change does not rebuild",
          dev_log()[-600:])

    # --- a new source folder is watched too ---------------------------------
    os.makedirs(os.path.join(fn_dir, "lib", "deep"))
    time.sleep(0.5)  # the new folder's watch is added when its creation is seen
    with open(os.path.join(fn_dir, "lib", "deep", "notes.txt"), "w") as f:
        f.write("x")
    check(wait_for(lambda: dev_log().count("change seen") >= n_builds + 2, CHANGE_S),
          "a change in a new sub-folder rebuilds", dev_log()[-600:])
    check(wait_for(lambda: version_now() == "v4", START_S), "still serving after the rebuilds")

    # --- SIGTERM: dev and its server stop, exit 0 ---------------------------
    pids = server_pids()
    dev.send_signal(signal.SIGTERM)
    try:
        rc = dev.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, "SIGTERM: thaw dev exits 0", rc)
    check(pids and wait_for(lambda: not any(alive(p) for p in pids), 5), "no server process left", pids)
    check(version_now() is None, "nothing listens on the port any more")
finally:
    if dev.poll() is None:
        os.killpg(dev.pid, signal.SIGKILL)
        dev.wait()
    log.close()

# --- start failures and usage -----------------------------------------------
bad = os.path.join(tmp, "bad")
os.makedirs(bad)
shutil.copy(os.path.join(fn_dir, "fc.yaml"), bad)
with open(os.path.join(bad, "fc.yaml"), "a") as f:
    f.write("  FAIL_INIT: '1'\n")
with open(os.path.join(bad, "handler.c"), "w") as f:
    f.write(HANDLER.replace("VERSION", "bad"))
r = subprocess.run([THAW, "dev", bad, "--port", str(free_port()), "--once"], capture_output=True, timeout=START_S)
out = (r.stdout + r.stderr).decode(errors="replace")
check(r.returncode == 1 and "init refused: FAIL_INIT is set" in out, "init failure at start: the error, exit 1",
      (r.returncode, out[-600:]))

with open(os.path.join(bad, "handler.c"), "w") as f:
    f.write("this is not C\n")
r = subprocess.run([THAW, "dev", bad, "--port", str(free_port()), "--once"], capture_output=True, timeout=START_S)
check(r.returncode == 1 and b"error" in r.stderr, "compile error at start: exit 1",
      (r.returncode, r.stderr[-400:]))

r = subprocess.run([THAW, "dev", os.path.join(tmp, "nope")], capture_output=True, timeout=10)
check(r.returncode == 2, "a folder without fc.yaml: exit 2", (r.returncode, r.stderr))
r = subprocess.run([THAW, "dev", fn_dir, "--host", "0.0.0.0"], capture_output=True, timeout=10)
check(r.returncode == 2 and b"loopback" in r.stderr, "--host not loopback: exit 2", (r.returncode, r.stderr))
r = subprocess.run([THAW, "dev", "--help"], capture_output=True, timeout=10)
check(r.returncode == 0 and b"usage: thaw dev" in r.stdout, "--help", r.returncode)
inst = os.path.join(os.path.dirname(THAW), "thaw-instance")
r = subprocess.run([inst, "--http", "0.0.0.0:%d" % free_port(), handler_so("echo")], capture_output=True, timeout=10)
check(r.returncode == 2 and b"loopback" in r.stderr, "thaw-instance --http refuses a non-loopback address",
      (r.returncode, r.stderr))

shutil.rmtree(tmp, ignore_errors=True)
finish()
