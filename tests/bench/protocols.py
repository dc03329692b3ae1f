"""MLP predict through every protocol thaw speaks for a tensor handler
(docs/benchmarks.md, "Protocols"): TF Serving REST :predict, KServe v2 REST
(JSON), KServe v2 REST binary tensor extension, KServe gRPC ModelInfer
(raw_input_contents) and TF Serving gRPC Predict (tensor_content), at batch
1 and 256, one client, one connection, requests one after another.

Per row: requests/s, p50/p99 latency, and CPU microseconds per request of
the daemon and of the instance (utime+stime from /proc of the daemon and of
the thaw-instance processes under it, over the row). Each answer is checked
against the first protocol's, bit for bit.

Usage: /usr/bin/python3 tests/bench/protocols.py [BUILD] [--layers 784,512,512,10]
       [--requests N (batch 1; batch 256 gets N/8)] [--threads 1]
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

ap = argparse.ArgumentParser()
ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
ap.add_argument("--layers", default="784,512,512,10")
ap.add_argument("--requests", type=int, default=400)
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
os.environ["THAW_BUILD"] = os.path.abspath(args.build)
from thawtest import Daemon, grpc_stubs, handler_so  # noqa: E402

try:
    import grpc
except ImportError:
    print("skipped: no python3-grpcio")
    sys.exit(77)
if not shutil.which("protoc") or not shutil.which("grpc_python_plugin"):
    print("skipped: no protoc / grpc_python_plugin")
    sys.exit(77)
stubs = grpc_stubs()
import grpc_service_pb2 as kpb  # noqa: E402
import grpc_service_pb2_grpc as kgrpc  # noqa: E402
from tensorflow.core.framework import tensor_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2 as tpb  # noqa: E402
from tensorflow_serving.apis import predict_pb2_grpc as tgrpc  # noqa: E402

LAYERS = [int(v) for v in args.layers.split(",")]
IN, OUT = LAYERS[0], LAYERS[-1]


def cpu_of(pid):
    """Seconds on CPU of every thread of pid (schedstat: ns), 0 once gone."""
    total = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    except OSError:
        pass
    return total / 1e9


def instance_pids(fn_dir):
    """The thaw-instance processes of this daemon's functions."""
    out, want = [], ("THAW_FUNCTION_DIR=" + fn_dir).encode()
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    if b"thaw-instance" not in f.read().split(b"\0")[0]:
                        continue
                with open("/proc/%s/environ" % p, "rb") as f:
                    if any(e.startswith(want) for e in f.read().split(b"\0")):
                        out.append(int(p))
            except OSError:
                pass
    return out


def rows(batch):
    return [[math.sin(r * 13 + c) for c in range(IN)] for r in range(batch)]


def f32s(vals):
    return list(struct.unpack("<%df" % len(vals), struct.pack("<%df" % len(vals), *vals)))


class Rest:
    def __init__(self, d):
        self.d, self.conn = d, d.connect(timeout=60)

    def post(self, path, body, headers=None):
        return self.d.request("POST", path, body=body, headers=headers or {}, conn=self.conn, timeout=60)


