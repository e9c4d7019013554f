"""The bench's PyTorch app: a small linear model loaded from model.bin, served by Flask."""

import os

import torch
from flask import Flask, jsonify

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "model.bin"), "rb") as handle:
    weights = torch.frombuffer(bytearray(handle.read()), dtype=torch.float32).reshape(64, 256)
model = torch.nn.Linear(256, 64, bias=False)
model.weight.data = weights
model.eval()

app = Flask(__name__)


@app.get("/")
def predict() -> object:
    with torch.no_grad():
        out = model(torch.ones(1, 256))
    return jsonify(torch=torch.__version__, cuda=torch.version.cuda, sum=round(float(out.sum()), 3))
