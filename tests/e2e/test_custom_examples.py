"""The custom-runtime examples, deployed from their folders:

examples/ocr-python (FastAPI + Tesseract + PyMuPDF): the seed's request for
a 2-page PDF and a PNG (made by MuPDF through `test_ocr --write-data`) is
answered with CER <= 2 % through the function's route (documents as data:
URLs: an instance's network namespace has loopback only), and under
`thaw dev` through the daemon's /proxy/{port}/ (the seed's dev flow), by
http URL from the test's loopback server. examples/torch-digits (FastAPI + PyTorch): trained here on sklearn's
digits, its TF Serving :predict answers equal the test's own forward pass.
Both are served by restored copies of a snapshot.
"""
import base64
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thawtest import BUILD, ROOT, THAW, Daemon, cer, check, finish, free_port, skip, wait_for  # noqa: E402

PY = "/usr/bin/python3"
SPLIT = "\n<--- Page Split --->\n"
DATA_TOOL = os.path.join(BUILD, "tests", "unit", "test_ocr")


def have(mods):
    return subprocess.run([PY, "-c", "import " + ",".join(mods)], capture_output=True).returncode == 0


def check_ocr(out, pages, what):
    check(len(out) == 2, what + ": two outputs, the image first", out)
    if len(out) != 2:
        return
    c_img = cer(pages[0], out[0])
    parts = out[1].split(SPLIT)
    check(len(parts) == 2, what + ": the PDF's two pages joined by the split marker", out[1][:200])
    c_pdf = [cer(pages[i], parts[i]) for i in range(min(2, len(parts)))]
    print("# CER %s: image %.2f%%, PDF pages %s" % (what, c_img, ["%.2f%%" % c for c in c_pdf]))
    check(c_img <= 2.0 and all(c <= 2.0 for c in c_pdf), what + ": CER <= 2 %", (c_img, c_pdf))


def deploy(d, example, prepare=None):
    dst = os.path.join(d.fn_dir, os.path.basename(example))
    shutil.copytree(os.path.join(ROOT, "examples", example), dst)
    if prepare:
        prepare(dst)
    return dst


def serve_until(d, path, secs=120):
    """The function's first answer: cold start, snapshot, restore."""
    def ok():
        try:
            r = d.request("GET", path, timeout=60)
        except OSError:
            return None
        return r if r.status == 200 else None
    return wait_for(ok, secs=secs, step=0.3)


def test_ocr(d, data, pages):
    check(serve_until(d, "/ocr-python/health") is not None, "ocr-python: GET /health answers")
    r = d.request("GET", "/ocr-python/")
    check(r.status == 200 and "ocr_batch" in r.body.decode(), "ocr-python: GET / answers", r)

    def data_url(name, mime):
        with open(os.path.join(data, name), "rb") as f:
            return "data:%s;base64,%s" % (mime, base64.b64encode(f.read()).decode())
    body = {"input": {"images": [data_url("page1.png", "image/png")],
                      "pdfs": [data_url("doc.pdf", "application/pdf")]},
            "prompt": "<image>\nFree OCR."}
    r = d.request("POST", "/ocr-python/ocr_batch", json.dumps(body).encode(),
                  headers={"Content-Type": "application/json"}, timeout=120)
    check(r.status == 200, "ocr-python: POST /ocr_batch through thaw answers 200", r)
    if r.status == 200:
        check_ocr(r.json()["output"], pages, "through thaw")
    r = d.request("POST", "/ocr-python/ocr_batch", b'{"input": {}}',
                  headers={"Content-Type": "application/json"})
    check(r.status == 400 and "input.images" in r.json().get("detail", ""),
          "ocr-python: a bad request gets FastAPI's 400 {detail}", r)
    check(re.search(r"ocr-python: instance \S+ \(pid \d+\) restored in", d.logs()),
          "ocr-python: served by a restored copy")


