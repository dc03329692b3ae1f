"""Faults and bad input under load: kill -9 of an instance fails only its own
requests; slow clients and 10k idle connections do not hurt others; invalid
JSON to each shipped handler gets its error while the daemon keeps serving."""
import os
import re
import resource
import shutil
import signal
import socket
import threading
import time

from thawtest import ROOT, Daemon, Load, check, finish, handler_so

FAULT = {"handler": handler_so("fault"), "timeout": 5,
         "scalingConfig": {"minInstances": 3, "maxInstances": 4, "maxQueueLength": 100}}
NER_DIR = os.path.join(ROOT, "handlers", "ner", "example")
HANDLERS = {
    "fault": FAULT,
    "echo": {"handler": handler_so("echo")},
    "half": {"handler": handler_so("predict"), "environmentVariables": {
        "MODEL": "mlp", "WEIGHTS": os.path.join(ROOT, "examples", "half_plus_two", "half_plus_two.safetensors")}},
    "ner": {"handler": handler_so("ner"), "environmentVariables": {"TAGS": "tags.txt", "TRANSITIONS": "transitions.json"}},
    "ocr_batch": {"handler": handler_so("ocr"), "timeout": 30},
}

daemon = Daemon(HANDLERS, args=["--header-timeout", "1000"], ready_timeout=60)
for f in ("tags.txt", "transitions.json"):  # the ner model's files, before it starts
    shutil.copy(os.path.join(NER_DIR, f), os.path.join(daemon.fn_dir, "ner", f))
with daemon as d:

    # --- kill -9 of one instance under load
    def pids():
        return sorted({int(p) for p in re.findall(r"fault: instance \w+ \(pid (\d+)\) (?:restored|ready)", d.logs())})
    load = Load(d, lambda c: d.request("GET", "/fault/sleep?ms=30", conn=c), workers=3,
                until=time.time() + 3).start()
    time.sleep(1)
    live = [p for p in pids() if os.path.exists("/proc/%d" % p)]
    victim = live[-1] if live else None
    if victim:
        os.kill(victim, signal.SIGKILL)
    results = load.finish("load with a kill -9")
    bad = [s for s in results if s != 200]
    check(victim is not None, "found an instance to kill", pids())
    check(len(results) > 50, "load ran (%d requests)" % len(results))
    check(len(bad) <= 1 and all(s == 502 for s in bad), "only the killed instance's request failed (502)", bad)
    check("killed by signal Killed" in d.logs() or not bad, "the kill is named in the log")
    check(d.request("GET", "/fault/id").status == 200, "replaced: the function serves")

    # --- slowloris: 50 clients dribbling headers get 408, others are served meanwhile
    slow = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"GET /echo/ HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    t0 = time.time()
    lat, codes = [], []
    while time.time() - t0 < 1.5:
        for s in slow:
            try:
                s.send(b"X-a: b\r\n")
            except OSError:
                pass
        t1 = time.time()
        codes.append(d.request("POST", "/echo/", body=b"fast").status)
        lat.append(time.time() - t1)
        time.sleep(0.1)
    check(codes and all(c == 200 for c in codes), "served while slow clients dribble", codes)
    got408 = 0
    for s in slow:
        s.settimeout(2)
        try:
            got408 += s.recv(100).startswith(b"HTTP/1.1 408")
        except OSError:
            pass
        s.close()
    check(got408 == 50, "every slow client got 408 (%d)" % got408)
    check(max(lat) < 0.2, "others unaffected by slow clients (max %.1f ms)" % (max(lat) * 1e3))

    # --- 10k idle connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    idle = []
    try:
        for _ in range(10000):
            idle.append(socket.create_connection(("127.0.0.1", d.port)))
    except OSError as e:
        print("stopped opening at %d: %s" % (len(idle), e))
    check(len(idle) == 10000, "10k idle connections open (%d)" % len(idle))
    time.sleep(0.5)
    lat = []
    for i in range(50):
        t1 = time.time()
        r = d.request("POST", "/echo/", body=b"busy")
        lat.append(time.time() - t1)
    lat.sort()
    check(r.status == 200 and lat[len(lat) // 2] < 0.01, "served beside 10k idle connections (p50 %.2f ms)" % (lat[len(lat) // 2] * 1e3))
    m = d.metrics()
    check(m.get("thaw_connections", 0) >= 10000, "connections gauge counts them (%d)" % m.get("thaw_connections", 0))
    for s in idle:
        s.close()

    # --- invalid JSON to each handler: its error, the daemon serves on
    cases = [("/v1/models/half:predict", "error"), ("/ner/", "error"), ("/ocr_batch/", "detail")]
    for path, key in cases:
        for body in (b"{not json", b"[1,2", b"\x00\xff", b"{}" * 1000, b'{"instances": '):
            r = d.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            check(r.status == 400 and key in r.json(), "%s: invalid JSON %r -> 400 {%s}" % (path, body[:10], key), r)
    check(d.request("POST", "/echo/", body=b"still").body == b"still", "daemon serves after bad input")
    r = d.request("POST", "/v1/models/half:predict", body=b'{"instances": [1.0, 2.0, 5.0]}')
    check(r.status == 200 and r.json() == {"predictions": [2.5, 3.0, 4.5]}, "predict still exact after bad input", r)

finish()
