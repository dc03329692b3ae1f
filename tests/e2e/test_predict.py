"""End to end: the predict handler behind the daemon's TF Serving route
/v1/models/{fn}:predict -- half_plus_two's exact answer (a model file,
examples/half_plus_two: one linear layer, weight 0.5, bias 2), the status and
metadata endpoints, TF Serving errors, an MLP from a safetensors file made by
gen_weights checked against a pure-Python forward pass, and a corrupt weights
file failing init with a clear message."""
import json
import math
import os
import struct
import subprocess
import threading
import time

from thawtest import BUILD, ROOT, Daemon, check, criu_works, finish, handler_so, need_built, skip_part

GEN = os.path.join(BUILD, "tools", "gen_weights")
need_built(os.path.join(BUILD, "thaw"), handler_so("predict"), GEN)

PREDICT = handler_so("predict")
HALF_FILE = os.path.join(ROOT, "examples", "half_plus_two", "half_plus_two.safetensors")
HALF = {"handler": PREDICT, "environmentVariables": {"MODEL": "mlp", "WEIGHTS": HALF_FILE}}
MLP = {"handler": PREDICT, "instanceConcurrency": 4, "environmentVariables": {
    "MODEL": "mlp", "WEIGHTS": "w.safetensors", "PREDICT_DEVICE": "auto", "PREDICT_MAX_BATCH": "4"}}