def make_clients(d, batch):
    xs = [f32s(r) for r in rows(batch)]
    flat = [v for r in xs for v in r]
    raw = struct.pack("<%df" % len(flat), *flat)
    rest = Rest(d)
    ch = grpc.insecure_channel("127.0.0.1:%d" % d.port, options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
    k = kgrpc.GRPCInferenceServiceStub(ch)
    p = tgrpc.PredictionServiceStub(ch)

    tf_body = json.dumps({"instances": xs}).encode()

    def tf_rest():
        r = rest.post("/v1/models/mlp:predict", tf_body)
        return f32s([v for row in r.json()["predictions"] for v in row])

    ks_body = json.dumps({"inputs": [{"name": "x", "shape": [batch, IN], "datatype": "FP32", "data": flat}]}).encode()

    def ks_rest():
        r = rest.post("/v2/models/mlp/infer", ks_body, {"Content-Type": "application/json"})
        return f32s(r.json()["outputs"][0]["data"])

    hdr = json.dumps({"inputs": [{"name": "x", "shape": [batch, IN], "datatype": "FP32",
                                  "parameters": {"binary_data_size": len(raw)}}],
                      "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()

    def ks_bin():
        r = rest.post("/v2/models/mlp/infer", hdr + raw, {"Inference-Header-Content-Length": str(len(hdr)),
                                                           "Content-Type": "application/octet-stream"})
        n = int(r.header("inference-header-content-length"))
        return list(struct.unpack("<%df" % (batch * OUT), r.body[n:]))

    inp = kpb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[batch, IN])
    kreq = kpb.ModelInferRequest(model_name="mlp", inputs=[inp], raw_input_contents=[raw])

    def ks_grpc():
        r = k.ModelInfer(kreq, timeout=60)
        return list(struct.unpack("<%df" % (batch * OUT), r.raw_output_contents[0]))

    treq = tpb.PredictRequest()
    treq.model_spec.name = "mlp"
    t = treq.inputs["x"]
    t.dtype = tensor_pb2.DT_FLOAT
    t.tensor_shape.dim.add(size=batch)
    t.tensor_shape.dim.add(size=IN)
    t.tensor_content = raw

    def tf_grpc():
        return list(p.Predict(treq, timeout=60).outputs["y"].float_val)

    return [("TF Serving REST :predict", tf_rest, len(tf_body)), ("KServe v2 REST JSON", ks_rest, len(ks_body)),
            ("KServe v2 REST binary", ks_bin, len(hdr) + len(raw)), ("KServe gRPC ModelInfer raw", ks_grpc,
                                                                        kreq.ByteSize()),
            ("TF Serving gRPC Predict", tf_grpc, treq.ByteSize())]


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


d = Daemon({"mlp": {"handler": handler_so("predict"), "timeout": 60, "scalingConfig": {"maxInstances": 1},
                    "environmentVariables": {"MODEL": "mlp", "WEIGHTS": "w.safetensors", "PREDICT_DEVICE": "cpu",
                                             "OPENBLAS_NUM_THREADS": "1"}}},
           args=("--no-access-log",), threads=args.threads)
subprocess.run([os.path.join(args.build, "tools", "gen_weights"), os.path.join(d.fn_dir, "mlp", "w.safetensors"),
                "--layers", args.layers, "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
print("MLP %s, OPENBLAS_NUM_THREADS=1, %d loop(s), one client, sequential; load %s" %
      (args.layers, args.threads, open("/proc/loadavg").read().split()[0]))
print("| batch | protocol | request bytes | req/s | p50 ms | p99 ms | daemon CPU us/req | instance CPU us/req |")
print("|---|---|---|---|---|---|---|---|")
with d:
    deadline = time.time() + 60
    while d.request("POST", "/v1/models/mlp:predict", body=json.dumps({"instances": [[0.0] * IN]}).encode()).status == 503:
        if time.time() > deadline:
            raise SystemExit("mlp never became ready")
        time.sleep(0.2)
    for batch in (1, 256):
        n = args.requests if batch == 1 else max(10, args.requests // 8)
        clients = make_clients(d, batch)
        want = None
        for name, fn, size in clients:
            for _ in range(max(3, n // 20)):  # warm-up
                got = fn()
            if want is None:
                want = got
            assert got == want, "%s differs from %s" % (name, clients[0][0])
            assert instance_pids(d.fn_dir), "no instance found"
            inst = instance_pids(d.fn_dir)
            c0d, c0i = cpu_of(d.proc.pid), sum(cpu_of(p) for p in inst)
            lat = []
            t0 = time.perf_counter()
            for _ in range(n):
                s = time.perf_counter()
                fn()
                lat.append(time.perf_counter() - s)
            wall = time.perf_counter() - t0
            c1d, c1i = cpu_of(d.proc.pid), sum(cpu_of(p) for p in inst)
            print("| %d | %s | %d | %.0f | %.2f | %.2f | %.0f | %.0f |" % (
                batch, name, size, n / wall, pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3,
                (c1d - c0d) / n * 1e6, (c1i - c0i) / n * 1e6))
            sys.stdout.flush()
shutil.rmtree(stubs, ignore_errors=True)
