"""End to end: KServe v2 REST over the tensor hook (host/kserve.c)
with the predict handler: server and model metadata, readiness, infer with
flat and nested data, outputs selection, id echoed, the binary tensor
extension both ways, results equal to TF Serving REST :predict bit for bit,
and errors (unknown model 404, wrong datatype/shape 400 naming the input)."""
import json
import math
import os
import struct
import subprocess
import time

from thawtest import ROOT, BUILD, Daemon, check, finish, handler_so, skip

GEN = os.path.join(BUILD, "tools", "gen_weights")
for need in (os.path.join(BUILD, "thaw"), handler_so("predict"), GEN):
    if not os.path.exists(need):
        skip("missing " + need)

PREDICT = handler_so("predict")
HALF_FILE = os.path.join(ROOT, "examples", "half_plus_two", "half_plus_two.safetensors")
HALF = {"handler": PREDICT, "environmentVariables": {"MODEL": "mlp", "WEIGHTS": HALF_FILE}}
MLP = {"handler": PREDICT, "environmentVariables": {
    "MODEL": "mlp", "WEIGHTS": "w.safetensors", "PREDICT_DEVICE": "cpu"}}
LAYERS = [8, 16, 4]


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def settle(d, fn, limit=30):
    deadline = time.time() + limit
    while True:
        r = d.request("GET", "/v2/models/%s/ready" % fn)
        if r.status != 503 or time.time() > deadline:
            return r
        time.sleep(0.1)


def infer(d, fn, doc, headers=None, raw=None):
    body = raw if raw is not None else json.dumps(doc).encode()
    return d.request("POST", "/v2/models/%s/infer" % fn, body=body,
                     headers=headers or {"Content-Type": "application/json"})


d = Daemon({"half": HALF, "mlp": MLP})
subprocess.run([GEN, os.path.join(d.fn_dir, "mlp", "w.safetensors"), "--layers",
                ",".join(map(str, LAYERS)), "--seed", "3"], check=True, stdout=subprocess.DEVNULL)
