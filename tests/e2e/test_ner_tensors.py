"""End to end: the ner handler's tensor hook -- what the seed's TF Serving
BERT-BiLSTM-CRF model returns (logits [batch, steps, K], lengths [batch])
sent as tensors through KServe v2 REST and KServe gRPC (raw_input_contents)
gives the same tags and entities as POST /ner; metadata; errors naming the
input."""
import json
import os
import shutil
import struct
import sys
import time

# grpcio is Debian's (python3-grpcio): the python3 on PATH may lack it
try:
    import grpc  # noqa: F401
except ImportError:
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
from thawtest import BUILD, ROOT, Daemon, check, finish, grpc_stubs, handler_so, skip

NER = handler_so("ner")
for need in (os.path.join(BUILD, "thaw"), NER):
    if not os.path.exists(need):
        skip("missing " + need)
EXAMPLE = os.path.join(ROOT, "handlers", "ner", "example")
REQ = json.load(open(os.path.join(EXAMPLE, "request.json")))
K = len(open(os.path.join(EXAMPLE, "tags.txt")).read().split())
logits, lengths = REQ["logits"], REQ["lengths"]
B, T = len(logits), len(logits[0])
flat = [v for seq in logits for step in seq for v in step]

d = Daemon({"ner": {"handler": NER, "environmentVariables": {"NER_DEVICE": "cpu"}}})
for f in ("tags.txt", "transitions.json"):
    shutil.copy(os.path.join(EXAMPLE, f), os.path.join(d.fn_dir, "ner", f))
with d:
    deadline = time.time() + 30
    while d.request("GET", "/v2/models/ner/ready").status == 503 and time.time() < deadline:
        time.sleep(0.1)
    rest = d.request("POST", "/ner", body=json.dumps({"logits": logits, "lengths": lengths,
                                                       "return_tags": True}).encode())
    want = rest.json()
    want_tags = [[t for t in row] for row in want["tags"]]
    want_ents = [[{k: e[k] for k in ("start", "end", "type")} for e in seq] for seq in want["entities"]]
    check(any(want_ents), "the example has entities", want)

    r = d.request("GET", "/v2/models/ner")
    check(r.status == 200 and r.json()["inputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, -1, K]},
        {"name": "lengths", "datatype": "INT32", "shape": [-1]},
        {"name": "trans", "datatype": "FP32", "shape": [K + 1, K + 1]}], "metadata: logits, lengths, trans", r)

    doc = {"inputs": [{"name": "logits", "shape": [B, T, K], "datatype": "FP32", "data": logits},
                      {"name": "lengths", "shape": [B], "datatype": "INT32", "data": lengths}]}
    r = d.request("POST", "/v2/models/ner/infer", body=json.dumps(doc).encode())
    outs = {o["name"]: o for o in r.json().get("outputs", [])} if r.status == 200 else {}
    tags = outs.get("tags", {}).get("data", [])
    check(r.status == 200 and outs["tags"]["shape"] == [B, T], "KServe infer: tags [batch, steps]", r)
    # /ner's "tags" are names up to each length; the tensor has indices, -1 past
    names = open(os.path.join(EXAMPLE, "tags.txt")).read().split()
    as_names = [[names[t] if t < K else "O" for t in tags[b * T:(b + 1) * T] if t >= 0] for b in range(B)]
    check(as_names == want_tags, "KServe infer: the same tags as POST /ner", (as_names, want_tags))
    ents = [json.loads(s) for s in outs.get("entities", {}).get("data", [])]
    check(ents == want_ents, "KServe infer: the same entities as POST /ner", (ents, want_ents))

    # trans [K+1, K+1] beside logits and lengths, as the seed's model
    # returns it: the function's own matrix gives the same answer...
    TRANS = json.load(open(os.path.join(EXAMPLE, "transitions.json")))["transitions"]
    tdoc = json.loads(json.dumps(doc))
    tdoc["inputs"].append({"name": "trans", "shape": [K + 1, K + 1], "datatype": "FP32", "data": TRANS})
    r = d.request("POST", "/v2/models/ner/infer", body=json.dumps(tdoc).encode())
    o2 = {o["name"]: o for o in r.json().get("outputs", [])} if r.status == 200 else {}
    check(r.status == 200 and o2["tags"]["data"] == tags and
          [json.loads(x) for x in o2["entities"]["data"]] == want_ents,
          "trans input equal to TRANSITIONS: the same tags and entities", r)
    # ...and another matrix decides: every move into O scores 10000
    tdoc["inputs"][2]["data"] = [[10000.0 if j == 0 else 0.0 for j in range(K + 1)] for i in range(K + 1)]
    r = d.request("POST", "/v2/models/ner/infer", body=json.dumps(tdoc).encode())
    o2 = {o["name"]: o for o in r.json().get("outputs", [])} if r.status == 200 else {}
    check(r.status == 200 and all(t in (0, -1) for t in o2["tags"]["data"]) and
          o2["entities"]["data"] == ["[]"] * B, "trans input replaces the function's matrix", r)
    tdoc["inputs"][2]["shape"] = [K, K + 1]
    tdoc["inputs"][2]["data"] = [[0.0] * (K + 1)] * K
    r = d.request("POST", "/v2/models/ner/infer", body=json.dumps(tdoc).encode())
    check(r.status == 400 and "input 'trans'" in r.json()["error"], "trans of the wrong shape: 400", r)
    tdoc["inputs"][2]["shape"] = [K + 1, K + 1]
    tdoc["inputs"][2]["data"] = [[0.0] * (K + 1)] * (K + 1)
    tdoc["inputs"][2]["data"][1] = [1e39] + [0.0] * K
    r = d.request("POST", "/v2/models/ner/infer", body=json.dumps(tdoc).encode())
    check(r.status == 400 and "input 'trans'" in r.json().get("error", ""), "trans not finite: 400", r)

    doc["inputs"][1]["data"] = [T + 1, 0]
    r = d.request("POST", "/v2/models/ner/infer", body=json.dumps(doc).encode())
    check(r.status == 400 and "input 'lengths'" in r.json()["error"], "length past the steps: 400", r)
    doc["inputs"][0]["shape"] = [B, T, K + 1]
    doc["inputs"][1]["data"] = lengths
    r = d.request("POST", "/v2/models/ner/infer", body=json.dumps(doc).encode())
    check(r.status == 400 and "input 'logits'" in r.json()["error"], "wrong tag count: 400", r)

    # gRPC, raw_input_contents
    try:
        import grpc
    except ImportError:
        grpc = None
    if grpc and shutil.which("protoc") and shutil.which("grpc_python_plugin"):
        stubs = grpc_stubs()
        import grpc_service_pb2 as kpb
        import grpc_service_pb2_grpc as kgrpc
        k = kgrpc.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:%d" % d.port))
        req = kpb.ModelInferRequest(model_name="ner", inputs=[
            kpb.ModelInferRequest.InferInputTensor(name="logits", datatype="FP32", shape=[B, T, K]),
            kpb.ModelInferRequest.InferInputTensor(name="lengths", datatype="INT32", shape=[B])],
            raw_input_contents=[struct.pack("<%df" % len(flat), *flat), struct.pack("<%di" % B, *lengths)])
        r = k.ModelInfer(req, timeout=10)
        names_out = [o.name for o in r.outputs]
        raw = dict(zip(names_out, r.raw_output_contents))
        gtags = list(struct.unpack("<%di" % (B * T), raw["tags"]))
        check(gtags == tags, "gRPC ModelInfer: the same tags", (gtags, tags))
        ents, off, blob = [], 0, raw["entities"]
        while off < len(blob):
            (n,) = struct.unpack("<I", blob[off:off + 4])
            ents.append(json.loads(blob[off + 4:off + 4 + n]))
            off += 4 + n
        check(ents == want_ents, "gRPC ModelInfer: the same entities", ents)
        shutil.rmtree(stubs, ignore_errors=True)
    else:
        print("skip gRPC part: no grpcio or protoc")

