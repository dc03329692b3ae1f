"""End to end: gRPC over h2c on the daemon's HTTP port with real clients
(Debian's python3-grpcio, stubs compiled by protoc + grpc_python_plugin from
proto/): KServe GRPCInferenceService (ServerLive/Ready/Metadata, ModelReady,
ModelMetadata, ModelInfer with contents and raw_input_contents) and TF
Serving PredictionService/Predict (float_val and tensor_content) and
ModelService/GetModelStatus on half_plus_two and the MLP; results equal to
the REST path bit for bit; errors: unknown model NOT_FOUND, wrong datatype
or shape INVALID_ARGUMENT naming the input, oversized RESOURCE_EXHAUSTED,
deadline DEADLINE_EXCEEDED with the instance recycled, a cancelled call
stops the request."""
import json
import re
import math
import os
import shutil
import struct
import subprocess
import sys
import time

# grpcio is Debian's (python3-grpcio): the python3 on PATH may lack it
try:
    import grpc  # noqa: F401
except ImportError:
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
from thawtest import BUILD, Daemon, check, finish, free_port, grpc_stubs, handler_so, skip, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(BUILD, "tools", "gen_weights")
for need in (os.path.join(BUILD, "thaw"), handler_so("predict"), handler_so("fault"), GEN):
    if not os.path.exists(need):
        skip("missing " + need)
for tool in ("protoc", "grpc_python_plugin"):
    if not shutil.which(tool):
        skip("no " + tool + " (protobuf-compiler, protobuf-compiler-grpc)")
try:
    import grpc
except ImportError:
    skip("no python3-grpcio")

stubs = grpc_stubs()
import grpc_service_pb2 as kpb  # noqa: E402
import grpc_service_pb2_grpc as kgrpc  # noqa: E402
from tensorflow.core.framework import tensor_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2 as tpb  # noqa: E402
from tensorflow_serving.apis import predict_pb2_grpc as tgrpc  # noqa: E402

PREDICT = handler_so("predict")
HALF_FILE = os.path.join(ROOT, "examples", "half_plus_two", "half_plus_two.safetensors")
HALF = {"handler": PREDICT, "environmentVariables": {"MODEL": "mlp", "WEIGHTS": HALF_FILE}}
MLP = {"handler": PREDICT, "environmentVariables": {
    "MODEL": "mlp", "WEIGHTS": "w.safetensors", "PREDICT_DEVICE": "cpu"}}
SLOW = {"handler": handler_so("fault"), "timeout": 60, "scalingConfig": {"maxInstances": 1},
        "environmentVariables": {"FAULT_GRPC_WORK_MS": "20000"}}
LATE = {"handler": handler_so("fault"), "timeout": 2, "scalingConfig": {"maxInstances": 1},
        "environmentVariables": {"FAULT_GRPC_WORK_MS": "20000"}}
LAYERS = [8, 16, 4]


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def code_of(fn):
    try:
        fn()
        return None, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


def tf_tensor(rows, content):
    t = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_FLOAT)
    t.tensor_shape.dim.add(size=len(rows))
    if isinstance(rows[0], list):
        t.tensor_shape.dim.add(size=len(rows[0]))
    flat = [v for r in rows for v in (r if isinstance(r, list) else [r])]
    if content:
        t.tensor_content = struct.pack("<%df" % len(flat), *flat)
    else:
        t.float_val.extend(flat)
    return t


d = Daemon({"half": HALF, "mlp": MLP, "slow": SLOW, "late": LATE})
subprocess.run([GEN, os.path.join(d.fn_dir, "mlp", "w.safetensors"), "--layers",
                ",".join(map(str, LAYERS)), "--seed", "5"], check=True, stdout=subprocess.DEVNULL)