with d:
    r = settle(d, "half")
    check(r.status == 200 and r.json() == {"name": "half", "ready": True}, "model ready", r)
    settle(d, "mlp")
    r = d.request("GET", "/v2")
    check(r.status == 200 and r.json()["name"] == "thaw", "server metadata", r)
    r = d.request("GET", "/v2/health/live")
    check(r.status == 200, "live", r)
    r = d.request("GET", "/v2/models/mlp")
    check(r.status == 200 and r.json() == {
        "name": "mlp", "versions": ["1"], "platform": "thaw_mlp",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}, "mlp metadata", r)
    r = d.request("GET", "/v2/models/mlp/versions/1")
    check(r.status == 200 and r.json()["name"] == "mlp", "metadata with version", r)

    # half_plus_two: flat data, id echoed
    r = infer(d, "half", {"id": "42", "parameters": {"a": 1},
                          "inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0, 5.0]}]})
    check(r.status == 200 and r.json() == {"model_name": "half", "model_version": "1", "id": "42",
                                           "outputs": [{"name": "y", "datatype": "FP32", "shape": [3],
                                                        "data": [2.5, 3.0, 4.5]}]}, "half infer, id echoed", r)

    # mlp: nested data and outputs selection; equal to :predict bit for bit
    xs = [[f32(math.sin(i * 7 + j) * 2) for j in range(LAYERS[0])] for i in range(3)]
    r = infer(d, "mlp", {"inputs": [{"name": "x", "shape": [3, 8], "datatype": "FP32", "data": xs}],
                         "outputs": [{"name": "y"}]})
    check(r.status == 200 and r.json()["outputs"][0]["shape"] == [3, 4], "mlp infer nested", r)
    got = r.json()["outputs"][0]["data"] if r.status == 200 else []
    p = d.request("POST", "/v1/models/mlp:predict", body=json.dumps({"instances": xs}).encode())
    want = [v for row in p.json()["predictions"] for v in row]
    check([f32(v) for v in got] == [f32(v) for v in want], "KServe infer == TF Serving :predict bit for bit",
          (got, want))
    flat = [v for row in xs for v in row]
    # the same body with "parameters" takes the cJSON path, not the fast one
    r2 = infer(d, "mlp", {"inputs": [{"name": "x", "shape": [3, 8], "datatype": "FP32", "data": xs,
                                      "parameters": {}}], "outputs": [{"name": "y"}]})
    check(r2.status == 200 and r2.json()["outputs"][0]["data"] == got, "fast path == cJSON path", r2)
    odd = [[1e-45, 3.4028235e38, -0.0, 1.00000005, 123456789012345678901, 2.5e-38, 0.1, -7]]
    ra = infer(d, "mlp", {"id": "a", "inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": odd}]})
    rb = infer(d, "mlp", {"id": "a", "parameters": {}, "inputs": [{"name": "x", "shape": [1, 8],
                                                                   "datatype": "FP32", "data": odd}]})
    check(ra.status == 200 and ra.body == rb.body, "fast path == cJSON path on awkward numbers", (ra, rb))
    r = infer(d, "mlp", {"inputs": [{"name": "x", "shape": [3, 8], "datatype": "FP32", "data": flat}]})
    check(r.status == 200 and r.json()["outputs"][0]["data"] == got, "flat data == nested data", r)

    # the JSON form of ModelInferRequest (model_name, contents), answered as
    # ModelInferResponse in JSON: raw_output_contents in base64
    import base64
    r = infer(d, "mlp", {"model_name": "mlp", "id": "j", "inputs": [
        {"name": "x", "datatype": "FP32", "shape": ["3", "8"], "contents": {"fp32_contents": flat}}]})
    j = r.json() if r.status == 200 else {}
    raw = base64.b64decode(j.get("raw_output_contents", [""])[0])
    check(r.status == 200 and j.get("id") == "j" and j["outputs"][0]["shape"] == [3, 4] and
          list(struct.unpack("<12f", raw)) == [f32(v) for v in got], "ModelInferRequest as JSON", r)
    r = infer(d, "mlp", {"model_name": "mlp", "inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 8]}],
                         "raw_input_contents": [base64.b64encode(struct.pack("<24f", *flat)).decode()]})
    raw = base64.b64decode(r.json().get("raw_output_contents", [""])[0]) if r.status == 200 else b""
    check(raw == struct.pack("<12f", *[f32(v) for v in got]), "ModelInferRequest as JSON, raw_input_contents", r)

    # binary tensor extension, in and out
    hdr = json.dumps({"inputs": [{"name": "x", "shape": [3, 8], "datatype": "FP32",
                                  "parameters": {"binary_data_size": 3 * 8 * 4}}],
                      "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    raw = hdr + struct.pack("<24f", *flat)
    r = infer(d, "mlp", None, raw=raw, headers={"Content-Type": "application/octet-stream",
                                                "Inference-Header-Content-Length": str(len(hdr))})
    n = int(r.header("inference-header-content-length") or 0)
    meta = json.loads(r.body[:n]) if r.status == 200 else {}
    outs = meta.get("outputs", [{}])
    check(r.status == 200 and outs[0].get("parameters") == {"binary_data_size": 48}, "binary output header", r)
    check(list(struct.unpack("<12f", r.body[n:n + 48])) == [f32(v) for v in want] if r.status == 200 else False,
          "binary output == :predict bit for bit", r)

    # TF Serving REST is the host's too now (host/tfserving.c over
    # the same hook): a wrong width is the shared check's 400 naming the input
    r = d.request("POST", "/v1/models/mlp:predict", body=json.dumps({"instances": [[0.0] * 3]}).encode())
    check(r.status == 400 and "input 'x': shape [1, 3] does not match [-1, 8]" in r.json()["error"],
          "TF REST through the hook: 400 naming the input", r)
    r = d.request("GET", "/v1/models/half/metadata")
    sig = r.json()["metadata"]["signature_def"]["signature_def"]["serving_default"] if r.status == 200 else {}
    check(sig.get("inputs", {}).get("x", {}).get("dtype") == "DT_FLOAT", "TF REST metadata from the declared model", r)
    r = d.request("POST", "/v2/models/half/infer", body=b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,5]}]}')
    check(r.body == b'{"model_name":"half","model_version":"1","outputs":[{"name":"y","datatype":"FP32","shape":[3],'
                   b'"data":[2.5,3.0,4.5]}]}', "KServe half_plus_two byte for byte", r.body)

    # errors
    r = infer(d, "nosuch", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
    check(r.status == 404 and "error" in r.json(), "unknown model: 404", r)
    r = d.request("GET", "/v2/models/half/versions/7")
    check(r.status == 404 and "version" in r.json()["error"], "unknown version: 404", r)
    for what, doc, needle in [
        ("wrong datatype", {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", "data": [0] * 8}]},
         "input 'x': datatype FP64, expected FP32"),
        ("wrong shape", {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0] * 3}]},
         "input 'x': shape [1, 3] does not match [-1, 8]"),
        ("data does not fill the shape", {"inputs": [{"name": "x", "shape": [2, 8], "datatype": "FP32",
                                                      "data": [0] * 8}]}, "input 'x'"),
        ("not a number", {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32",
                                      "data": ["a"] * 8}]}, "input 'x'"),
        ("unknown input", {"inputs": [{"name": "q", "shape": [1], "datatype": "FP32", "data": [1]}]},
         "unknown input 'q'"),
        ("unknown output", {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [0] * 8}],
                            "outputs": [{"name": "z"}]}, "unknown output 'z'"),
    ]:
        r = infer(d, "mlp", doc)
        err = r.json().get("error", "") if r.body.startswith(b"{") else ""
        check(r.status == 400 and needle in err, "400: " + what, r)
    r = infer(d, "mlp", None, raw=b'{"inputs": [')
    check(r.status == 400 and "error" in r.json(), "invalid JSON: 400", r)
    r = infer(d, "mlp", None, raw=hdr, headers={"Inference-Header-Content-Length": str(len(hdr))})
    check(r.status == 400 and "input 'x'" in r.json()["error"], "binary data missing: 400", r)

finish()
