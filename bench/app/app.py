"""slugslim's reference app: an image classifier with the weights a real app would ship.

POST an image to /predict. Pillow reduces it to 32x32 grey, each 4x4 patch becomes a "visual
word", the words are looked up in a 50 MiB int8 embedding table (models/embeddings.bin), mean
pooled, and a small Keras classifier (models/classifier.keras) predicts one of 10 classes.
Both files are loaded at import, as gunicorn apps usually do, so a dyno pays for them at boot.

The classifier is loaded through slugslim's loader (slugslim_models.py, copied into the app as
the README tells developers): Keras here and in a TensorFlow slug, LiteRT in a slug built with
``runtime.engine: litert``. The app code is the same in every variant of the bench.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, request
from PIL import Image
from slugslim_models import load_model

MODELS = Path(__file__).resolve().parent / "models"
EMBEDDING_DIM = 256
# The table is stored quantized; this scale turns it back into floats.
EMBEDDING_SCALE = 1.0 / 127.0

embeddings = np.fromfile(MODELS / "embeddings.bin", dtype=np.int8).reshape(-1, EMBEDDING_DIM)
classifier = load_model(MODELS / "classifier.keras")
app = Flask(__name__)


def visual_words(image: Image.Image) -> np.ndarray:
    """One id per 4x4 patch of the 32x32 grey image: 2 bits per pixel, folded into the vocabulary."""
    pixels = np.asarray(image.convert("L").resize((32, 32)), dtype=np.uint32) >> 6
    patches = pixels.reshape(8, 4, 8, 4).transpose(0, 2, 1, 3).reshape(64, 16)
    codes = (patches << (2 * np.arange(16, dtype=np.uint32))).sum(axis=1, dtype=np.uint64)
    return (codes % embeddings.shape[0]).astype(np.int64)


def features(image: Image.Image) -> np.ndarray:
    rows = embeddings[visual_words(image)].astype(np.float32) * EMBEDDING_SCALE
    return rows.mean(axis=0, keepdims=True)


@app.post("/predict")
def predict():  # type: ignore[no-untyped-def]
    upload = request.files.get("image")
    if upload is None:
        return jsonify(error="POST an image as the multipart field 'image'"), 400
    image = Image.open(io.BytesIO(upload.read()))
    probabilities = classifier.predict(features(image), verbose=0)[0]
    return jsonify(label=int(probabilities.argmax()), probabilities=[round(float(p), 6) for p in probabilities])


@app.get("/")
def index():  # type: ignore[no-untyped-def]
    return jsonify(status="ok", vocabulary=int(embeddings.shape[0]))
