"""The PyTorch models ``runtime.engine: onnx`` converts, found without importing torch.

- **Hugging Face models**: a directory with ``modules.json`` (a sentence-transformers model) or a
  ``config.json`` naming an encoder architecture (BERT, DistilBERT, RoBERTa, XLM-R, MPNet, ...; a
  ``…Model`` for embeddings, a ``…ForSequenceClassification`` for text classification), with its
  weights (``model.safetensors`` or ``pytorch_model.bin``). Found in the app, and in the Hub
  snapshots the Hugging Face step baked (``slugslim.finish.hub``), named by their Hub id.
- **Files**: TorchScript (``torch.jit.save``: a zip archive with a ``code/`` folder) as ``.pt`` or
  ``.pth``, and ``torch.export`` programs (``.pt2``), of any size. Another ``.pt``/``.pth`` is a
  ``state_dict`` or a pickled module whose class lives in the app: it cannot be served without
  torch, so it is listed as unsafe, and the app keeps torch.

Each candidate names the weights that leave the slug once the ONNX file replaces them.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from slugslim.core.app import regular, walk
from slugslim.core.config import Config
from slugslim.core.modelscan import scan
from slugslim.core.results import HubResult

# model_type in config.json: the encoder families the converter exports and the loader serves.
ENCODERS = frozenset({"bert", "distilbert", "roberta", "xlm-roberta", "mpnet", "camembert", "electra"})
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TORCH_SUFFIXES = (".pt", ".pth", ".pt2")


@dataclass(frozen=True)
class Candidate:
    """A model a runtime engine converts: how the app names it, and where it is in the build."""

    key: str  # the app-relative path of the file or directory, or the Hub id
    kind: str  # keras | savedmodel (LiteRT); sentence-transformers | transformers | torchscript | export (ONNX)
    path: str  # the app-relative file or directory (a Hub model's snapshot)
    bytes: int  # of its weights
    reason: str  # how it was recognised, for the build log
    weights: tuple[str, ...] = ()  # app-relative files or directories that go when the conversion replaces them


def find(app_dir: Path, config: Config, hub: HubResult | None) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """(the models to convert, the models that cannot be and why), sorted by key."""
    good: list[Candidate] = []
    bad: list[tuple[Candidate, str]] = []
    for candidate, why in [*_hub(app_dir, hub), *_directories(app_dir), *_files(app_dir, config)]:
        (bad.append((candidate, why)) if why else good.append(candidate))
    return sorted(good, key=lambda c: c.key), sorted(bad, key=lambda c: c[0].key)


def classify(directory: Path) -> tuple[str, str]:
    """(kind, why it cannot be converted or '') of a Hugging Face model directory."""
    if (directory / "modules.json").is_file():
        kind = "sentence-transformers"
    elif (directory / "config.json").is_file():
        kind = "transformers"
    else:
        return "", "no modules.json or config.json"
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return kind, f"its config.json cannot be read ({exc})"
    model_type = str(config.get("model_type") or "") if isinstance(config, dict) else ""
    architectures = config.get("architectures") or [] if isinstance(config, dict) else []
    architecture = str(architectures[0]) if architectures else ""
    if model_type not in ENCODERS:
        return kind, (f"its architecture {architecture or model_type or 'unknown'} is not one slugslim converts "
                      f"(encoders: {', '.join(sorted(ENCODERS))})")
    if kind == "transformers" and architecture and not (
            architecture.endswith("Model") or architecture.endswith("ForSequenceClassification")):
        return kind, f"{architecture} is not an encoder for embeddings or text classification"
    if not any((directory / name).exists() for name in WEIGHTS):
        return kind, f"it has neither {' nor '.join(WEIGHTS)}"
    return kind, ""


def _hub(app_dir: Path, hub: HubResult | None) -> list[tuple[Candidate, str]]:
    """The Hub models the Hugging Face step baked: their snapshot, weights as links to blobs."""
    if hub is None or hub.status != "baked":
        return []
    out: list[tuple[Candidate, str]] = []
    for baked in hub.models:
        snapshot = app_dir / baked.folder / "snapshots" / baked.commit
        if not baked.folder or not snapshot.is_dir() or snapshot.is_symlink():
            continue
        kind, why = classify(snapshot)
        if not kind:
            continue  # not a transformers model (a dataset, a GGUF, an image model...): not ours to judge
        weights: list[str] = []
        total = 0
        for name in WEIGHTS:
            link = snapshot / name
            blob = link.resolve() if link.is_symlink() else link
            if (link.is_symlink() or link.is_file()) and blob.is_relative_to(app_dir / baked.folder) \
                    and regular(blob) is not None:
                total += blob.stat().st_size
                weights += [_rel(app_dir, link), *([_rel(app_dir, blob)] if blob != link else [])]
        out.append((Candidate(baked.id, kind, _rel(app_dir, snapshot), total,
                              f"the Hugging Face model {baked.id}", tuple(weights)), why))
    return out


def _directories(app_dir: Path) -> list[tuple[Candidate, str]]:
    out: list[tuple[Candidate, str]] = []
    for directory, subdirs, files in walk(app_dir):
        if "modules.json" not in files and not ("config.json" in files and any(w in files for w in WEIGHTS)):
            continue
        kind, why = classify(directory)
        if not kind:
            continue
        if kind == "sentence-transformers":
            subdirs[:] = []  # its modules' folders are part of it
        weights = tuple(_rel(app_dir, directory / name) for name in WEIGHTS if name in files)
        total = sum(files[name] for name in WEIGHTS if name in files)
        label = "a sentence-transformers model" if kind == "sentence-transformers" else "a transformers model"
        relative = _rel(app_dir, directory)
        out.append((Candidate(relative, kind, relative, total, label, weights), why))
    return out


def _files(app_dir: Path, config: Config) -> list[tuple[Candidate, str]]:
    found = scan(app_dir, replace(config.models, enabled=True))
    out: list[tuple[Candidate, str]] = []
    for model in [*found.models, *found.small, *found.excluded]:
        suffix = PurePosixPath(model.path).suffix.lower()
        if model.kind != "file" or suffix not in TORCH_SUFFIXES:
            continue
        kind, why = torch_file_kind(app_dir / model.path)
        label = "a torch.export program" if kind == "export" else "a TorchScript file"
        out.append((Candidate(model.path, kind or "state_dict", model.path, model.bytes, label, (model.path,)), why))
    return out


def torch_file_kind(path: Path) -> tuple[str, str]:
    """(torchscript | export, '') or ('', why not) for a .pt, .pth or .pt2 file."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        names = []
    if path.suffix.lower() == ".pt2":
        return ("export", "") if names else ("", "it is not a torch.export archive")
    if any("/code/" in name for name in names):
        return "torchscript", ""
    return "", ("a state_dict or pickled module: its class lives in your app, so it needs PyTorch. Save it with "
                "torch.jit.save (TorchScript) or torch.export.save (.pt2) to serve it with ONNX Runtime")


def _rel(app_dir: Path, path: Path) -> str:
    return path.relative_to(app_dir).as_posix()