# entity types are escaped in JSON: a type holding a quote and a backslash
q = Daemon({"nerq": {"handler": NER, "environmentVariables": {"NER_DEVICE": "cpu"}}})
with open(os.path.join(q.fn_dir, "nerq", "tags.txt"), "w") as f:
    f.write('O\nB-A"B\\\nI-A"B\\\n')
with open(os.path.join(q.fn_dir, "nerq", "transitions.json"), "w") as f:
    json.dump({"transitions": [[0.0] * 4] * 4}, f)
with q:
    deadline = time.time() + 30
    while q.request("GET", "/v2/models/nerq/ready").status == 503 and time.time() < deadline:
        time.sleep(0.1)
    doc = {"inputs": [{"name": "logits", "shape": [1, 2, 3], "datatype": "FP32", "data": [[[0, 5, 0], [0, 0, 5]]]},
                      {"name": "lengths", "shape": [1], "datatype": "INT32", "data": [2]}]}
    r = q.request("POST", "/v2/models/nerq/infer", body=json.dumps(doc).encode())
    outs = {o["name"]: o for o in r.json().get("outputs", [])} if r.status == 200 else {}
    try:
        ents = [json.loads(x) for x in outs["entities"]["data"]]
    except (KeyError, ValueError) as e:
        ents = e
    check(ents == [[{"start": 0, "end": 2, "type": 'A"B\\'}]], "infer: entity types escaped in JSON", (ents, r))
    r = q.request("POST", "/nerq", body=json.dumps({"logits": [[0, 5, 0], [0, 0, 5]]}).encode())
    check(r.status == 200 and r.json()["entities"] == [{"start": 0, "end": 2, "type": 'A"B\\'}],
          "POST /nerq: entity types escaped in JSON", r)
finish()
