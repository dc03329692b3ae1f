"""The client commands of `thaw` against a real daemon: deploy (plain,
--json, on a terminal, a broken version), invoke, ls, history, rollback,
top, and the exit codes scripts rely on: 0 ok, 1 failed, 2 usage,
3 daemon unreachable, 4 unauthorized."""
import json
import os
import pty
import re
import shutil
import tempfile
import subprocess
import time

from thawtest import THAW, Daemon, check, criu_works, finish, free_port, handler_so, skip_part, write_function

ECHO = {"handler": handler_so("echo"), "timeout": 5}
BROKEN = {"handler": handler_so("fault"), "environmentVariables": {"FAULT_INIT_FAIL": "bad weights"}}
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def base_env(url):
    env = dict(os.environ, THAW_URL=url)
    env.pop("THAW_TOKEN", None)
    return env


def thaw(env, *args, cwd=None, timeout=60, stdin=None):
    """Runs build/thaw ARGS; returns (rc, stdout, stderr) as text."""
    p = subprocess.run([THAW] + list(args), env=env, cwd=cwd, capture_output=True,
                       timeout=timeout, input=stdin)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def thaw_tty(env, *args, timeout=60):
    """Runs build/thaw ARGS with stdout on a pseudo-terminal; returns (rc, output)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([THAW] + list(args), env=env, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    end = time.time() + timeout
    while time.time() < end:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout), out.decode(errors="replace")


with Daemon() as d:
    url = "http://127.0.0.1:%d" % d.port
    env = base_env(url)
    sd = ["--state-dir", d.state_dir]

    # deploy: a plain run (not a terminal) prints lines, the URL and the times
    v1 = write_function(os.path.join(d.tmp, "v1"), "svc", ECHO)
    rc, out, err = thaw(env, "deploy", v1, *sd)
    check(rc == 0, "deploy exits 0 once the version serves", (rc, out, err))
    check("svc version 1 serves" in out and url + "/svc/" in out, "deploy prints the invoke URL", out)
    check("cold start" in out and "\r" not in out, "deploy prints the cold start, plain lines off a terminal", out)
    check(re.search(r"^built svc sha256:[0-9a-f]{64}", out, re.M) and re.search(r"code layer .* uploaded in", out),
          "deploy builds the image and uploads its layers", out)

    # deploy from the function's folder (DIR defaults to "."), --json
    rc, out, err = thaw(env, "deploy", "--json", *sd, cwd=v1)
    doc = json.loads(out) if rc == 0 else {}
    check(rc == 0 and doc.get("version") == 2 and doc.get("state") == "ready" and doc.get("serving"),
          "deploy --json from the folder: version 2 ready and serving", (rc, out, err))
    check(doc.get("url") == url + "/svc/" and doc.get("init_ms", 0) > 0,
          "deploy --json has the URL and init_ms", doc)
    check(all(k in doc for k in ("snapshot_bytes", "restore_ms", "dump_ms")), "deploy --json has the snapshot fields", doc)
    if criu_works():
        skip_part("deploy --json snapshot figures non-zero: " + criu_works())
    else:  # where snapshots work they were taken and timed: no zeros
        check(all(doc.get(k, 0) > 0 for k in ("snapshot_bytes", "restore_ms", "dump_ms")),
              "CRIU works: snapshot_bytes, restore_ms, dump_ms all > 0", doc)
    check(re.fullmatch(r"sha256:[0-9a-f]{64}", doc.get("digest", "")) and doc.get("uploaded_bytes") == 0,
          "the same folder again: same image, nothing uploaded", doc)
    digest_v2 = doc.get("digest", "")

    # on a terminal: one progress line rewritten with \r
    rc, out = thaw_tty(env, "deploy", v1, *sd)
    check(rc == 0 and "\r\033[K" in out and "svc version 3 serves" in out,
          "deploy on a terminal shows a progress line, then the result", (rc, out))

    # invoke
    rc, out, err = thaw(env, "invoke", "svc", "-d", "hello")
    check(rc == 0 and out == "hello", "invoke -d prints the body", (rc, out, err))
    data = os.path.join(d.tmp, "req.bin")
    with open(data, "wb") as f:
        f.write(b"from a file\n")
    rc, out, err = thaw(env, "invoke", "svc", "-d", "@" + data)
    check(rc == 0 and out == "from a file\n", "invoke -d @FILE sends the file", (rc, out, err))
    rc, out, err = thaw(env, "invoke", "svc", "-d", "@-", stdin=b"from stdin")
    check(rc == 0 and out == "from stdin", "invoke -d @- sends standard input", (rc, out, err))
    rc, out, err = thaw(env, "invoke", "svc", "-X", "PUT", "--path", "/json", "-H", "X-Thing: 42", "-d", "b")
    doc = json.loads(out) if rc == 0 else {}
    check(doc.get("method") == "PUT" and doc.get("path") == "/json" and
          doc.get("headers", {}).get("x-thing") == "42" and doc.get("body") == "b",
          "invoke -X, --path and -H reach the handler", (rc, out, err))
    rc, out, err = thaw(env, "invoke", "nosuch")
    check(rc == 1 and "404" in err and "not found" in out, "invoke of a missing function: exit 1, status on stderr", (rc, out, err))

    # ls
    rc, out, err = thaw(env, "ls", "--json", *sd)
    fns = json.loads(out) if rc == 0 else []
    check(rc == 0 and len(fns) == 1 and fns[0]["name"] == "svc" and fns[0]["current"] == 3 and
          len(fns[0]["versions"]) == 3, "ls --json lists svc, version 3 serving", (rc, out, err))
    rc, out, err = thaw(env, "ls", *sd)
    check(rc == 0 and re.search(r"^svc\s+3\s+ready\s+3\s", out, re.M), "ls prints a table row", out)

    # a broken deploy: exit 1 with the error; the previous version keeps serving
    bad = write_function(os.path.join(d.tmp, "bad"), "svc", BROKEN)
    rc, out, err = thaw(env, "deploy", bad, *sd)
    check(rc == 1 and "bad weights" in err and "version 3 keeps serving" in err,
          "a broken deploy exits 1, says why and that version 3 keeps serving", (rc, out, err))
    rc, out, err = thaw(env, "invoke", "svc", "-d", "still")
    check(rc == 0 and out == "still", "the previous version still serves", (rc, out, err))
    rc, out, err = thaw(env, "deploy", "--json", bad, *sd)
    doc = json.loads(out) if out.strip() else {}
    check(rc == 1 and doc.get("state") == "failed" and doc.get("current") == 3 and "bad weights" in doc.get("error", ""),
          "a broken deploy with --json: state failed, error, current", (rc, out, err))

    # history
    rc, out, err = thaw(env, "history", "svc", *sd)
    check(rc == 0 and len(ISO.findall(out)) == 5 and "failed" in out and digest_v2[:19] in out,
          "history lists 5 versions with ISO times, states and image digests", (rc, out, err))
    check('environmentVariables.FAULT_INIT_FAIL: (unset) -> "bad weights"' in out and
          re.search(r"code layer: sha256:[0-9a-f]{12} -> sha256:[0-9a-f]{12}", out),
          "history says what changed: the setting and the code layer", out)
    check(re.search(r"^\* 3\s+ready", out, re.M) and "init failed: bad weights" in out,
          "history marks the serving version and shows the error", out)
    rc, out, err = thaw(env, "history", "svc", "--json", *sd)
    check(rc == 0 and len(json.loads(out)["versions"]) == 5, "history --json", (rc, out, err))
    rc, out, err = thaw(env, "history", "nosuch", *sd)
    check(rc == 1 and "not found" in err, "history of a missing function: exit 1", (rc, out, err))

    # rollback
    rc, out, err = thaw(env, "rollback", "svc", "1", *sd)
    check(rc == 0 and "version 1 serves" in out, "rollback svc 1", (rc, out, err))
    rc, out, err = thaw(env, "ls", "--json", *sd)
    check(rc == 0 and json.loads(out)[0]["current"] == 1, "ls shows version 1 serving after rollback", out)
    rc, out, err = thaw(env, "rollback", "svc", "4", *sd)
    check(rc == 1 and "409" in err, "rollback to a failed version: exit 1", (rc, out, err))
    rc, out, err = thaw(env, "rollback", "svc", *sd)
    check(rc == 1 and "404" in err and "svc has no ready version older than version 1" in err,
          "rollback with no older ready version: exit 1, naming the version serving", (rc, out, err))
    rc, out, err = thaw(env, "rollback", "svc", "100", *sd)
    check(rc == 1 and "404" in err and "svc has no version 100" in err,
          "rollback to a version that does not exist: 404, exit 1", (rc, out, err))
    rc, out, err = thaw(env, "rollback", "svc", "3", "--json", *sd)
    check(rc == 0 and json.loads(out)["current"] == 3, "rollback --json back to 3", (rc, out, err))

    # top: one frame, with requests made during its interval
    top = subprocess.Popen([THAW, "top", "--once", "--json"] + sd, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent = 0
    while top.poll() is None and sent < 100000:  # requests all through its interval
        d.request("POST", "/svc/", b"x")
        sent += 1
    out, err = top.communicate(timeout=30)
    frame = json.loads(out) if top.returncode == 0 else {}
    row = (frame.get("functions") or [{}])[0]
    check(top.returncode == 0 and row.get("name") == "svc" and row.get("current") == 3,
          "top --once --json: one frame with svc", (top.returncode, out, err))
    check(row.get("rps", 0) > 0 and row.get("p50_ms") is not None and row.get("requests_total", 0) >= 1,
          "top computes requests/s and p50 over its interval", row)
    check(sum(row.get("instances", {}).values()) >= 1, "top counts instances by state", row)
    rc, out, err = thaw(env, "top", "--once", *sd)
    check(rc == 0 and "REQ/S" in out and re.search(r"^svc\s+3\s+ready", out, re.M), "top --once prints a table", (rc, out, err))
    t0 = time.time()
    rc, out, err = thaw(env, "top", "--seconds", "2", *sd, stdin=b"")
    check(rc == 0 and out.count("REQ/S") >= 1 and time.time() - t0 < 10, "top --seconds N ends by itself", (rc, out, err))

    # tokens: $THAW_TOKEN, a wrong one, none
    token = open(os.path.join(d.state_dir, "admin.token")).read().strip()
    rc, out, err = thaw(dict(env, THAW_TOKEN=token), "ls")
    check(rc == 0 and "svc" in out, "$THAW_TOKEN is used", (rc, out, err))
    rc, out, err = thaw(dict(env, THAW_TOKEN="wrong"), "ls")
    check(rc == 4 and "unauthorized" in err, "a wrong token: exit 4", (rc, out, err))
    rc, out, err = thaw(dict(env, THAW_TOKEN="wrong"), "deploy", v1)
    check(rc == 4, "deploy with a wrong token: exit 4", (rc, out, err))
    rc, out, err = thaw(env, "ls", "--state-dir", os.path.join(d.tmp, "nostate"))
    check(rc == 4 and "admin.token" in err, "no token file: exit 4, naming the file", (rc, out, err))

    # usage
    for args in (["invoke"], ["invoke", "svc", "--bogus"], ["deploy", "--timeout", "x"],
                 ["deploy", os.path.join(d.tmp, "missing")], ["rollback", "svc", "x"],
                 ["rollback", "svc", "0"], ["rollback", "svc", "1.9"], ["rollback", "svc", "-1"],
                 ["rollback", "svc", "+1"], ["rollback", "svc", " 1"], ["rollback", "svc", "4294967296"],
                 ["rollback", "svc", "99999999999999999999"],
                 ["history"], ["ls", "extra"], ["top", "--seconds", "0"], ["invoke", "bad/name"]):
        rc, out, err = thaw(env, *args, *sd)
        check(rc == 2, "usage error: thaw %s: exit 2" % " ".join(args), (rc, out, err))
    for cmd in ("deploy", "ls", "invoke", "history", "rollback", "top"):
        rc, out, err = thaw(env, cmd, "--help")
        check(rc == 0 and out.startswith("usage: thaw " + cmd), "thaw %s --help" % cmd, (rc, out, err))
    nofc = os.path.join(d.tmp, "nofc")
    os.makedirs(nofc)
    rc, out, err = thaw(env, "deploy", nofc, *sd)
    check(rc == 1 and "fc.yaml" in err, "deploy of a folder without fc.yaml: the daemon's error, exit 1", (rc, out, err))

    # history of a folder deploy ("image": null): IMAGE reads "folder PATH"
    fold = write_function(os.path.join(d.tmp, "fold"), "fold", ECHO)
    r = d.request("POST", "/admin/functions", body=json.dumps({"dir": fold}),
                  headers={"Authorization": "Bearer " + token})
    check(r.status == 201, "folder deploy over the admin API", r)
    end = time.time() + 30  # ready (snapshot taken) before the daemon stops
    while time.time() < end and d.request("GET", "/admin/functions/fold", headers={
            "Authorization": "Bearer " + token}).json().get("state") != "ready":
        time.sleep(0.1)
    rc, out, err = thaw(env, "history", "fold", *sd)
    row = re.search(r"^[ *] 1\s+\S+\s+%s.*$" % ISO.pattern, out, re.M)
    check(rc == 0 and row and row.group(0).rstrip().endswith("folder " + fold),
          "history shows a folder deploy as 'folder PATH'", (rc, out, err))

# daemon down: a port nothing listens on
down = base_env("http://127.0.0.1:%d" % free_port())
down["THAW_TOKEN"] = "any"
fn_dir = write_function(os.path.join(tempfile.mkdtemp(prefix="thaw-cli-"), "fn"), "svc", ECHO)
for args in (["ls"], ["invoke", "svc"], ["deploy", fn_dir], ["top", "--once"], ["rollback", "svc"]):
    rc, out, err = thaw(down, *args)
    check(rc == 3 and "unreachable" in err, "daemon down: thaw %s: exit 3" % args[0], (rc, out, err))
shutil.rmtree(os.path.dirname(fn_dir))
finish()