def test_ocr_dev(data, pages):
    """The seed's dev flow: `thaw dev` runs server.py in the foreground on a
    loopback port, the daemon reaches it at /proxy/{port}/ (documents by
    http URL from the test's loopback server: no namespace here)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=data, **kw)

        def log_message(self, *a):
            pass
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d/" % files.server_address[1]
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="thaw-dev-ocr-", suffix=".log", delete=False)
    p = subprocess.Popen([THAW, "dev", os.path.join(ROOT, "examples", "ocr-python"), "--port",
                          str(port), "--once"], stdout=log, stderr=subprocess.STDOUT)
    try:
        def up():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                return c.getresponse().status == 200
            except OSError:
                return False
        check(wait_for(up, secs=60, step=0.2), "thaw dev runs the OCR server",
              open(log.name).read()[-1000:])
        with Daemon({}, args=["--proxy-ports", str(port)], wait_ready=False) as d:
            token = open(os.path.join(d.state_dir, "admin.token")).read().strip()
            body = {"input": {"images": [base + "page1.png"], "pdfs": [base + "doc.pdf"]},
                    "prompt": "<image>\nFree OCR."}
            r = d.request("POST", "/proxy/%d/ocr_batch" % port, json.dumps(body).encode(),
                          headers={"Content-Type": "application/json", "X-Thaw-Token": token},
                          timeout=120)
            check(r.status == 200, "the seed's /proxy/PORT/ocr_batch call under thaw dev", r)
            if r.status == 200:
                check_ocr(r.json()["output"], pages, "thaw dev + /proxy, by URL")
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        files.shutdown()
        os.unlink(log.name)


def test_torch(d, fn_dir):
    check(serve_until(d, "/v1/models/torch-digits") is not None, "torch-digits: model status answers")
    sys.path.insert(0, fn_dir)
    import torch
    from sklearn.datasets import load_digits
    from model import load
    X, y = load_digits(return_X_y=True)
    rows = [list(map(float, X[i])) for i in range(0, 1700, 170)]
    r = d.request("POST", "/v1/models/torch-digits:predict", json.dumps({"instances": rows}).encode(),
                  headers={"Content-Type": "application/json"}, timeout=60)
    check(r.status == 200, "torch-digits: :predict answers 200", r)
    if r.status != 200:
        return
    got = torch.tensor(r.json()["predictions"])
    model = load(os.path.join(fn_dir, "model.pt"))
    with torch.no_grad():
        want = model(torch.tensor(rows, dtype=torch.float32) / 16.0)
    diff = (got - want).abs().max().item()
    check(got.shape == (10, 10) and diff < 1e-6,
          "torch-digits: predictions equal the model's own forward pass", diff)
    acc = (got.argmax(1) == torch.tensor(y[0:1700:170])).float().mean().item()
    print("# torch-digits: max |diff| %.2e, accuracy on the 10 rows %.2f" % (diff, acc))
    check(re.search(r"torch-digits: instance \S+ \(pid \d+\) restored in", d.logs()),
          "torch-digits: served by a restored copy")


def main():
    # the test runs the model's forward pass itself: it needs Debian's torch,
    # which the python3 on PATH (tests/run.sh's) may not have
    try:
        import torch  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath(PY) and os.access(PY, os.X_OK):
            os.execv(PY, [PY] + sys.argv)
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    if not have(["fastapi", "uvicorn", "fitz", "tesserocr", "PIL", "torch", "sklearn"]):
        skip("needs Debian's python3-fastapi python3-uvicorn python3-fitz python3-tesserocr "
             "python3-pil python3-torch python3-sklearn (scripts/debian-packages.txt)")
    if not os.path.exists(DATA_TOOL):
        skip("missing " + DATA_TOOL)
    data = tempfile.mkdtemp(prefix="thaw-ocrpy-data-")
    try:
        subprocess.run([DATA_TOOL, "--write-data", data], check=True, timeout=60)
        pages = [open(os.path.join(data, "page%d.txt" % i)).read() for i in (1, 2)]
        d = Daemon({}, ready_timeout=120, wait_ready=False)
        deploy(d, "ocr-python")
        torch_dir = deploy(d, "torch-digits", lambda dst: subprocess.run(
            [PY, "train.py"], cwd=dst, check=True, timeout=120))
        with d:
            test_ocr(d, data, pages)
            test_torch(d, torch_dir)
        test_ocr_dev(data, pages)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
