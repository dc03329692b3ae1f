"""Trains the digits model on the data python3-sklearn ships and saves its
weights to model.pt (a file of the function). Run it before deploying:
    /usr/bin/python3 train.py [OUT]
(server.py trains in memory at start when model.pt is missing.)
Deterministic (seeded); prints the held-out accuracy."""
import os
import sys

import torch
from sklearn.datasets import load_digits

from model import Digits


def train(epochs=200):
    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    n = len(X) * 4 // 5
    m = Digits()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log(m(X[:n]) + 1e-9), y[:n])
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        acc = (m(X[n:]).argmax(1) == y[n:]).float().mean().item()
    return m, acc


if __name__ == "__main__":
    m, acc = train()
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.pt")
    torch.save(m.state_dict(), out)
    print("held-out accuracy %.3f, weights in %s" % (acc, out))
