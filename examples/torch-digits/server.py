"""A PyTorch model server as a thaw custom runtime (FastAPI + uvicorn).

TF Serving REST:
  POST /v1/models/{name}:predict {"instances": [[64 pixels 0..16]...]}
    -> {"predictions": [[10 class probabilities]...]}
  GET  /v1/models/{name} -> model status
Also GET /health, and POST /thaw/restored (thaw's restore hook: re-seed
torch's and Python's random state so copies of one snapshot differ).
`import torch` and the model load happen at start: that is what a
snapshot saves. Run with /usr/bin/python3 (Debian's python3-torch).
"""
import os
import random

import torch
import uvicorn
from fastapi import FastAPI, HTTPException, Request

from model import load

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, os.environ.get("MODEL_FILE", "model.pt"))
if os.path.exists(MODEL):
    model = load(MODEL)
else:  # not trained before deploying (train.py): train now, before the snapshot
    from train import train
    model, acc = train()
    print("%s missing: trained at start, held-out accuracy %.3f" % (MODEL, acc), flush=True)
app = FastAPI()


@app.post("/v1/models/{name}:predict")
async def predict(name: str, request: Request):
    try:
        body = await request.json()
    except Exception:  # noqa: BLE001
        raise HTTPException(400, "the body is not valid JSON")
    inst = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(inst, list) or not inst or not all(
            isinstance(r, list) and len(r) == 64 for r in inst):
        raise HTTPException(400, "expected {\"instances\": [[64 numbers]...]}")
    try:
        x = torch.tensor(inst, dtype=torch.float32) / 16.0
    except (TypeError, ValueError):
        raise HTTPException(400, "instances must hold numbers")
    with torch.no_grad():
        return {"predictions": model(x).tolist()}


@app.get("/v1/models/{name}")
def status(name: str):
    return {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


@app.get("/health")
def health():
    return {"status": "healthy"}


@app.post("/thaw/restored")
def restored():
    seed = int.from_bytes(os.urandom(8), "little")
    random.seed(seed)
    torch.manual_seed(seed)
    return {"reseeded": True}


@app.get("/random")
def rnd():
    return {"random": random.random(), "torch": torch.rand(1).item()}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("FC_SERVER_PORT", "9000")),
                log_level="warning")
