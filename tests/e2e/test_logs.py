"""thaw logs and GET /admin/functions/NAME/logs: the lines an instance
writes land in STATE/logs/<name>.log ("TIME vV pid P: line"), --grep and
--tail select, the x-thaw-log-offset header lets a follower ask for new
lines only, --follow prints lines as they come, and the file rotates past
THAW_LOG_ROTATE_BYTES into <name>.log.1."""
import json
import os
import re
import signal
import subprocess
import time

from thawtest import THAW, Daemon, check, finish, handler_so, write_function, wait_for

FAULT = {"handler": handler_so("fault"), "timeout": 10}
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z v1 pid \d+: ")
ROTATE = 65536


def thaw(env, *args, timeout=30):
    p = subprocess.run([THAW] + list(args), env=env, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")



def jsonl(text):
    """Each line of text parsed as JSON; [] when one is not a JSON object."""
    try:
        docs = [json.loads(l) for l in text.splitlines()]
    except ValueError:
        return []
    return docs if all(isinstance(x, dict) for x in docs) else []


def read(path):
    """The file's text, "" while it does not exist (between a rotation's
    rename and the next line)."""
    try:
        with open(path, errors="replace") as f:  # the --json check writes a byte not UTF-8
            return f.read()
    except FileNotFoundError:
        return ""


with Daemon(env={"THAW_LOG_ROTATE_BYTES": str(ROTATE)}) as d:
    env = dict(os.environ, THAW_URL="http://127.0.0.1:%d" % d.port)
    env.pop("THAW_TOKEN", None)
    sd = ["--state-dir", d.state_dir]
    logfile = os.path.join(d.state_dir, "logs", "fault.log")
    rc, out, err = thaw(env, "deploy", write_function(d.tmp, "fault", FAULT), *sd, timeout=60)
    check(rc == 0, "deploy fault", (rc, out, err))

    # the init line, through the CLI
    ok = wait_for(lambda: "fault handler ready" in thaw(env, "logs", "fault", "--grep", "ready", *sd)[1])
    rc, out, err = thaw(env, "logs", "fault", "--grep", "ready", *sd)
    lines = out.splitlines()
    check(ok and rc == 0 and len(lines) >= 1 and all("fault handler ready, instance" in l for l in lines),
          "thaw logs --grep ready shows the init line", (rc, out, err))
    check(all(LINE.match(l) for l in lines), "lines read TIME vV pid P: line", lines)

    # --tail and grep over the admin API
    r = d.request("GET", "/fault/log?n=50")
    check(r.status == 200, "/log?n=50 answers", r)
    check(wait_for(lambda: "fault log line 50 of 50" in read(logfile)), "the lines reach the file")
    rc, out, err = thaw(env, "logs", "fault", "--grep", "of 50", "--tail", "5", *sd)
    want = ["fault log line %d of 50" % i for i in range(46, 51)]
    got = [l.rsplit(": ", 1)[-1] for l in out.splitlines()]
    check(rc == 0 and got == want, "--tail 5 gives the newest five matches in order", (rc, out, err))
    tok = {"Authorization": "Bearer " + open(os.path.join(d.state_dir, "admin.token")).read().strip()}
    r = d.request("GET", "/admin/functions/fault/logs?tail=3&grep=line+7+of", headers=tok)
    check(r.status == 200 and r.body.decode().count("\n") == 1 and "fault log line 7 of 50" in r.body.decode(),
          "the API's grep is a substring match, '+' a space", r)
    off = int(r.header("x-thaw-log-offset") or -1)
    check(off == os.path.getsize(logfile), "x-thaw-log-offset is the file's size", (off, os.path.getsize(logfile)))
    d.request("GET", "/fault/log?n=2")
    wait_for(lambda: os.path.getsize(logfile) > off)
    r = d.request("GET", "/admin/functions/fault/logs?tail=100&offset=%d" % off, headers=tok)
    check(r.status == 200 and [l.rsplit(": ", 1)[-1] for l in r.body.decode().splitlines()]
          == ["fault log line 1 of 2", "fault log line 2 of 2"], "offset= gives only the lines after it", r)
    r = d.request("GET", "/admin/functions/fault/logs?tail=0", headers=tok)
    check(r.status == 400, "tail=0 is a 400", r)
    # strict query values: no sign, no wrap past 2^64, no bad %-encoding, no grep past 255 bytes
    for q, why in (("offset=-1", "offset"), ("offset=99999999999999999999", "offset"),
                   ("offset=9223372036854775808", "offset"), ("offset=+5", "offset"),
                   ("offset=", "offset"), ("offset=%zz", "offset"), ("offset=1x", "offset"),
                   ("tail=-1", "tail"), ("tail=99999999999999999999", "tail"), ("tail=+5", "tail"),
                   ("tail=%205", "tail"), ("tail=10001", "tail"), ("tail=18446744073709551617", "tail"),
                   ("grep=%zz", "grep"), ("grep=%", "grep"), ("grep=line%4", "grep"), ("grep=%00", "grep"),
                   ("grep=%g1", "grep"), ("grep=" + "x" * 256, "at most 255 bytes"),
                   ("grep=" + "%41" * 256, "at most 255 bytes")):
        r = d.request("GET", "/admin/functions/fault/logs?" + q, headers=tok)
        check(r.status == 400 and why in r.json().get("error", ""), "logs?%s is a 400 (%s)" % (q[:40], why), r)
    r = d.request("GET", "/admin/functions/fault/logs?offset=9223372036854775807&tail=10000", headers=tok)
    check(r.status == 200, "the largest offset (2^63-1) is taken", r)
    r = d.request("GET", "/admin/functions/fault/logs?tail=10000&grep=" + "x" * 255, headers=tok)
    check(r.status == 200 and r.body == b"", "a grep of 255 bytes is used, not ignored: no line matches", r)
    r = d.request("GET", "/admin/functions/fault/logs?tail=3&grep=%6C%69ne+7+%6ff", headers=tok)
    check(r.status == 200 and r.body.decode().count("\n") == 1 and "fault log line 7 of 50" in r.body.decode(),
          "%XX in either case decodes", r)
    rc, out, err = thaw(env, "logs", "fault", "--grep", "x" * 256, *sd)
    check(rc == 2 and "at most 255 bytes" in err, "thaw logs --grep of 256 bytes: exit 2", (rc, out, err))
    rc, out, err = thaw(env, "logs", "fault", "--grep", "x" * 255, *sd)
    check(rc == 0 and out == "", "thaw logs --grep of 255 bytes: no line", (rc, out, err))
    for t in ("+5", " 5", "-1", "0", "10001", "99999999999999999999"):
        rc, out, err = thaw(env, "logs", "fault", "--tail", t, *sd)
        check(rc == 2, "thaw logs --tail '%s': exit 2" % t, (rc, out, err))
    r = d.request("GET", "/admin/functions/nope/logs", headers=tok)
    check(r.status == 404, "logs of an unknown function: 404", r)
    rc, out, err = thaw(env, "logs", "nope", *sd)
    check(rc == 1, "thaw logs of an unknown function exits 1", (rc, out, err))
    rc, out, err = thaw(env, "logs", *sd)
    check(rc == 2, "thaw logs without FN exits 2", (rc, out, err))

    # --follow prints new lines, ends on Ctrl-C with 0
    p = subprocess.Popen([THAW, "logs", "fault", "--follow", "--grep", "of 3"] + sd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.8)
    d.request("GET", "/fault/log?n=3")
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    got = [l.rsplit(": ", 1)[-1] for l in out.decode().splitlines()]
    check(p.returncode == 0 and got == ["fault log line %d of 3" % i for i in (1, 2, 3)],
          "--follow prints the new lines, Ctrl-C ends it with 0", (p.returncode, out, err))

    # --json: JSON Lines, every line parses, with the fields of "TIME vV pid P: line"
    rc, out, err = thaw(env, "logs", "fault", "--json", "--grep", "of 50", "--tail", "5", *sd)
    docs = jsonl(out)
    check(rc == 0 and [x.get("line", "").rsplit(": ", 1)[-1] for x in docs] == want,
          "logs --json: one object a line, the newest five matches", (rc, out, err))
    check(all(ISO_MS.fullmatch(x.get("time") or "") and x.get("version") == 1 and
              isinstance(x.get("pid"), int) and x["pid"] > 0 for x in docs),
          "logs --json has time, version and pid", docs)
    # lines as an instance may write them: quotes, backslashes, control bytes, bytes not UTF-8,
    # and a line without the usual head (written into the file here, as the daemon would)
    with open(logfile, "ab") as f:
        f.write(b'2026-01-02T03:04:05.678Z v7 pid 42: jsoncheck "q" \\ \t\x01 \xff caf\xc3\xa9\n')
        f.write(b"jsoncheck no head\n")
    rc, out, err = thaw(env, "logs", "fault", "--json", "--grep", "jsoncheck", *sd)
    docs = jsonl(out)
    check(rc == 0 and docs == [
        {"time": "2026-01-02T03:04:05.678Z", "version": 7, "pid": 42,
         "line": 'jsoncheck "q" \\ \t\x01 \ufffd caf\u00e9'},
        {"time": None, "version": None, "pid": None, "line": "jsoncheck no head"}],
        "logs --json escapes the text and keeps a line of another shape", (rc, out, docs))
    p = subprocess.Popen([THAW, "logs", "fault", "--follow", "--json", "--grep", "of 4"] + sd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.8)
    d.request("GET", "/fault/log?n=4")
    wait_for(lambda: read(logfile).count(" of 4\n") >= 4)
    time.sleep(1.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    docs = jsonl(out.decode())
    check(p.returncode == 0 and [x.get("line", "").rsplit(": ", 1)[-1] for x in docs]
          == ["fault log line %d of 4" % i for i in (1, 2, 3, 4)],
          "logs --follow --json prints the new lines as JSON Lines", (p.returncode, out, err))

    # rotation past THAW_LOG_ROTATE_BYTES (64 KiB here): ~90 bytes a line
    r = d.request("GET", "/fault/log?n=1500")
    check(r.status == 200, "/log?n=1500 answers", r)
    check(wait_for(lambda: os.path.exists(logfile + ".1")), "the log rotates into fault.log.1")
    check(wait_for(lambda: "fault log line 1500 of 1500" in read(logfile)), "the newest lines are in fault.log")
    check(os.path.getsize(logfile + ".1") >= ROTATE and os.path.getsize(logfile) < ROTATE,
          "fault.log.1 holds the full file, fault.log the rest",
          (os.path.getsize(logfile + ".1"), os.path.getsize(logfile)))
    rc, out, err = thaw(env, "logs", "fault", "--tail", "1", *sd)
    check(rc == 0 and out.strip().endswith("fault log line 1500 of 1500"), "thaw logs reads the new file", (rc, out))

    # reading across the rotation: the rotated file's lines first, in order
    rc, out, err = thaw(env, "logs", "fault", "--tail", "10000", *sd)
    nums = [int(n) for n in re.findall(r"fault log line (\d+) of 1500", out)]
    first_old = re.search(r"fault log line (\d+) of 1500", read(logfile + ".1"))
    check(rc == 0 and nums and nums == list(range(nums[0], 1501)) and first_old and nums[0] <= int(first_old.group(1)),
          "--tail spanning fault.log.1 and fault.log gives every line once, oldest first",
          (nums[:3], nums[-3:], len(nums)))

    # a follower's offset from before a rotation: nothing lost, nothing twice
    auth = {"Authorization": "Bearer " + open(os.path.join(d.state_dir, "admin.token")).read().strip()}
    r = d.request("GET", "/admin/functions/fault/logs?tail=1", None, auth)
    offset = int(r.header("x-thaw-log-offset") or 0)
    old_ino = os.stat(logfile + ".1").st_ino
    batches = 0
    while batches < 40 and os.stat(logfile + ".1").st_ino == old_ino:
        d.request("GET", "/fault/log?n=100")
        batches += 1
        wait_for(lambda: read(logfile).count("of 100\n") + read(logfile + ".1").count("of 100\n") >= 100 * batches, 5)
    r = d.request("GET", "/admin/functions/fault/logs?tail=10000&offset=%d" % offset, None, auth)
    nums = [int(n) for n in re.findall(r"fault log line (\d+) of 100\n", r.body.decode())]
    check(os.stat(logfile + ".1").st_ino != old_ino and nums == list(range(1, 101)) * batches,
          "after a rotation, reading from the old offset gives the %d new lines exactly once" % (100 * batches),
          (batches, len(nums), nums[:3]))

finish()