BROKEN = {"handler": PREDICT, "environmentVariables": {"MODEL": "mlp", "WEIGHTS": "w.safetensors"}}
LAYERS = [8, 16, 12, 4]


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = (t["shape"], struct.unpack("<%df" % ((e - b) // 4), data[b:e]))
    return out


def forward(tensors, x):
    layer = 0
    while "layers.%d.weight" % layer in tensors:
        (out_w, in_w), w = tensors["layers.%d.weight" % layer]
        _, b = tensors["layers.%d.bias" % layer]
        y = [b[o] + sum(w[o * in_w + i] * x[i] for i in range(in_w)) for o in range(out_w)]
        layer += 1
        if "layers.%d.weight" % layer in tensors:
            x = [max(v, 0.0) for v in y]
        else:
            m = max(y)
            e = [math.exp(v - m) for v in y]
            s = sum(e)
            return [v / s for v in e]


def settle(d, fn, body, limit=30):
    """Waits out the function's first checkpoint: the daemon reports ready
    when init ends but answers 503 while it is dumping the warm instance."""
    deadline = time.time() + limit
    while True:
        r = d.request("POST", "/v1/models/%s:predict" % fn, body=body)
        if r.status != 503 or time.time() > deadline:
            return r
        time.sleep(0.1)


def close(a, b, rel=1e-5):
    return len(a) == len(b) and all(abs(p - q) <= rel * abs(q) + 1e-7 for p, q in zip(a, b))


d = Daemon({"half": HALF, "mlp": MLP})
weights = os.path.join(d.fn_dir, "mlp", "w.safetensors")
subprocess.run([GEN, weights, "--layers", ",".join(map(str, LAYERS)), "--seed", "7"],
               check=True, stdout=subprocess.DEVNULL)
with d:
    settle(d, "half", b'{"instances": [0]}')
    settle(d, "mlp", json.dumps({"instances": [[0] * LAYERS[0]]}).encode())
    # half_plus_two: TF Serving's own example, byte for byte
    r = d.request("POST", "/v1/models/half:predict", body=b'{"instances": [1.0, 2.0, 5.0]}',
                  headers={"Content-Type": "application/json"})
    check(r.status == 200 and r.body == b'{"predictions": [2.5, 3.0, 4.5]}', "half_plus_two exact", r)
    check((r.header("content-type") or "").startswith("application/json"), "json content type", r.headers)
    r = d.request("POST", "/v1/models/half/versions/1:predict", body=b'{"inputs": [[1.0], [-2]]}')
    check(r.status == 200 and r.json() == {"outputs": [[2.5], [1.0]]}, "columnar with version", r)
    r = d.request("GET", "/v1/models/half")
    check(r.status == 200 and r.json() == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                           "status": {"error_code": "OK", "error_message": ""}}]},
          "model status in TF Serving's shape", r)
    r = d.request("GET", "/v1/models/half/metadata")
    check(r.status == 200 and r.json()["model_spec"]["name"] == "half", "metadata", r)

    # TF Serving errors: 400 {"error": ...}
    for what, body in [("both instances and inputs", b'{"instances": [1], "inputs": [1]}'),
                       ("neither", b'{"signature_name": "serving_default"}'),
                       ("invalid JSON", b'{"instances": [1,'),
                       ("ragged", b'{"instances": [[1, 2], [3]]}'),
                       ("not numbers", b'{"instances": ["a"]}')]:
        r = d.request("POST", "/v1/models/half:predict", body=body)
        check(r.status == 400 and isinstance(r.json().get("error"), str), "400 error: " + what, r)
    r = d.request("POST", "/v1/models/half:classify", body=b'{"examples": [{"x": 1.0}]}')
    check(r.status == 400 and "error" in r.json(), ":classify unsupported: 400", r)
    r = d.request("POST", "/v1/models/half/versions/2:predict", body=b'{"instances": [1.0]}')
    check(r.status == 404 and "error" in r.json(), "unknown version: 404", r)

    # MLP: batch of 5 (two chunks of PREDICT_MAX_BATCH=4) against Python
    tensors = read_safetensors(weights)
    xs = [[math.sin(i * 7 + j) * 2 for j in range(LAYERS[0])] for i in range(5)]
    want = [forward(tensors, x) for x in xs]
    r = d.request("POST", "/v1/models/mlp:predict", body=json.dumps({"instances": xs}).encode())
    got = r.json().get("predictions") if r.status == 200 else None
    check(got is not None and len(got) == 5 and all(close(g, w) for g, w in zip(got, want)),
          "mlp batch of 5 matches the Python forward pass", r)
    r = d.request("POST", "/v1/models/mlp:predict", body=json.dumps({"inputs": xs[:1]}).encode())
    check(r.status == 200 and close(r.json()["outputs"][0], want[0]), "mlp columnar", r)
    r = d.request("POST", "/v1/models/mlp:predict", body=json.dumps({"instances": [xs[0][:3]]}).encode())
    check(r.status == 400 and "error" in r.json(), "mlp wrong width: 400", r)
    r = d.request("GET", "/v1/models/mlp/metadata")
    check(r.status == 200 and '"size": "8"' in json.dumps(r.json()), "mlp metadata has the input width", r)
    check("predict: mlp 3 layers" in d.logs(), "init logs the network and device")
    if criu_works():
        skip_part("mlp restored from its snapshot: " + criu_works())
    else:  # decided by the machine, not by what the daemon did
        check("pool: mlp: snapshot of pid" in d.logs() and "restored in" in d.logs(),
              "CRIU works: mlp snapshotted and served by an instance restored from it")

    # instanceConcurrency 4: parallel requests of different sizes share the
    # model's scratch under its lock; each must get its own answer
    results = {}

    def worker(k):
        rows = xs[k % 5:] + xs[:k % 5]
        body = json.dumps({"instances": rows[:1 + k % 5]}).encode()
        got = []
        for _ in range(10):
            r = d.request("POST", "/v1/models/mlp:predict", body=body)
            got.append(r.status == 200 and all(close(g, forward(tensors, x))
                                               for g, x in zip(r.json()["predictions"], rows[:1 + k % 5])))
        results[k] = all(got)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(len(results) == 8 and all(results.values()), "8 clients x 10 requests at concurrency 4 all correct", results)

# a corrupt weights file: init fails with the parser's message, no crash
d = Daemon({"broken": BROKEN}, wait_ready=False)
bad = os.path.join(d.fn_dir, "broken", "w.safetensors")
subprocess.run([GEN, bad, "--layers", "8,4", "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
with open(bad, "r+b") as f:
    f.truncate(os.path.getsize(bad) - 9)
with d:
    deadline = time.time() + 10
    while time.time() < deadline:
        r = d.request("GET", "/readyz")
        err = r.json().get("functions", {}).get("broken", {}).get("error", "") if r.status == 503 else ""
        if err:
            break
        time.sleep(0.1)
    check("beyond" in err and "w.safetensors" in err, "readyz names the corrupt weights", r.body)
    r = d.request("POST", "/v1/models/broken:predict", body=b'{"instances": [[1]]}')
    check(r.status == 503, "corrupt model: 503", r)

finish()
