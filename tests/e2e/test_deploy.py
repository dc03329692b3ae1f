"""One-command deploy from a clean state folder: `thaw deploy` builds the
echo and ocr examples into images, uploads only the blobs the daemon lacks,
and the daemon unpacks and serves them (also after a restart). The upload
and unpack paths refuse what an attacker would send: no token, a wrong
digest, a dropped connection, tar entries that escape (.., absolute paths,
links, devices), sparse entries, truncated layers, a file and a folder of
one name, garbage layers and manifests; refusals name the entry, never the
daemon's own folders."""
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import http.server

from thawtest import BUILD, THAW, Daemon, check, finish, handler_so, need_built, skip_part

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESSDATA = "/usr/share/tesseract-ocr/5/tessdata/eng.traineddata"
DATA_TOOL = os.path.join(BUILD, "tests", "unit", "test_ocr")
need_built(THAW, handler_so("echo"))
# only the OCR parts need the OCR handler and Tesseract's English model; the
# echo deploy, upload refusals, tar refusals and restart replay run without
no_ocr = ", ".join("missing " + n for n in (handler_so("ocr"), DATA_TOOL, TESSDATA) if not os.path.exists(n))

work = tempfile.mkdtemp(prefix="thaw-deploy-")


def example(name, so):
    """A copy of examples/NAME with the handler of the build under test."""
    dst = os.path.join(work, name)
    shutil.copytree(os.path.join(ROOT, "examples", name), dst, symlinks=True,
                    ignore=shutil.ignore_patterns(".thaw"))
    path = os.path.join(dst, "fc.yaml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(re.sub(r"(?m)^handler: .*$", "handler: " + handler_so(so), text))
    return dst


def thaw(d, *args, timeout=120):
    env = dict(os.environ, THAW_URL="http://127.0.0.1:%d" % d.port)
    env.pop("THAW_TOKEN", None)
    p = subprocess.run([THAW, *args, "--state-dir", d.state_dir], env=env, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# documents for the OCR call, served from loopback
data = os.path.join(work, "data")
os.makedirs(data)
if not no_ocr:
    subprocess.run([DATA_TOOL, "--write-data", data], check=True, timeout=60)
    PAGE1 = open(os.path.join(data, "page1.txt")).read().split()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=data, **kw)

    def log_message(self, *a):
        pass


docs = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
threading.Thread(target=docs.serve_forever, daemon=True).start()
DOCS = "http://127.0.0.1:%d/" % docs.server_address[1]

echo_dir, ocr_dir = example("echo", "echo"), example("ocr", "ocr")
# the documents come from loopback, which OCR fetches only when allowed
with open(os.path.join(ocr_dir, "fc.yaml")) as f:
    text = f.read()
with open(os.path.join(ocr_dir, "fc.yaml"), "w") as f:
    f.write(text.replace("environmentVariables:\n", "environmentVariables:\n  OCR_FETCH_ALLOW: 127.0.0.1\n", 1))

with Daemon(ready_timeout=60) as d:
    token = open(os.path.join(d.state_dir, "admin.token")).read().strip()
    auth = {"Authorization": "Bearer " + token}
    images = os.path.join(d.state_dir, "images")

    # --- the examples, end to end -------------------------------------------
    rc, out, err = thaw(d, "deploy", echo_dir)
    check(rc == 0 and "echo version 1 serves" in out, "thaw deploy examples/echo from a clean state: serves", (rc, out, err))
    r = d.request("POST", "/echo/", b"hello")
    check(r.status == 200 and r.body == b"hello", "echo answers", r)

    if no_ocr:
        skip_part("ocr deploy, one copy of the model, redeploys: " + no_ocr)
    else:
        rc, out, err = thaw(d, "deploy", ocr_dir, timeout=300)
        check(rc == 0 and "ocr_batch version 1 serves" in out, "thaw deploy examples/ocr: serves", (rc, out, err))
        check(re.search(r"model layer .* uploaded in", out) and re.search(r"code layer .* uploaded in", out),
              "ocr: model layer (the English model) and code layer uploaded", out)
        r = d.request("GET", "/ocr_batch/health")
        check(r.status == 200 and r.json().get("status") == "healthy", "ocr health", r)
        r = d.request("POST", "/ocr_batch", json.dumps({"input": {"images": [DOCS + "page1.png"]}}).encode(),
                      {"Content-Type": "application/json"}, timeout=60)
        words = r.json().get("output", [""])[0].split() if r.status == 200 else []
        found = sum(w in words for w in PAGE1)
        check(r.status == 200 and found >= 0.9 * len(PAGE1),
              "ocr reads the page through the deployed image (%d of %d words)" % (found, len(PAGE1)), r)

        # one copy of the weights: the layer's tar is gone, its files are linked
        layer_files = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(images, "layers"))
                       for f in fs if f == "eng.traineddata"]
        blobs = os.listdir(os.path.join(images, "blobs", "sha256"))
        check(len(layer_files) == 1 and os.stat(layer_files[0]).st_nlink == 2 and
              os.path.getsize(layer_files[0]) == os.path.getsize(TESSDATA),
              "the model is unpacked once and hard-linked into the function folder", layer_files)
        check(layer_files and hashlib.sha256(open(layer_files[0], "rb").read()).digest() ==
              hashlib.sha256(open(TESSDATA, "rb").read()).digest(), "the unpacked model equals the original byte for byte")
        check(all(os.path.getsize(os.path.join(images, "blobs", "sha256", b)) < 65536 for b in blobs),
              "only manifests and configs stay as blobs (layer tars deleted after unpacking)", blobs)

        # the same folder again: nothing to upload
        rc, out, err = thaw(d, "deploy", "--json", ocr_dir, timeout=300)
        doc = json.loads(out) if rc == 0 else {}
        check(rc == 0 and doc.get("version") == 2 and doc.get("uploaded_bytes") == 0,
              "redeploy of an unchanged folder uploads nothing", (rc, out, err))

        # a settings change: only the code layer travels; history says what changed
        with open(os.path.join(ocr_dir, "fc.yaml")) as f:
            text = f.read()
        with open(os.path.join(ocr_dir, "fc.yaml"), "w") as f:
            f.write(text.replace('OCR_MAX_PAGES: "50"', 'OCR_MAX_PAGES: "40"'))
        rc, out, err = thaw(d, "deploy", ocr_dir, timeout=300)
        check(rc == 0 and re.search(r"model layer .* on the daemon already", out) and
              re.search(r"code layer .* uploaded in", out),
              "changed fc.yaml: the model layer is not uploaded again", (rc, out, err))
        rc, out, err = thaw(d, "history", "ocr_batch")
        check(rc == 0 and 'environmentVariables.OCR_MAX_PAGES: "50" -> "40"' in out and
              re.search(r"code layer: sha256:\w{12} -> sha256:\w{12}", out) and "model layer:" not in out,
              "history: the setting and the code layer changed, the model did not", out)

    # --- uploads an attacker would send ---------------------------------------
    def raw_put(path, head_extra, body, read=True):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(("PUT %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, head_extra)).encode() + body)
        resp = b""
        if read:
            try:
                while b"\r\n\r\n" not in resp:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    resp += chunk
            except socket.timeout:
                pass
        s.close()
        return resp

    blob = b"x" * 1000
    t0 = time.time()
    resp = raw_put("/admin/blobs/" + sha(blob), "Content-Length: 10000000000\r\n", b"")
    check(resp.startswith(b"HTTP/1.1 401") and time.time() - t0 < 5,
          "an upload without the token is refused at its headers (401), no body read", resp[:80])
    r = d.request("PUT", "/admin/blobs/" + sha(b"other"), blob, auth)
    check(r.status == 400 and "hash to" in r.json().get("error", ""), "a blob that does not match its digest: 400", r)
    r = d.request("PUT", "/admin/blobs/sha256:../../etc", blob, auth)
    check(r.status == 400 and "invalid request path" in r.json().get("error", ""), "a path trick as digest: 400 invalid request path", r)
    resp = raw_put("/admin/blobs/" + sha(blob), "Authorization: Bearer %s\r\nContent-Length: 1000000\r\n" % token,
                   b"y" * 100000, read=False)
    time.sleep(0.5)
    left = [b for b in os.listdir(os.path.join(images, "blobs", "sha256")) if b.startswith(".tmp")]
    check(not left and not os.path.exists(os.path.join(images, "blobs", "sha256", sha(blob)[7:])),
          "a dropped upload leaves nothing behind", left)
    r = d.request("GET", "/admin/blobs/" + sha(blob), None, auth)
    check(r.status == 404, "GET of a blob not uploaded: 404", r)

    def put(data):
        r = d.request("PUT", "/admin/blobs/" + sha(data), data, auth)
        if r.status != 201:
            check(False, "upload of a %d-byte blob" % len(data), r)
        return sha(data)

    def image(layer_tar, handler="handler.so", schema=2, layer_type="application/vnd.oci.image.layer.v1.tar"):
        """An image of one layer (or of each tar in a list, in order)."""
        tars = layer_tar if isinstance(layer_tar, list) else [layer_tar]
        layers = [put(t) for t in tars]
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": layers},
                             "thaw": {"name": "evil", "handler": handler}}).encode()
        cfg = put(config)
        manifest = json.dumps({"schemaVersion": schema, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": len(config)},
                               "layers": [{"mediaType": layer_type, "digest": l, "size": len(t)}
                                          for l, t in zip(layers, tars)]}).encode()
        return put(manifest)

    def tar_of(*entries):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, kind, extra in entries:
                info = tarfile.TarInfo(name)
                info.type = kind
                payload = b""
                if kind == tarfile.REGTYPE:
                    payload = b"data" if extra is None else extra
                    info.size = len(payload)
                elif kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = extra
                t.addfile(info, io.BytesIO(payload) if payload else None)
        return buf.getvalue()

    fc = b"name: evil\nhandler: handler.so\n"
    ok_files = [("function/fc.yaml", tarfile.REGTYPE, fc), ("function/handler.so", tarfile.REGTYPE, b"\x7fELF")]
    outside = os.path.join(os.path.dirname(d.state_dir), "evil")
    bad_layers = {
        "'..' in a path": [("function/../../evil", tarfile.REGTYPE, b"x")],
        "a path outside function/": [("evil", tarfile.REGTYPE, b"x")],
        "an absolute path": [("/tmp/thaw-evil-abs", tarfile.REGTYPE, b"x")],
        "a symlink": [("function/link", tarfile.SYMTYPE, "/etc/passwd")],
        "a hard link": [("function/hard", tarfile.LNKTYPE, "function/fc.yaml")],
        "a device": [("function/dev", tarfile.CHRTYPE, None)],
        "a fifo": [("function/fifo", tarfile.FIFOTYPE, None)],
        "a whiteout": [("function/.wh.fc.yaml", tarfile.REGTYPE, b"")],
        "an entry twice": [("function/fc.yaml", tarfile.REGTYPE, b"again")],
    }
    for what, entries in bad_layers.items():
        digest = image(tar_of(*ok_files, *entries))
        r = d.request("POST", "/admin/functions", json.dumps({"image": digest}).encode(), auth)
        check(r.status == 400 and "layer" in r.json().get("error", ""), "a layer with %s is refused" % what, r)
    check(not os.path.exists(outside) and not os.path.exists("/tmp/thaw-evil-abs"), "nothing was written outside", outside)
    leftovers = [n for n in os.listdir(os.path.join(images, "layers")) if n.startswith(".tmp")]
    check(not leftovers, "refused layers leave no half-unpacked folder", leftovers)

    # --- layers that unpacked wrongly, or whose refusal leaked a path ---------
    def deploy_error(digest):
        r = d.request("POST", "/admin/functions", json.dumps({"image": digest}).encode(), auth, timeout=60)
        return r.status, (r.json().get("error", "") if r.status >= 400 else "")

    def names_no_path(err):
        """A refusal names the layer entry: never "(null)", the daemon's
        temporary unpack folder or its state folder."""
        return "(null)" not in err and ".tmp-" not in err and d.state_dir not in err

    def sparse_tar(*fmt):
        """GNU tar --sparse of a 64 MiB file holding 4 KiB of data and a
        trailing hole, beside a valid fc.yaml and handler."""
        src = tempfile.mkdtemp(dir=work)
        os.makedirs(os.path.join(src, "function"))
        for name, _, payload in ok_files:
            with open(os.path.join(src, name), "wb") as f:
                f.write(payload)
        with open(os.path.join(src, "function", "holes.bin"), "wb") as f:
            f.seek(1 << 20)
            f.write(b"z" * 4096)
            f.truncate(64 << 20)
        p = subprocess.run(["tar", "--sparse", *fmt, "-C", src, "-cf", "-", "function"],
                           capture_output=True, timeout=60)
        shutil.rmtree(src, ignore_errors=True)
        return p.stdout if p.returncode == 0 else None

    # tar is Essential in Debian: missing it is a broken machine, not a skip
    check(shutil.which("tar"), "tar(1) is here to make sparse layers")
    if shutil.which("tar"):
        for fmt in (("--format=gnu",), ("--format=posix", "--sparse-version=0.1"),
                    ("--format=posix", "--sparse-version=1.0")):
            layer = sparse_tar(*fmt)
            if not layer:
                check(False, "tar --sparse %s makes a layer" % " ".join(fmt))
                continue
            status, err = deploy_error(image(layer))
            check(status == 400 and "entry 'function/holes.bin': a sparse file" in err and names_no_path(err),
                  "a %d-byte layer with a sparse entry (tar %s) is refused, naming it" % (len(layer), " ".join(fmt)),
                  (status, err))
        holes = [os.path.join(dp, f) for dp, _, fs in os.walk(images) for f in fs if f == "holes.bin"]
        check(not holes, "no sparse entry was written out", holes)

    def member(tar_bytes, name):
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
            return t.getmember(name)

    def as_v7(tar_bytes, name):
        """The entry's ustar header without its magic (a v7 header): its data
        is read through libarchive instead of copied by the kernel."""
        b = bytearray(tar_bytes)
        at = member(tar_bytes, name).offset
        b[at + 257:at + 265] = bytes(8)
        b[at + 148:at + 156] = b" " * 8
        b[at + 148:at + 156] = b"%06o\0 " % sum(b[at:at + 512])
        return bytes(b)

    big = tar_of(*ok_files, ("function/big.bin", tarfile.REGTYPE, bytes(range(256)) * 400))
    cut = member(big, "function/big.bin").offset_data + 5000
    for what, layer in (("copied by the kernel", big[:cut]),
                        ("read through libarchive", as_v7(big, "function/big.bin")[:cut])):
        status, err = deploy_error(image(layer))
        check(status == 400 and "entry 'function/big.bin': " in err and "truncated" in err.lower() and names_no_path(err),
              "a layer cut inside an entry's data (%s): 400 says truncated" % what, (status, err))

    clashes = {
        "a file, then a folder of that name":
            ([("function/a", tarfile.REGTYPE, b"x"), ("function/a", tarfile.DIRTYPE, None)],
             "entry 'function/a/': a folder where an earlier entry made a file"),
        "a file, then a file under it":
            ([("function/a", tarfile.REGTYPE, b"x"), ("function/a/b", tarfile.REGTYPE, b"y")],
             "entry 'function/a/b': a folder above it is a file"),
        "a folder, then a file of that name":
            ([("function/a", tarfile.DIRTYPE, None), ("function/a", tarfile.REGTYPE, b"x")],
             "entry 'function/a': appears twice"),
    }
    for what, (entries, want) in clashes.items():
        status, err = deploy_error(image(tar_of(*ok_files, *entries)))
        check(status == 400 and want in err and names_no_path(err), "a layer with %s: 400 naming the entry" % what,
              (status, err))
    across = {
        "a file, then a folder in a later layer":
            ([tar_of(*ok_files, ("function/a", tarfile.REGTYPE, b"x")), tar_of(("function/a/b", tarfile.REGTYPE, b"y"))],
             "'function/a': a folder here, a file in an earlier layer"),
        "a folder, then a file in a later layer":
            ([tar_of(*ok_files, ("function/a/b", tarfile.REGTYPE, b"y")), tar_of(("function/a", tarfile.REGTYPE, b"x"))],
             "'function/a': a file here, a folder in an earlier layer"),
    }
    for what, (tars, want) in across.items():
        status, err = deploy_error(image(tars))
        check(status == 400 and want in err and names_no_path(err), "an image with %s: 400 naming the path" % what,
              (status, err))
    leftovers = [n for sub in ("layers", "functions") for n in os.listdir(os.path.join(images, sub)) if n.startswith(".tmp")]
    check(not leftovers, "these refusals leave no temporary folder either", leftovers)

    # a well-formed image of many files: each unpacked byte for byte
    files = {"function/fc.yaml": b"name: multi\nhandler: handler.so\n",
             "function/handler.so": open(handler_so("echo"), "rb").read(),
             "function/empty": b"",
             "function/" + "long-name-" * 20 + "/w.bin": bytes((i * 131 + 7) & 0xFF for i in range(70000)),
             "function/sub/odd.bin": os.urandom(12345)}
    layer = tar_of(*[(n, tarfile.REGTYPE, b) for n, b in files.items()])
    digest = image(layer)
    r = d.request("POST", "/admin/functions", json.dumps({"image": digest}).encode(), auth)
    check(r.status == 400 and "names evil" in r.json().get("error", ""), "an fc.yaml whose name differs from the config's: 400", r)
    config = json.dumps({"thaw": {"name": "multi", "handler": "handler.so"}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer)}]}).encode()
    r = d.request("POST", "/admin/functions", json.dumps({"image": put(manifest)}).encode(), auth)
    check(r.status == 201, "an image of many files deploys", r)
    root = os.path.join(images, "functions", sha(manifest)[7:])
    same = all(os.path.exists(os.path.join(root, n)) and open(os.path.join(root, n), "rb").read() == b
               for n, b in files.items())
    check(same, "every file (long pax names, empty, odd sizes) is unpacked byte for byte", sorted(files))
    r = d.request("POST", "/multi/", b"multi")
    check(r.status == 200 and r.body == b"multi", "and it serves", r)

    garbage = bytes((i * 7919 + 13) & 0xFF for i in range(8192))
    r = d.request("POST", "/admin/functions", json.dumps({"image": image(garbage)}).encode(), auth)
    check(r.status == 400 and "tar" in r.json().get("error", ""), "a garbage layer: 400 not a tar", r)
    r = d.request("POST", "/admin/functions", json.dumps({"image": image(tar_of(*ok_files), handler="../x")}).encode(), auth)
    check(r.status == 400 and "thaw.handler" in r.json().get("error", ""), "a config whose handler escapes: 400", r)
    for schema in (1, 2.5, "2", None, True):
        r = d.request("POST", "/admin/functions", json.dumps({"image": image(tar_of(*ok_files), schema=schema)}).encode(), auth)
        check(r.status == 400 and "schemaVersion" in r.json().get("error", ""),
              "a manifest with schemaVersion %s: 400" % json.dumps(schema), r)
    r = d.request("POST", "/admin/functions", json.dumps({"image": image(tar_of(*ok_files), layer_type="application/vnd.oci.image.layer.v1.tar+zstd")}).encode(), auth)
    check(r.status == 400 and "uncompressed tar" in r.json().get("error", ""), "a layer type thaw does not read: 400", r)
    r = d.request("POST", "/admin/functions", json.dumps({"image": put(b"{}")}).encode(), auth)
    check(r.status == 400, "a manifest that is no manifest: 400", r)
    missing = image(tar_of(*ok_files), handler="not-there.so")
    r = d.request("POST", "/admin/functions", json.dumps({"image": missing}).encode(), auth)
    check(r.status == 400 and "handler not-there.so is not in the image" in r.json().get("error", ""),
          "a config naming a handler the image lacks: 400 (a bad image, not a missing blob)", r)
    check(not os.path.exists(os.path.join(d.state_dir, "images", "functions", missing[7:])),
          "the refused image leaves no folder behind")
    r = d.request("POST", "/admin/functions", json.dumps({"image": sha(b"never uploaded")}).encode(), auth)
    check(r.status == 404 and "not uploaded" in r.json().get("error", ""), "an image never uploaded: 404", r)
    r = d.request("GET", "/admin/functions/evil", None, auth)
    check(r.status == 404, "no refused image became a function", r)
    r = d.request("POST", "/echo/", b"still")
    check(r.status == 200 and r.body == b"still", "echo still serves after all that", r)

    # --- restart: the images are replayed from the journal ---------------------
    d.restart()
    r = d.request("POST", "/echo/", b"again")
    check(r.status == 200 and r.body == b"again", "after a restart echo serves from its image", r)
    if not no_ocr:
        r = d.request("GET", "/ocr_batch/health", timeout=60)
        check(r.status == 200, "after a restart ocr_batch serves from its image", r)
        rc, out, err = thaw(d, "history", "ocr_batch")
        check(rc == 0 and re.search(r"^\* 3\s+ready", out, re.M), "after a restart version 3 still serves", out)

    # thaw rm, then a restart frees what no version uses any more
    for name in ("multi",) if no_ocr else ("ocr_batch", "multi"):
        rc, out, err = thaw(d, "rm", name)
        check(rc == 0, "thaw rm " + name, (rc, out, err))
    echo_image = json.loads(d.request("GET", "/admin/functions/echo", None, auth).body)["image"]["digest"]
    d.restart()
    check("removed what no deployed version uses" in d.logs() and "cannot redeploy" not in d.logs(),
          "the restart removes the unused images, without replaying what was removed", d.logs()[-2000:])
    left = {sub: sorted(os.listdir(os.path.join(images, sub))) for sub in ("functions", "layers")}
    check(left["functions"] == [echo_image[7:]] and len(left["layers"]) == 1 and
          len(os.listdir(os.path.join(images, "blobs", "sha256"))) == 2,
          "left: echo's image folder, its one layer, its manifest and config", left)
    r = d.request("POST", "/echo/", b"after gc")
    check(r.status == 200 and r.body == b"after gc", "echo serves after the clean-up", r)
    r = d.request("GET", "/multi/")
    check(r.status == 404, "the removed function stays removed", r)
    if not no_ocr:
        rc, out, err = thaw(d, "deploy", ocr_dir, timeout=300)
        check(rc == 0 and "ocr_batch version 1 serves" in out and re.search(r"model layer .* uploaded in", out),
              "a new deploy of the removed name uploads again and starts at version 1", (rc, out, err))

shutil.rmtree(work, ignore_errors=True)
finish()
