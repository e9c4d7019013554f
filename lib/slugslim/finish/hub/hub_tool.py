"""Run by the app's Python, by path: the Hub work that needs the real ``huggingface_hub`` client.

``python hub_tool.py fetch REQUEST.json RESULT.json`` downloads the models the ``hf.models`` setting
names into the Hub cache the request gives (``snapshot_download`` with the files the libraries
read), and describes repos already in it (every file of the repo at that commit, with its size, so
the report can say what was not downloaded). It reads ``HF_ENDPOINT`` and ``HF_TOKEN`` from its
environment, as the app does, and never writes the token anywhere. Imports nothing of slugslim.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

# What transformers and sentence-transformers read besides the weights: configs, tokenizer files,
# vocabularies and sentencepiece models, in the repo's root and in module folders (1_Pooling/...).
SMALL_FILES = (".json", ".txt", ".model", ".tiktoken")
# Folders of other runtimes' exports, which a PyTorch or transformers load never reads.
OTHER_RUNTIMES = ("onnx/", "openvino/", "coreml/", "tflite/", "tensorrt/")


def default_files(names: list[str]) -> list[str]:
    """The files a transformers or sentence-transformers load reads: one weights format, safetensors first."""
    ours = [n for n in names if not n.startswith(OTHER_RUNTIMES)]
    weights = [n for n in ours if n.endswith(".safetensors")]
    if not weights:
        weights = [n for n in ours if n.rsplit("/", 1)[-1].startswith("pytorch_model") and n.endswith(".bin")]
    return sorted({*[n for n in ours if n.endswith(SMALL_FILES)], *weights})


def _failure(exc: BaseException) -> dict[str, str]:
    errors = importlib.import_module("huggingface_hub.errors")

    kind = "other"
    if isinstance(exc, errors.GatedRepoError):
        kind = "gated"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        kind = "missing"
    elif isinstance(exc, errors.RevisionNotFoundError):
        kind = "revision"
    elif isinstance(exc, (errors.LocalEntryNotFoundError, OSError)) or "connect" in type(exc).__name__.lower():
        kind = "unreachable"
    return {"error": kind, "message": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def fetch(request: dict[str, Any]) -> dict[str, Any]:
    hub = importlib.import_module("huggingface_hub")
    api = hub.HfApi()
    cache = request["cache"]
    fetched: list[dict[str, Any]] = []
    for model in request.get("models", []):
        entry: dict[str, Any] = {"id": model["id"]}
        try:
            info = api.model_info(model["id"], revision=model.get("revision") or None)
            names = [s.rfilename for s in info.siblings or []]
            wanted = list(model.get("files") or []) or default_files(names)
            hub.snapshot_download(model["id"], revision=model.get("revision") or None, allow_patterns=wanted,
                              cache_dir=cache)
            entry["commit"] = info.sha
        except Exception as exc:  # each model on its own: one bad id must not stop the others
            entry.update(_failure(exc))
        fetched.append(entry)
    described: list[dict[str, Any]] = []
    for repo in request.get("describe", []):
        try:
            info = api.model_info(repo["id"], revision=repo["commit"], files_metadata=True)
            sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
            described.append({"id": repo["id"], "commit": repo["commit"], "sizes": sizes})
        except Exception as exc:
            described.append({"id": repo["id"], "commit": repo["commit"], **_failure(exc)})
    return {"fetched": fetched, "described": described}


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "fetch":
        print("usage: hub_tool.py fetch REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[2]).read_text(encoding="utf-8"))
    Path(argv[3]).write_text(json.dumps(fetch(request)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
