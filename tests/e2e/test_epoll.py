"""The epoll loop (issue 20, item 2): where io_uring is refused, as container
runtimes' default seccomp profiles refuse it, thaw serve says so in one line
and serves on epoll. io_uring is refused for real: tests/tools/no_io_uring
installs a seccomp filter that fails io_uring_setup, io_uring_enter and
io_uring_register with EPERM (or ENOSYS) and execs thaw serve. Then the
core, proxy and cancel e2e tests run that way (THAW_TEST_LOOP=epoll: each
of their daemons starts under the filter and must log the fallback).
Then test_core on io_uring without provided buffer rings (THAW_BUF_RING=0),
the recv path of kernels before 5.19."""
import os
import re
import subprocess
import sys

from thawtest import (EPOLL_FALLBACK_LINE, EPOLL_LINE, NO_IO_URING, THAW, Daemon, check, finish,
                      handler_so, need_built)

ECHO = {"handler": handler_so("echo"), "timeout": 5}
HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = ["test_core.py", "test_proxy.py", "test_cancel.py"]


def backend(d):
    m = d.metrics()
    return [k for k, v in m.items() if k.startswith("thaw_loop_backend") and v == 1]


def refused(errno_name, wrap, line):
    d = Daemon({"echo": ECHO}, threads=2)
    d.wrap = wrap
    with d:
        log = d.logs()
        check(log.count(line) == 1 and log.count(EPOLL_LINE) == 1,
              "io_uring refused (%s): one line says so and that the loops run on epoll" % errno_name,
              [l for l in log.splitlines() if "loop" in l][:4])
        check("io_uring_queue_init" not in log, "no io_uring error line besides (%s)" % errno_name)
        r = d.request("POST", "/echo/x", body=b"on epoll")
        check(r.status == 200 and r.body == b"on epoll", "a function answers on epoll (%s)" % errno_name, r)
        check(backend(d) == ['thaw_loop_backend{backend="epoll"}'],
              "/metrics: thaw_loop_backend{backend=\"epoll\"} (%s)" % errno_name, backend(d))


def main():
    need_built(THAW, NO_IO_URING, handler_so("echo"))
    # the filter refuses io_uring, and only it: a Python under it runs
    probe = subprocess.run([NO_IO_URING, sys.executable, "-c",
                            "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True);"
                            "p = ctypes.create_string_buffer(120);"
                            "r = libc.syscall(425, 8, p);"  # io_uring_setup(8, params)
                            "print(r, ctypes.get_errno())"], capture_output=True, text=True, timeout=30)
    check(probe.returncode == 0 and probe.stdout.split() == ["-1", "1"],
          "no_io_uring: io_uring_setup fails with EPERM under the filter", (probe.stdout, probe.stderr))

    with Daemon({"echo": ECHO}) as d:
        check(backend(d) == ['thaw_loop_backend{backend="io_uring"}'] or os.environ.get("THAW_TEST_LOOP"),
              "without the filter the loops run on io_uring", backend(d))

    refused("EPERM", [NO_IO_URING], EPOLL_FALLBACK_LINE)
    refused("ENOSYS", [NO_IO_URING, "--enosys"], "io_uring_setup: Function not implemented")

    # --loop io_uring: no fallback; the daemon exits saying why
    d = Daemon({"echo": ECHO}, args=["--loop", "io_uring"], ready_timeout=10)
    d.wrap = [NO_IO_URING]
    try:
        try:
            d.start()
            up = True
        except RuntimeError:
            up = False
        log = d.logs()
        check(not up and d.proc.returncode not in (None, 0) and
              "io_uring_queue_init: Operation not permitted" in log and EPOLL_LINE not in log,
              "--loop io_uring with io_uring refused: thaw serve exits, saying why", log[-600:])
    finally:
        d.stop()

    # the choice's spelling
    for args, env, what in ((["--loop", "kqueue"], {}, "--loop"), ([], {"THAW_LOOP": "kqueue"}, "THAW_LOOP")):
        p = subprocess.run([THAW, "serve", *args], env=dict(os.environ, **env), capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 2 and "%s: expected auto, io_uring or epoll: kqueue" % what in p.stderr,
              "%s kqueue: exit 2, saying what it takes" % what, (p.returncode, p.stderr[:200]))

    # the e2e suites with every daemon under the filter
    env = dict(os.environ, THAW_TEST_LOOP="epoll")
    for t in SUITES:
        p = subprocess.run([sys.executable, os.path.join(HERE, t)], env=env, capture_output=True,
                           text=True, timeout=240)
        out = p.stdout + p.stderr
        for line in out.splitlines():  # their skipped parts count here too
            if re.match(r"^skip(\[no-gpu\])?: ", line):
                print(line)
        n_ok = len(re.findall(r"^ok ", out, re.M))
        check(p.returncode == 0 and n_ok > 0, "%s passes with io_uring refused (%d checks)" % (t, n_ok),
              "\n".join(l for l in out.splitlines() if l.startswith("FAIL"))[:600] or out[-1500:])

    # the single-shot recv of kernels without provided buffer rings (< 5.19),
    # on io_uring: it once received into the request buffer that parsing
    # moves, and keep-alive requests and bodies came out corrupt
    with Daemon({"echo": ECHO}, env={"THAW_BUF_RING": "0"}) as d:
        check("single-shot recv" in d.logs(), "THAW_BUF_RING=0 takes the single-shot recv path")
    p = subprocess.run([sys.executable, os.path.join(HERE, "test_core.py")],
                       env=dict(os.environ, THAW_BUF_RING="0"), capture_output=True, text=True, timeout=240)
    out = p.stdout + p.stderr
    n_ok = len(re.findall(r"^ok ", out, re.M))
    check(p.returncode == 0 and n_ok > 0, "test_core passes on single-shot recv (%d checks)" % n_ok,
          "\n".join(l for l in out.splitlines() if l.startswith("FAIL"))[:600] or out[-1500:])
    finish()


main()