with d:
    ch = grpc.insecure_channel("127.0.0.1:%d" % d.port)
    k = kgrpc.GRPCInferenceServiceStub(ch)
    p = tgrpc.PredictionServiceStub(ch)
    m = tgrpc.ModelServiceStub(ch)

    check(k.ServerLive(kpb.ServerLiveRequest(), timeout=10).live, "ServerLive")
    check(k.ServerReady(kpb.ServerReadyRequest(), timeout=10).ready, "ServerReady")
    meta = k.ServerMetadata(kpb.ServerMetadataRequest(), timeout=10)
    check(meta.name == "thaw", "ServerMetadata", meta)
    deadline = time.time() + 30
    while True:  # the first checkpoint: UNAVAILABLE until it is done
        c, why = code_of(lambda: k.ModelReady(kpb.ModelReadyRequest(name="mlp"), timeout=10))
        if c != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
            break
        time.sleep(0.2)
    check(k.ModelReady(kpb.ModelReadyRequest(name="half"), timeout=10).ready, "ModelReady")
    mm = k.ModelMetadata(kpb.ModelMetadataRequest(name="mlp"), timeout=10)
    check(mm.name == "mlp" and list(mm.versions) == ["1"] and mm.inputs[0].name == "x" and
          mm.inputs[0].datatype == "FP32" and list(mm.inputs[0].shape) == [-1, 8] and
          list(mm.outputs[0].shape) == [-1, 4], "ModelMetadata", mm)

    # TF Serving Predict on half_plus_two: float_val and tensor_content
    for content in (False, True):
        req = tpb.PredictRequest()
        req.model_spec.name = "half"
        req.inputs["x"].CopyFrom(tf_tensor([1.0, 2.0, 5.0], content))
        r = p.Predict(req, timeout=10)
        y = r.outputs["y"]
        check(list(y.float_val) == [2.5, 3.0, 4.5] and [dd.size for dd in y.tensor_shape.dim] == [3] and
              r.model_spec.name == "half" and r.model_spec.version.value == 1,
              "Predict half_plus_two (%s)" % ("tensor_content" if content else "float_val"), r)

    # the MLP: Predict, KServe contents and raw_input_contents == REST :predict bit for bit
    xs = [[f32(math.cos(i * 5 + j) * 3) for j in range(LAYERS[0])] for i in range(4)]
    flat = [v for row in xs for v in row]
    rest = d.request("POST", "/v1/models/mlp:predict", body=json.dumps({"instances": xs}).encode())
    want = [f32(v) for row in rest.json()["predictions"] for v in row]
    req = tpb.PredictRequest()
    req.model_spec.name = "mlp"
    req.inputs["x"].CopyFrom(tf_tensor(xs, True))
    r = p.Predict(req, timeout=10)
    check(list(r.outputs["y"].float_val) == want, "Predict mlp == REST bit for bit", r)

    inp = kpb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[4, 8])
    inp.contents.fp32_contents.extend(flat)
    r = k.ModelInfer(kpb.ModelInferRequest(model_name="mlp", id="7", inputs=[inp]), timeout=10)
    got = list(struct.unpack("<16f", r.raw_output_contents[0])) if r.raw_output_contents else []
    check(r.id == "7" and r.outputs[0].name == "y" and list(r.outputs[0].shape) == [4, 4] and got == want,
          "ModelInfer contents == REST bit for bit", r)
    inp = kpb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[4, 8])
    r = k.ModelInfer(kpb.ModelInferRequest(model_name="mlp", inputs=[inp], outputs=[
        kpb.ModelInferRequest.InferRequestedOutputTensor(name="y")],
        raw_input_contents=[struct.pack("<32f", *flat)]), timeout=10)
    got = list(struct.unpack("<16f", r.raw_output_contents[0])) if r.raw_output_contents else []
    check(got == want, "ModelInfer raw_input_contents == REST bit for bit", r)
    req = tpb.GetModelMetadataRequest(model_spec=tpb.ModelSpec(name="mlp"), metadata_field=["signature_def"])
    md = p.GetModelMetadata(req, timeout=10)
    sigmap = tpb.SignatureDefMap()
    unpacked = md.metadata["signature_def"].Unpack(sigmap)
    sig = sigmap.signature_def["serving_default"]
    check(unpacked and sig.inputs["x"].dtype == tensor_pb2.DT_FLOAT and
          [dd.size for dd in sig.inputs["x"].tensor_shape.dim] == [-1, 8] and sig.inputs["x"].name == "x:0" and
          [dd.size for dd in sig.outputs["y"].tensor_shape.dim] == [-1, 4] and
          sig.method_name == "tensorflow/serving/predict" and md.model_spec.name == "mlp",
          "GetModelMetadata: signature_def", md)
    st = m.GetModelStatus(tpb.GetModelStatusRequest(model_spec=tpb.ModelSpec(name="mlp")), timeout=10)
    check(len(st.model_version_status) == 1 and st.model_version_status[0].version == 1 and
          st.model_version_status[0].state == tpb.ModelVersionStatus.AVAILABLE, "GetModelStatus", st)

    before = d.metrics().get('thaw_requests_total{function="mlp",code="200"}', 0)
    k.ModelInfer(kpb.ModelInferRequest(model_name="mlp", inputs=[inp], raw_input_contents=[
        struct.pack("<32f", *flat)]), timeout=10)
    after = d.metrics().get('thaw_requests_total{function="mlp",code="200"}', 0)
    check(after == before + 1, "a gRPC call counts in thaw_requests_total", (before, after))
    m = d.metrics()
    check(m.get('thaw_requests_by_protocol_total{function="mlp",protocol="kserve_grpc"}', 0) >= 3 and
          m.get('thaw_requests_by_protocol_total{function="mlp",protocol="tfserving_grpc"}', 0) >= 1 and
          m.get('thaw_requests_by_protocol_total{function="mlp",protocol="tfserving_rest"}', 0) >= 1,
          "metrics by protocol", {k: v for k, v in m.items() if "by_protocol" in k})

    check(re.search(r'"function":"mlp","method":"POST","protocol":"grpc","path":"/inference.GRPCInferenceService/ModelInfer","status":200,"grpc_status":0', d.logs()),
          "a gRPC call has its access log line")

    # errors
    c, why = code_of(lambda: k.ModelInfer(kpb.ModelInferRequest(model_name="nosuch"), timeout=10))
    check(c == grpc.StatusCode.NOT_FOUND and "nosuch" in why, "unknown model: NOT_FOUND", (c, why))
    req = tpb.PredictRequest()
    req.model_spec.name = "nosuch"
    c, why = code_of(lambda: p.Predict(req, timeout=10))
    check(c == grpc.StatusCode.NOT_FOUND, "Predict unknown model: NOT_FOUND", (c, why))
    inp = kpb.ModelInferRequest.InferInputTensor(name="x", datatype="FP64", shape=[1, 8])
    inp.contents.fp64_contents.extend([0.0] * 8)
    c, why = code_of(lambda: k.ModelInfer(kpb.ModelInferRequest(model_name="mlp", inputs=[inp]), timeout=10))
    check(c == grpc.StatusCode.INVALID_ARGUMENT and "input 'x': datatype FP64, expected FP32" in why,
          "wrong datatype: INVALID_ARGUMENT naming the input", (c, why))
    inp = kpb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 3])
    inp.contents.fp32_contents.extend([0.0] * 3)
    c, why = code_of(lambda: k.ModelInfer(kpb.ModelInferRequest(model_name="mlp", inputs=[inp]), timeout=10))
    check(c == grpc.StatusCode.INVALID_ARGUMENT and "input 'x': shape [1, 3]" in why,
          "wrong shape: INVALID_ARGUMENT naming the input", (c, why))
    inp = kpb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2, 8])
    c, why = code_of(lambda: k.ModelInfer(kpb.ModelInferRequest(model_name="mlp", inputs=[inp],
                                                                 raw_input_contents=[b"\0" * 12]), timeout=10))
    check(c == grpc.StatusCode.INVALID_ARGUMENT and "input 'x'" in why, "raw contents too short: INVALID_ARGUMENT",
          (c, why))
    big = kpb.ModelInferRequest(model_name="mlp", inputs=[kpb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=[1, 8])], raw_input_contents=[b"\0" * (33 << 20)])
    c, why = code_of(lambda: k.ModelInfer(big, timeout=30))
    check(c == grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized message: RESOURCE_EXHAUSTED", (c, why))

    # a cancelled call stops the request: the fault handler works 20 s on a
    # gRPC call, watching thaw_cancelled()
    slow = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    msg = kpb.ModelInferRequest(model_name="slow").SerializeToString()
    fut = slow.future(msg, timeout=30)
    time.sleep(1.0)
    fut.cancel()
    said = wait_for(lambda: re.search(r"work cancelled after (\d+) ms", d.logs()), 10)
    check(said and int(said.group(1)) < 5000, "cancelled call: the handler saw it and stopped",
          said and said.group(0))

    # deadline: the function's timeout (2 s) passes before the client's
    # (10 s): the daemon answers DEADLINE_EXCEEDED and recycles the instance
    t0 = time.time()
    c, why = code_of(lambda: k.ModelInfer(kpb.ModelInferRequest(model_name="late"), timeout=10))
    check(c == grpc.StatusCode.DEADLINE_EXCEEDED and "did not answer within its deadline" in why and
          time.time() - t0 < 8, "deadline: DEADLINE_EXCEEDED from the daemon", (c, why))
    check(wait_for(lambda: "instance recycled after a request passed its deadline" in d.logs(), 10),
          "deadline: the instance is recycled")
    c, why = code_of(lambda: k.ModelInfer(kpb.ModelInferRequest(model_name="late"), timeout=10))
    check(c == grpc.StatusCode.DEADLINE_EXCEEDED and "did not answer" in why,
          "deadline again on a fresh instance (maxInstances 1)", (c, why))
    # grpc-timeout shorter than the function's: the call ends by then (the
    # client's deadline and the daemon's race: either side may say it)
    t0 = time.time()
    c, why = code_of(lambda: k.ModelInfer(kpb.ModelInferRequest(model_name="slow"), timeout=1.0))
    check(c == grpc.StatusCode.DEADLINE_EXCEEDED and time.time() - t0 < 5, "grpc-timeout: DEADLINE_EXCEEDED",
          (c, why))
# --grpc-port: a second port that speaks gRPC (h2c) only as far as the
# client is concerned (HTTP/1.1 works there too: the preface decides)
gport = free_port()
with Daemon({"half": HALF}, args=("--grpc-port", str(gport), "--idle-timeout", "1500")) as d2:
    ch2 = grpc.insecure_channel("127.0.0.1:%d" % gport)
    req = tpb.PredictRequest()
    req.model_spec.name = "half"
    req.inputs["x"].CopyFrom(tf_tensor([4.0], False))
    deadline = time.time() + 30
    while True:
        try:
            r = tgrpc.PredictionServiceStub(ch2).Predict(req, timeout=10)
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                r = e
                break
            time.sleep(0.2)
    check(hasattr(r, "outputs") and list(r.outputs["y"].float_val) == [4.0], "--grpc-port serves Predict", r)
    check("gRPC (h2c) also on" in d2.logs(), "the daemon logs its gRPC port")
    # an idle HTTP/2 connection closes after --idle-timeout; the channel
    # reconnects by itself
    time.sleep(3)
    conns = d2.metrics().get("thaw_connections")
    check(conns == 1, "idle HTTP/2 connection closed (only the metrics request's is open)", conns)
    r = tgrpc.PredictionServiceStub(ch2).Predict(req, timeout=10)
    check(list(r.outputs["y"].float_val) == [4.0], "the channel works again after the idle close", r)

# httpTrigger.authType: function over gRPC: the function's invoke token or
# the admin token in metadata (authorization: Bearer, or x-thaw-token),
# UNAUTHENTICATED otherwise; tensorecho refuses a call whose request still
# carries either header, so an answer proves the handler never saw them
ECHO = handler_so("tensorecho")
PRIV = {"handler": ECHO, "httpTrigger": {"authType": "function"}}
with Daemon({"priv": PRIV, "priv2": PRIV, "echo": {"handler": ECHO}}) as d3:
    admin = open(os.path.join(d3.state_dir, "admin.token")).read().strip()
    ftok = d3.request("GET", "/admin/functions/priv", headers={"X-Thaw-Token": admin}).json()["invoke_token"]
    ftok2 = d3.request("GET", "/admin/functions/priv2", headers={"X-Thaw-Token": admin}).json()["invoke_token"]
    k3 = kgrpc.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:%d" % d3.port))
    inp = kpb.ModelInferRequest.InferInputTensor(name="s", datatype="BYTES", shape=[2])
    inp.contents.bytes_contents.extend([b"hi", b"\xff\x00"])
    call = kpb.ModelInferRequest(model_name="priv", inputs=[inp])

    def infer(md):
        deadline = time.time() + 30
        while True:  # UNAVAILABLE until the first instance is ready
            try:
                return k3.ModelInfer(call, timeout=10, metadata=md), None
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                    return None, (e.code(), e.details())
                time.sleep(0.2)
    for what, md in (("its invoke token as Bearer", [("authorization", "Bearer " + ftok)]),
                     ("its invoke token as x-thaw-token", [("x-thaw-token", ftok)]),
                     ("the admin token as Bearer", [("authorization", "Bearer " + admin)]),
                     ("the admin token as x-thaw-token", [("x-thaw-token", admin)])):
        r, err = infer(md)
        check(r is not None and r.raw_output_contents[0] == b"\x02\0\0\0hi\x02\0\0\0\xff\x00",
              "authType function over gRPC: %s opens it, the handler never sees it" % what, (r, err))
    for what, md in (("no token", []), ("another function's token", [("x-thaw-token", ftok2)]),
                     ("a wrong token", [("authorization", "Bearer " + "0" * 64)]),
                     ("not Bearer", [("authorization", "Basic " + ftok)]),
                     ("a token too long", [("x-thaw-token", ftok * 4)]),
                     ("a wrong x-thaw-token beside a good Bearer",
                      [("x-thaw-token", "nope"), ("authorization", "Bearer " + ftok)])):
        r, err = infer(md)
        check(r is None and err[0] == grpc.StatusCode.UNAUTHENTICATED and "token" in err[1],
              "authType function over gRPC: %s is UNAUTHENTICATED" % what, (r, err))

    # BYTES through TF Serving REST: plain strings and {"b64": ...} in;
    # out as strings where UTF-8, {"b64": ...} where not (tensorecho echoes)
    def rest(doc):
        deadline = time.time() + 30
        while True:
            r = d3.request("POST", "/v1/models/echo:predict", body=json.dumps(doc).encode())
            if r.status != 503 or time.time() > deadline:
                return r
            time.sleep(0.2)
    r = rest({"instances": ["hi", {"b64": "/wA="}, "\u00e9t\u00e9"]})
    check(r.status == 200 and r.body == b'{"predictions": ["hi", {"b64": "/wA="}, "\xc3\xa9t\xc3\xa9"]}',
          "TF Serving REST: BYTES row form, b64 in and out", r)
    r = rest({"signature_name": "serving_default", "inputs": {"s": [[{"b64": "aGk="}, "x"], ["\"q\"", {"b64": ""}]]}})
    check(r.status == 200 and r.body == b'{"outputs": [["hi", "x"], ["\\"q\\"", ""]]}',
          "TF Serving REST: BYTES columnar, named, 2-D", r)
    r = rest({"instances": [{"s": {"b64": "gA=="}}, {"s": "ok"}]})
    check(r.status == 200 and r.body == b'{"predictions": [{"b64": "gA=="}, "ok"]}',
          "TF Serving REST: BYTES rows as {name: value} objects", r)
    for doc, why in (({"instances": [{"b64": "!!"}]}, "invalid base64"),
                     ({"instances": ["a", ["b"]]}, "input 's'"),
                     ({"instances": [1.5]}, "not a string"),
                     ({"instances": ["a"], "inputs": ["b"]}, "both")):
        r = rest(doc)
        check(r.status == 400 and why in r.json().get("error", ""), "TF Serving REST: BYTES 400: " + why, r)

    # BYTES through TF Serving gRPC: string_val in and out
    req = tpb.PredictRequest()
    req.model_spec.name = "echo"
    t = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_STRING)
    t.tensor_shape.dim.add(size=3)
    t.string_val.extend([b"hi", b"\xff\x00", b""])
    req.inputs["s"].CopyFrom(t)
    r = tgrpc.PredictionServiceStub(grpc.insecure_channel("127.0.0.1:%d" % d3.port)).Predict(req, timeout=10)
    y = r.outputs["s"]
    check(y.dtype == tensor_pb2.DT_STRING and list(y.string_val) == [b"hi", b"\xff\x00", b""] and
          [dd.size for dd in y.tensor_shape.dim] == [3], "TF Serving gRPC: BYTES answered as string_val", r)

finish()
