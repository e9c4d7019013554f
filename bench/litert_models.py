"""Write the models the real LiteRT test converts; run with an interpreter that has TensorFlow.

    python litert_models.py APP_DIR

Into APP_DIR/models: the bench classifier as .keras and .h5, a model with dict inputs (one with a
dynamic sequence length) and dict outputs, one with list inputs and outputs, one with a fixed
batch of 1, a custom layer that loads only with runtime.custom_objects (APP_DIR/customlayers.py),
a SavedModel with two outputs, a SavedModel that needs a Flex op, and a .keras file that is not a
model. Into APP_DIR: samples.npz and samples.npy (float64) for the classifier, bad-samples.npz of the wrong width.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from make_models import SEED, write_classifier

CUSTOM_LAYERS = '''
import keras


class Scale(keras.layers.Layer):
    """Multiplies by a learned vector: a layer Keras can load only when told the class."""

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.factor


CUSTOM = {"Scale": Scale}
'''


def write_models(app: Path) -> None:
    import keras
    import tensorflow as tf

    models = app / "models"
    models.mkdir(parents=True, exist_ok=True)
    write_classifier(models / "classifier.keras")
    keras.models.load_model(models / "classifier.keras").save(models / "classifier.h5")
    keras.utils.set_random_seed(SEED)

    a = keras.Input(shape=(4,), name="a")
    b = keras.Input(shape=(None, 3), name="b")
    hidden = keras.layers.Concatenate()([keras.layers.Dense(6)(a), keras.layers.GlobalAveragePooling1D()(b)])
    outputs = {"probs": keras.layers.Dense(3, activation="softmax")(hidden), "score": keras.layers.Dense(1)(hidden)}
    keras.Model({"a": a, "b": b}, outputs).save(models / "multi.keras")

    left, right = keras.Input(shape=(5,), name="left"), keras.Input(shape=(2,), name="right")
    joined = keras.layers.Concatenate()([left, right])
    keras.Model([left, right], [keras.layers.Dense(4)(joined), keras.layers.Dense(2)(joined)]).save(
        models / "pair.keras")

    fixed = keras.Input(shape=(8,), batch_size=1, name="fixed")
    keras.Model(fixed, keras.layers.Dense(3)(fixed)).save(models / "batch1.keras")

    (app / "customlayers.py").write_text(CUSTOM_LAYERS, encoding="utf-8")
    sys.path.insert(0, str(app))
    import customlayers

    inputs = keras.Input(shape=(6,))
    keras.Model(inputs, customlayers.Scale()(keras.layers.Dense(6)(inputs))).save(models / "custom.keras")

    class Export(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal((5, 3), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec((None, 5), tf.float32, name="x")])
        def serve(self, x):  # type: ignore[no-untyped-def]
            y = tf.matmul(x, self.w)
            return {"linear": y, "total": tf.reduce_sum(y, axis=1, keepdims=True)}

    export = Export()
    tf.saved_model.save(export, str(models / "export"), signatures={"serving_default": export.serve})

    class Flex(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 3, 3), tf.float32, name="m")])
        def serve(self, m):  # type: ignore[no-untyped-def]
            return {"inverse": tf.linalg.inv(m)}

    flex = Flex()
    tf.saved_model.save(flex, str(models / "flex"), signatures={"serving_default": flex.serve})

    (models / "broken.keras").write_bytes(b"this is not a Keras file\n")
    rng = np.random.default_rng(7)
    np.savez(app / "samples.npz", arr_0=rng.uniform(-1, 1, (12, 256)).astype(np.float32))
    np.savez(app / "bad-samples.npz", arr_0=np.zeros((12, 255), np.float32))
    np.save(app / "samples.npy", rng.uniform(-1, 1, (9, 256)))


if __name__ == "__main__":
    write_models(Path(sys.argv[1]))
