"""Train the demo's tiny classifier and save it as models/classifier.keras (run once, with TF)."""

from pathlib import Path

import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]], dtype="float32")
labels = rng.integers(0, 3, size=600)
features = centers[labels] + rng.normal(0, 0.25, size=(600, 4)).astype("float32")

tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([
    tf.keras.Input(shape=(4,)),
    tf.keras.layers.Dense(16, activation="relu"),
    tf.keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(features, labels, epochs=30, verbose=0)
print("accuracy:", model.evaluate(features, labels, verbose=0)[1])
model.save(Path(__file__).resolve().parent / "models" / "classifier.keras")
