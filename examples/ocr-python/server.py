"""The seed's OCR server as a thaw custom runtime: FastAPI + uvicorn.

POST /ocr_batch {"input": {"images": [URL...], "pdfs": [URL...]}, "prompt": ...}
  -> {"output": [text...]}: images first, then PDFs, each in request order;
  a PDF's pages (rendered at 144 dpi with PyMuPDF) joined by
  "\\n<--- Page Split --->\\n". URLs: http(s), or data: URLs (an instance
  has its own network namespace with loopback only; see README.md).
GET /health -> {"status": "healthy"}; GET / -> what this is.

Debian packages: python3-fastapi python3-uvicorn python3-fitz
python3-tesserocr tesseract-ocr-eng. Run with /usr/bin/python3.
"""
import io
import os
import threading
import urllib.request

import fitz  # PyMuPDF
import tesserocr
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from PIL import Image

SPLIT = "\n<--- Page Split --->\n"
TESSDATA = os.environ.get("OCR_TESSDATA", "/usr/share/tesseract-ocr/5/tessdata/")
MAX_BYTES = 64 << 20
MAX_PAGES = int(os.environ.get("OCR_MAX_PAGES", "50"))

app = FastAPI()
# the warm state a snapshot keeps: Tesseract with its English model loaded
engine = tesserocr.PyTessBaseAPI(path=TESSDATA, lang="eng")
engine_lock = threading.Lock()


def fetch(url):
    if not isinstance(url, str) or url.split(":", 1)[0].lower() not in ("http", "https", "data"):
        raise HTTPException(400, "cannot fetch %.100r: only http, https and data URLs" % (url,))
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            data = r.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise HTTPException(400, "fetching %.100s failed: HTTP status %d" % (url, e.code))
    except Exception as e:  # noqa: BLE001 - any fetch problem is the caller's
        raise HTTPException(400, "fetching %.100s failed: %s" % (url, e))
    if len(data) > MAX_BYTES:
        raise HTTPException(400, "%.100s is larger than %d bytes" % (url, MAX_BYTES))
    return data


def ocr_image(img):
    with engine_lock:
        engine.SetImage(img)
        return engine.GetUTF8Text()


def ocr_pdf(data, url):
    try:
        doc = fitz.open(stream=data, filetype="pdf")
    except Exception:  # noqa: BLE001
        raise HTTPException(400, "%.100s is not a PDF" % url)
    if doc.page_count > MAX_PAGES:
        raise HTTPException(400, "%.100s has %d pages, more than %d" % (url, doc.page_count, MAX_PAGES))
    pages = []
    for page in doc:
        pix = page.get_pixmap(dpi=144)
        img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
        pages.append(ocr_image(img).strip())
    return SPLIT.join(pages)


def ocr_any(url, pdf):
    data = fetch(url)
    if pdf or data[:5] == b"%PDF-":
        if data[:5] != b"%PDF-":
            raise HTTPException(400, "%.100s is not a PDF" % url)
        return ocr_pdf(data, url)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:  # noqa: BLE001
        raise HTTPException(400, "cannot decode image %.100s" % url)
    return ocr_image(img.convert("RGB")).strip()


@app.post("/ocr_batch")
async def ocr_batch(request: Request):
    try:
        body = await request.json()
    except Exception:  # noqa: BLE001
        raise HTTPException(400, "the body is not valid JSON")
    inp = body.get("input") if isinstance(body, dict) else None
    if not isinstance(inp, dict):
        raise HTTPException(400, "expected an object with input")
    images, pdfs = inp.get("images") or [], inp.get("pdfs") or []
    if not images and not pdfs:
        raise HTTPException(400, "expected input.images and/or input.pdfs")
    # blocking work off the event loop, as a sync endpoint would be
    import anyio
    out = []
    for url in images:
        out.append(await anyio.to_thread.run_sync(ocr_any, url, False))
    for url in pdfs:
        out.append(await anyio.to_thread.run_sync(ocr_any, url, True))
    return {"output": out}


@app.get("/health")
def health():
    return {"status": "healthy"}


@app.get("/")
def root():
    return {"service": "ocr_batch", "engine": "tesseract " + tesserocr.tesseract_version().split()[1],
            "usage": "POST /ocr_batch {\"input\": {\"images\": [...], \"pdfs\": [...]}}"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("FC_SERVER_PORT", "9000")),
                log_level="warning")
