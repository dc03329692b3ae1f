#!/usr/bin/env python3
"""The Python side of tests/bench/handlers.sh: model handlers through thaw.

  ocr_bench.py ocr BUILD DATA [--pages N] [--repeat R]
      pages/s of the ocr handler deployed as ocr_batch (OCR_OMP_THREADS=1,
      scalingConfig.maxInstances 1) with instanceConcurrency = OCR_ENGINES = 1
      and = 2, on a batch of N pages served from a loopback HTTP server:
        pdf  N/2 copies of DATA/doc.pdf (2 pages each, rendered by the
             handler at 144 dpi grey)
        png  DATA/render-p1.png, render-p2.png (the same pages rendered at
             144 dpi grey by handlers.sh), N/2 times each
      as one request, and (instanceConcurrency 2) as 2 concurrent requests
      of N/2 pages; against the `tesseract IMG - ` command on the same PNGs,
      one process per page, OMP_THREAD_LIMIT=1, sequential and 2 at a time.
      CER of every answer against DATA/page1.txt, page2.txt.
  ocr_bench.py ner BUILD [--requests N] [--repeat R]
      POST /ner on handlers/ner/example (NER_DEVICE=cpu) through thaw, one
      keep-alive connection: batch 64 x 128 steps x 7 tags of random logits
      (seed 1), and batch 1 x 32.

Every figure is the best of R runs (the machine is shared); the 1-minute load
average before each run is printed with it. Exit 0, 1 on a wrong answer or
failure, 77 when something needed is missing.
"""
import http.server
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from thawtest import cer  # noqa: E402
SPLIT = "\n<--- Page Split --->\n"
TESSDATA = "/usr/share/tesseract-ocr/5/tessdata"


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def tree_cpu(pid):
    """CPU seconds (user + system, all threads) of a process and its descendants."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def best(runs):
    """runs: [(wall, load, cers)]; the fastest, with its load and CERs."""
    return min(runs, key=lambda r: r[0])


W1, W2 = 34, 43


def row(what, settings, pages, requests, run):
    wall, load, cers, cpu = run
    print("| %-*s | %-*s | %5d | %4d | %7.2f | %7.2f | %11.2f | %5.2f%% / %5.2f%% | %5.2f |" % (
        W1, what, W2, settings, pages, requests, wall, pages / wall, pages / cpu if cpu > 0 else 0,
        statistics.mean(cers), max(cers), load))


def header():
    print("| %-*s | %-*s | %5s | %4s | %7s | %7s | %11s | %-17s | %5s |" % (
        W1, "path", W2, "settings", "pages", "reqs", "wall s", "pages/s", "pages/CPU-s", "CER mean / max", "load"))
    print("|%s|%s|%s|%s|%s|%s|%s|%s|%s|" % ("-" * (W1 + 2), "-" * (W2 + 2), "-" * 7, "-" * 6, "-" * 9, "-" * 9,
                                             "-" * 13, "-" * 19, "-" * 7))


def ocr(build, data, pages, repeat):
    from thawtest import Daemon
    so = os.path.join(build, "handlers", "ocr.so")
    refs = [open(os.path.join(data, "page%d.txt" % i)).read() for i in (1, 2)]
    pngs = ["render-p1.png", "render-p2.png"]
    if not all(os.path.exists(os.path.join(data, p)) for p in pngs):
        print("ocr: no render-p*.png in %s: using page1.png (the test's, RGB 144 dpi) for both pages" % data)
        pngs = ["page1.png", "page1.png"]
        refs = [refs[0], refs[0]]
    pages -= pages % 2
    half = pages // 2

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=data, **kw)

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        # socketserver's default listen backlog is 5: the handler opens up to
        # OCR_MAX_PARALLEL (8) connections per request, so 2 requests at once
        # overflowed it and the dropped SYNs cost a 1 s retransmit each
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d/" % server.server_address[1]
    bad = []

    def body_pdf(n):  # n pages (n even)
        return {"input": {"pdfs": [base + "doc.pdf"] * (n // 2)}}

    def body_png(n):
        return {"input": {"images": [base + pngs[i % 2] for i in range(n)]}}

    def page_texts(kind, output):
        if kind == "pdf":
            return [p for doc in output for p in doc.split(SPLIT)]
        return output

    results = []  # (what, settings, pages, requests, best run)

    def measure_thaw(d, kind, nreq, settings):
        runs = []
        for _ in range(repeat):
            per = pages // nreq
            body = json.dumps((body_pdf if kind == "pdf" else body_png)(per)).encode()
            answers = [None] * nreq

            def one(i):
                answers[i] = d.request("POST", "/ocr_batch", body=body,
                                       headers={"Content-Type": "application/json"}, timeout=300)
            load = load1()
            c0 = tree_cpu(d.proc.pid)
            t0 = time.monotonic()
            ts = [threading.Thread(target=one, args=(i,)) for i in range(nreq)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            wall = time.monotonic() - t0
            cpu = tree_cpu(d.proc.pid) - c0
            cers = []
            for r in answers:
                if r is None or r.status != 200:
                    bad.append("thaw %s: %r" % (kind, r))
                    return
                texts = page_texts(kind, r.json()["output"])
                if len(texts) != per:
                    bad.append("thaw %s: %d pages back, %d sent" % (kind, len(texts), per))
                    return
                cers += [cer(refs[i % 2], t) for i, t in enumerate(texts)]
            runs.append((wall, load, cers, cpu))
        what = "thaw ocr_batch, %s" % ("PDF (render+OCR)" if kind == "pdf" else "PNG")
        results.append((what, settings, pages, nreq, best(runs)))

    for ic in (1, 2):
        fn = {"handler": so, "timeout": 300, "instanceConcurrency": ic, "cpu": ic,
              "scalingConfig": {"maxInstances": 1},
              "environmentVariables": {"OCR_ENGINES": ic, "OCR_OMP_THREADS": 1, "OCR_MAX_PAGES": 50,
                                       "OCR_FETCH_ALLOW": "127.0.0.1"}}
        settings = "IC=%d OCR_ENGINES=%d OCR_OMP_THREADS=1" % (ic, ic)
        with Daemon({"ocr_batch": fn}, ready_timeout=120) as d:
            deadline = time.time() + 60
            while True:  # the first instance is checkpointed after init
                r = d.request("GET", "/ocr_batch/health", timeout=60)
                if r.status != 503 or time.time() > deadline:
                    break
                time.sleep(0.2)
            if r.status != 200:
                print("ocr: /ocr_batch/health answered %r\n%s" % (r, d.logs()[-3000:]))
                return 1
            # warm-up: one request of each kind (engines, page cache, restore)
            for b in (body_pdf(2), body_png(2)):
                r = d.request("POST", "/ocr_batch", body=json.dumps(b).encode(),
                              headers={"Content-Type": "application/json"}, timeout=120)
                if r.status != 200:
                    print("ocr: warm-up answered %r\n%s" % (r, d.logs()[-3000:]))
                    return 1
            for kind in ("pdf", "png"):
                measure_thaw(d, kind, 1, settings)
                if ic == 2:
                    measure_thaw(d, kind, 2, settings)
    server.shutdown()

    # the tesseract command on the same page images
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    imgs = [os.path.join(data, pngs[i % 2]) for i in range(pages)]

    def cli(path):
        p = subprocess.run(["tesseract", path, "-"], env=env, capture_output=True, timeout=300)
        if p.returncode != 0:
            bad.append("tesseract %s: rc %d %s" % (path, p.returncode, p.stderr[-300:]))
            return ""
        return p.stdout.decode(errors="replace")

    for par in (1, 2):
        runs = []
        for _ in range(repeat):
            load = load1()
            c0 = children_cpu()
            t0 = time.monotonic()
            with ThreadPoolExecutor(par) as ex:
                texts = list(ex.map(cli, imgs))
            wall = time.monotonic() - t0
            runs.append((wall, load, [cer(refs[i % 2], t) for i, t in enumerate(texts)],
                         children_cpu() - c0))
        results.append(("`tesseract IMG -`, PNG", "OMP_THREAD_LIMIT=1, %s" % (
            "sequential" if par == 1 else "2 processes at a time"), pages, pages, best(runs)))

    print("ocr: %d pages a batch (the test document: Helvetica 24 pt, 6 lines a page, "
          "pages 1 and 2 alternating), best of %d; reqs: requests at once (thaw) or "
          "processes run (tesseract); pages/CPU-s: pages per CPU-second of the daemon and its "
          "instances, or of the tesseract processes; load: 1-minute load average before the run"
          % (pages, repeat))
    header()
    for what, settings, n, nreq, run in results:
        row(what, settings, n, nreq, run)
    print("GPU: not measured: Tesseract has no GPU path")
    for b in bad:
        print("ocr: FAILED: " + b)
    return 1 if bad else 0


def ner(build, requests, repeat):
    from thawtest import Daemon
    so = os.path.join(build, "handlers", "ner.so")
    example = os.path.join(ROOT, "handlers", "ner", "example")
    tags = [t for t in open(os.path.join(example, "tags.txt")).read().split("\n") if t.strip()]
    k = len(tags)
    rnd = random.Random(1)

    def body(batch, steps):
        return json.dumps({"logits": [[[round(rnd.uniform(-5, 5), 3) for _ in range(k)]
                                       for _ in range(steps)] for _ in range(batch)],
                           "lengths": [steps] * batch}).encode()

    cases = [(64, 128), (1, 32)]
    bodies = {c: body(*c) for c in cases}
    d = Daemon({"ner": {"handler": so, "instanceConcurrency": 8, "cpu": os.cpu_count(),
                        "environmentVariables": {"TAGS": "tags.txt", "TRANSITIONS": "transitions.json",
                                                 "NER_DEVICE": "cpu"}}}, ready_timeout=60)
    for f in ("tags.txt", "transitions.json"):
        shutil.copy(os.path.join(example, f), os.path.join(d.fn_dir, "ner", f))
    out = []
    with d:
        conn = d.connect(60)
        for c in cases:
            for _ in range(3):  # warm-up (instance start or restore)
                r = d.request("POST", "/ner", body=bodies[c], conn=conn, timeout=60)
            if r.status != 200 or len(r.json().get("entities", [])) != c[0]:
                print("ner: POST /ner answered %r\n%s" % (r, d.logs()[-3000:]))
                return 1
            runs = []
            for _ in range(repeat):
                load = load1()
                times = []
                for _ in range(requests):
                    t0 = time.monotonic()
                    r = d.request("POST", "/ner", body=bodies[c], conn=conn, timeout=60)
                    times.append(time.monotonic() - t0)
                    if r.status != 200:
                        print("ner: POST /ner answered %r" % r)
                        return 1
                runs.append((statistics.median(times), min(times), load))
            out.append((c, len(bodies[c]), min(runs)))
    print("ner through thaw: POST /ner, handlers/ner/example (K=%d tags), NER_DEVICE=cpu, "
          "random logits, one keep-alive connection (Python http.client), %d requests a run, "
          "best of %d runs" % (k, requests, repeat))
    print("| %-16s | %9s | %9s | %9s | %12s | %5s |" % ("batch x steps", "body", "median ms", "min ms",
                                                       "seq/s (med)", "load"))
    print("|------------------|-----------|-----------|-----------|--------------|-------|")
    for (b, s), size, (med, mn, load) in out:
        print("| %-16s | %6.0f KB | %9.2f | %9.2f | %12.0f | %5.2f |" % (
            "%d x %d" % (b, s), size / 1000, med * 1e3, mn * 1e3, b / med, load))
    print("GPU: not measured here: the function runs with NER_DEVICE=cpu (bench_viterbi has the GPU line)")
    return 0


def main():
    if len(sys.argv) > 2:
        os.environ["THAW_BUILD"] = os.path.abspath(sys.argv[2])
    args = sys.argv[1:]
    opts = {}
    pos = []
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            opts[args[i][2:]] = int(args[i + 1])
            i += 2
        else:
            pos.append(args[i])
            i += 1
    if len(pos) >= 2:
        pos[1] = os.path.abspath(pos[1])
    if len(pos) == 3 and pos[0] == "ocr":
        if not os.path.exists(os.path.join(TESSDATA, "eng.traineddata")) or not shutil.which("tesseract"):
            print("ocr: skipped: no tesseract command or English model")
            return 77
        return ocr(pos[1], pos[2], opts.get("pages", 16), opts.get("repeat", 2))
    if len(pos) == 2 and pos[0] == "ner":
        return ner(pos[1], opts.get("requests", 20), opts.get("repeat", 2))
    print(__doc__)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:  # the daemon did not come up: its log's tail
        print("FAILED: " + str(e)[-3000:])
        sys.exit(1)
