"""CLI promises of docs/cli.md with no test before (issue 19, item 9):
--url over $THAW_URL, `invoke --timeout` (a deadline the function sees),
`deploy --timeout` expiring (exit 1, the version still starting), and exit 3
for a daemon that is unreachable: nothing listening, or a connection reset."""
import os
import socket
import struct
import subprocess
import threading
import time

from thawtest import THAW, Daemon, check, finish, free_port, handler_so, write_function

FAULT = {"handler": handler_so("fault"), "timeout": 10}


def thaw(env, *args, timeout=60):
    t0 = time.time()
    p = subprocess.run([THAW] + list(args), env=env, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), time.time() - t0


def resetting_server():
    """A loopback port whose every connection is reset (RST) once the
    request arrives."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            try:
                c.recv(4096)
            except OSError:
                pass
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv


with Daemon({"fault": FAULT}) as d:
    url = "http://127.0.0.1:%d" % d.port
    sd = ["--state-dir", d.state_dir]
    dead = "http://127.0.0.1:%d" % free_port()
    env = dict(os.environ, THAW_URL=dead)
    env.pop("THAW_TOKEN", None)

    # --url wins over $THAW_URL (which points at nothing)
    rc, out, err, _ = thaw(env, "invoke", "fault", "--url", url, "--path", "/id")
    check(rc == 0 and "instance_id" in out, "invoke --url reaches the daemon $THAW_URL does not", (rc, out, err))
    rc, out, err, _ = thaw(env, "ls", "--url", url, *sd)
    check(rc == 0 and "fault" in out, "ls --url too", (rc, out, err))

    # exit 3: nothing listening at the URL
    rc, out, err, _ = thaw(env, "invoke", "fault", "--path", "/id")
    check(rc == 3 and err.startswith("thaw invoke: "), "nothing listening: exit 3 with a message", (rc, out, err))
    rc, out, err, _ = thaw(env, "ls", *sd)
    check(rc == 3, "ls, nothing listening: exit 3", (rc, out, err))

    # exit 3: the connection is reset
    srv = resetting_server()
    reset = "http://127.0.0.1:%d" % srv.getsockname()[1]
    rc, out, err, took = thaw(env, "invoke", "fault", "--url", reset, "--path", "/id")
    check(rc == 3 and took < 10, "a reset connection: exit 3 (%.1f s)" % took, (rc, out, err))
    rc, out, err, _ = thaw(env, "ls", "--url", reset, *sd)
    check(rc == 3, "ls, a reset connection: exit 3", (rc, out, err))
    srv.close()

    # invoke --timeout 1 on a 4 s request: the function's deadline is 1 s
    env_ok = dict(env, THAW_URL=url)
    rc, out, err, took = thaw(env_ok, "invoke", "fault", "--path", "/sleep?ms=4000", "--timeout", "1")
    check(rc == 1 and "504" in err and took < 3.5, "invoke --timeout 1 on a 4 s request: 504, exit 1 in %.1f s" % took,
          (rc, out, err))
    rc, out, err, took = thaw(env_ok, "invoke", "fault", "--path", "/sleep?ms=200", "--timeout", "3")
    check(rc == 0 and took < 3, "invoke --timeout 3 on a 0.2 s request: answered", (rc, out, err))

    # deploy --timeout 1 of a function whose init takes 8 s: exit 1, still starting
    slow = write_function(os.path.join(d.tmp, "slow"), "slowinit",
                          dict(FAULT, environmentVariables={"FAULT_INIT_SLEEP_MS": "8000"}))
    rc, out, err, took = thaw(env_ok, "deploy", slow, "--timeout", "1", *sd, timeout=120)
    check(rc == 1 and took < 6, "deploy --timeout 1 on an 8 s init: exit 1 after %.1f s" % took, (rc, out, err))
    rc, out, err, _ = thaw(env_ok, "history", "slowinit", *sd)
    check(rc == 0 and "starting" in out, "the version is still starting (thaw history)", (rc, out, err))

finish()
