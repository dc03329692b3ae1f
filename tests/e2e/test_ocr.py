"""End to end: the ocr handler deployed as ocr_batch behind POST /ocr_batch.
Documents (a 2-page PDF of known text and a PNG of its first page, made by
MuPDF through `test_ocr --write-data`) are served by a local HTTP server;
the text comes back within 2% character error rate, images first then PDFs,
PDF pages joined with the page-split marker; bad requests give 400
{"detail": ...}; GET /ocr_batch/health answers healthy."""
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from thawtest import BUILD, Daemon, cer, check, finish, handler_so, need_built, skip

OCR = handler_so("ocr")
DATA_TOOL = os.path.join(BUILD, "tests", "unit", "test_ocr")
need_built(os.path.join(BUILD, "thaw"), os.path.join(BUILD, "thaw-instance"), OCR, DATA_TOOL)
if not os.path.exists("/usr/share/tesseract-ocr/5/tessdata/eng.traineddata"):
    skip("no Tesseract English model")

SPLIT = "\n<--- Page Split --->\n"

data = tempfile.mkdtemp(prefix="thaw-ocr-data-")
subprocess.run([DATA_TOOL, "--write-data", data], check=True, timeout=60)
with open(os.path.join(data, "not-a-pdf.pdf"), "w") as f:
    f.write("plain text, not a PDF\n")
with open(os.path.join(data, "garbage.png"), "wb") as f:
    f.write(bytes((i * 7919 + 13) & 0xFF for i in range(4096)))
PAGES = [open(os.path.join(data, "page%d.txt" % i)).read() for i in (1, 2)]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=data, **kw)

    def log_message(self, *a):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
threading.Thread(target=server.serve_forever, daemon=True).start()
BASE = "http://127.0.0.1:%d/" % server.server_address[1]


def check_pdf_text(text, what):
    parts = text.split(SPLIT)
    check(len(parts) == 2, what + ": two pages joined by the split marker", text[:200])
    if len(parts) == 2:
        c = [cer(PAGES[i], parts[i]) for i in range(2)]
        print("# CER %s: %.2f%% %.2f%%" % (what, c[0], c[1]))
        check(max(c) <= 2.0, what + ": CER <= 2% on both pages", c)


fn = {"handler": OCR, "timeout": 60, "instanceConcurrency": 2,
      "environmentVariables": {"OCR_ENGINES": 2, "OCR_MAX_PAGES": 50,
                               "OCR_FETCH_ALLOW": "127.0.0.1"}}
try:
    with Daemon({"ocr_batch": fn}, ready_timeout=60) as d:
        def post(body, raw=None):
            return d.request("POST", "/ocr_batch", body=raw if raw is not None else json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"}, timeout=90)

        # The first instance is checkpointed after init; wait until a (restored)
        # instance answers rather than racing the snapshot.
        deadline = time.time() + 30
        while True:
            r = d.request("GET", "/ocr_batch/health", timeout=30)
            if r.status != 503 or time.time() > deadline:
                break
            time.sleep(0.2)
        check(r.status == 200 and r.json() == {"status": "healthy"}, "GET /health is healthy", r)

        r = post({"input": {"pdfs": [BASE + "doc.pdf"]}, "prompt": "<image>\nFree OCR."})
        check(r.status == 200 and len(r.json().get("output", [])) == 1, "PDF: one output", r)
        if r.status == 200:
            check_pdf_text(r.json()["output"][0], "PDF")

        r = post({"input": {"images": [BASE + "page1.png"]}})
        check(r.status == 200, "PNG without prompt: 200", r)
        if r.status == 200:
            c = cer(PAGES[0], r.json()["output"][0])
            print("# CER PNG: %.2f%%" % c)
            check(c <= 2.0, "PNG: CER <= 2%", c)

        # images first, then PDFs, in request order; a PDF at an image URL is a PDF
        r = post({"input": {"pdfs": [BASE + "doc.pdf"], "images": [BASE + "page1.png", BASE + "doc.pdf"]}})
        out = r.json().get("output", []) if r.status == 200 else []
        check(len(out) == 3, "batch of 3: three outputs", r)
        if len(out) == 3:
            check(SPLIT not in out[0] and cer(PAGES[0], out[0]) <= 2.0, "batch: the image first", out[0][:200])
            check_pdf_text(out[1], "PDF at an image URL")
            check_pdf_text(out[2], "PDF last")

        # two requests at once on instanceConcurrency 2
        results = [None, None]

        def one(i):
            results[i] = post({"input": {"pdfs": [BASE + "doc.pdf"]}})
        ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(all(x is not None and x.status == 200 for x in results), "two concurrent requests: 200", results)

        for what, body, raw, want in [
                ("invalid JSON", None, b'{"input": ', "not valid JSON"),
                ("neither list", {"input": {}}, None, "input.images and/or input.pdfs"),
                ("no input", {"prompt": "x"}, None, "input"),
                ("not a PDF", {"input": {"pdfs": [BASE + "not-a-pdf.pdf"]}}, None, "not a PDF"),
                ("404 URL", {"input": {"pdfs": [BASE + "missing.pdf"]}}, None, "HTTP status 404"),
                ("file:// URL", {"input": {"images": ["file:///etc/passwd"]}}, None, "failed"),
                ("undecodable image", {"input": {"images": [BASE + "garbage.png"]}}, None, "cannot decode image")]:
            r = post(body, raw)
            detail = r.json().get("detail", "") if r.status == 400 else ""
            check(r.status == 400 and want in detail, "400: " + what, r)
        r = d.request("GET", "/ocr_batch")
        check(r.status == 405, "GET /: 405", r)
finally:
    server.shutdown()
    shutil.rmtree(data, ignore_errors=True)

finish()
