"""Write the reference app's two model files; run with an interpreter that has TensorFlow.

    python make_models.py MODELS_DIR

- ``embeddings.bin``: a 50 MiB int8 embedding table (204,800 words x 256), from a seeded stdlib
  RNG, so it is byte-identical on every machine. Random bytes compress like trained weights do,
  which is to say hardly at all.
- ``classifier.keras``: a small Keras classifier (256 -> 64 -> 10) with seeded weights, saved by
  real Keras. The .keras zip carries a save timestamp, so its bytes (not its size) vary by run.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

VOCABULARY = 204_800
EMBEDDING_DIM = 256
SEED = 2100


def write_embeddings(path: Path) -> None:
    path.write_bytes(random.Random(SEED).randbytes(VOCABULARY * EMBEDDING_DIM))


def write_classifier(path: Path) -> None:
    import keras

    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input(shape=(EMBEDDING_DIM,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(path)


def main() -> int:
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    write_embeddings(target / "embeddings.bin")
    write_classifier(target / "classifier.keras")
    return 0


if __name__ == "__main__":
    sys.exit(main())
