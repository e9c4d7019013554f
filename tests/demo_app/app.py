"""A small Flask + Keras app: the kind of TensorFlow app slugslim is made for.

POST /predict with {"features": [f1, f2, f3, f4]} returns the predicted class of an iris-like
flower, using the Keras model in models/classifier.keras.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from flask import Flask, jsonify, request
from PIL import Image  # noqa: F401  (the app also serves thumbnails; pillow is a real dependency)

MODEL_PATH = Path(__file__).resolve().parent / "models" / "classifier.keras"
CLASSES = ["setosa", "versicolor", "virginica"]

app = Flask(__name__)
_model: tf.keras.Model | None = None


def model() -> tf.keras.Model:
    global _model
    if _model is None:
        _model = tf.keras.models.load_model(MODEL_PATH)
    return _model


@app.get("/")
def health() -> dict[str, str]:
    return {"status": "ok", "tensorflow": tf.__version__}


@app.post("/predict")
def predict():  # type: ignore[no-untyped-def]
    features = np.asarray(request.get_json(force=True)["features"], dtype="float32").reshape(1, 4)
    scores = model().predict(features, verbose=0)[0]
    return jsonify(label=CLASSES[int(np.argmax(scores))], scores=[float(s) for s in scores])


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "5000")))
