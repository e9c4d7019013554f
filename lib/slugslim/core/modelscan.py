"""Which files of the app are models: found by name and shape, sorted into what moves and what stays.

``scan`` walks the app (``walk``, shared with the Git LFS check) and groups what it finds into
units that move as a whole: a file, a SavedModel directory, a TensorFlow checkpoint prefix.
``slugslim.finish.models`` then takes them out of the slug.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from slugslim.core.app import regular, walk
from slugslim.core.config import ModelsConfig

MB = 1_000_000

# Weights and graphs by their usual file names. .joblib/.pkl/.bin are models only when large,
# which models.min_size (applied to every candidate) takes care of.
SUFFIXES: dict[str, str] = {
    ".h5": "Keras/HDF5",
    ".hdf5": "Keras/HDF5",
    ".keras": "Keras",
    ".pb": "TensorFlow graph",
    ".tflite": "TensorFlow Lite",
    ".onnx": "ONNX",
    ".pt": "PyTorch",
    ".pth": "PyTorch",
    ".safetensors": "safetensors",
    ".joblib": "joblib",
    ".pkl": "pickle",
    ".bin": "binary weights",
}
# Never looked into: hidden directories at the top (heroku/python's .heroku, our .slugslim,
# .profile.d, and what other buildpacks install, such as .apt/ or .jdk/: their large binaries
# are not the app's models), version control, and node_modules.
# A TensorFlow checkpoint is a prefix P with P.index and P.data-NNNNN-of-NNNNN (and P.meta in TF1).
_SHARD = re.compile(r"^(?P<prefix>.+)\.data-\d{5}-of-\d{5}$")


@dataclass(frozen=True)
class ModelFile:
    path: str
    bytes: int


@dataclass(frozen=True)
class Model:
    """One unit taken out or kept as a whole: a file, a SavedModel directory, or a checkpoint prefix."""

    path: str
    kind: str
    reason: str
    files: tuple[ModelFile, ...]

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "reason": self.reason,
            "bytes": self.bytes,
            "files": [{"path": f.path, "bytes": f.bytes} for f in self.files],
        }


@dataclass
class Scan:
    models: list[Model] = field(default_factory=list)
    small: list[Model] = field(default_factory=list)
    excluded: list[Model] = field(default_factory=list)
    # Units that cannot be taken out safely (a symlink inside a SavedModel directory).
    unsafe: list[tuple[Model, str]] = field(default_factory=list)


def _matches(relative: str, patterns: tuple[str, ...]) -> str:
    """The first glob that matches a path. A glob without '/' matches the file name anywhere."""
    name = PurePosixPath(relative).name
    for pattern in patterns:
        clean = pattern.strip()
        clean = (clean[2:] if clean.startswith("./") else clean).rstrip("/")
        if fnmatch.fnmatchcase(relative, clean) or ("/" not in clean and fnmatch.fnmatchcase(name, clean)):
            return pattern
        if fnmatch.fnmatchcase(relative, f"{clean}/*"):
            return pattern
    return ""


def _is_savedmodel(directory: Path) -> bool:
    pb = directory / "saved_model.pb"
    variables = directory / "variables"
    return (
        regular(pb) is not None
        and variables.is_dir()
        and not variables.is_symlink()
    )


def _savedmodel(app_dir: Path, directory: Path) -> tuple[Model, str]:
    """All regular files of a SavedModel, and a reason it is unsafe to move (a symlink inside)."""
    files: list[ModelFile] = []
    problem = ""
    for root, dirs, names in os.walk(directory, followlinks=False):
        base = Path(root)
        for name in sorted(dirs):
            if (base / name).is_symlink():
                problem = f"{(base / name).relative_to(app_dir).as_posix()} is a symlink"
        for name in sorted(names):
            info = regular(base / name)
            if info is None:
                problem = f"{(base / name).relative_to(app_dir).as_posix()} is not a regular file"
                continue
            files.append(ModelFile((base / name).relative_to(app_dir).as_posix(), info.st_size))
        dirs.sort()
    relative = directory.relative_to(app_dir).as_posix()
    return Model(relative, "savedmodel", "SavedModel directory", tuple(files)), problem


def scan(app_dir: Path, config: ModelsConfig) -> Scan:
    """Walk the app (not its hidden top-level dirs such as .heroku/, never through symlinks); sort what it finds."""
    result = Scan()
    if not config.enabled:
        return result
    threshold = config.min_size * MB
    candidates: list[tuple[Model, str]] = []

    for base, dirs, files in walk(app_dir):
        keep_dirs = []
        for name in dirs:
            child = base / name
            if _is_savedmodel(child):
                model, problem = _savedmodel(app_dir, child)
                candidates.append((model, problem))
                continue
            keep_dirs.append(name)
        dirs[:] = keep_dirs

        grouped: set[str] = set()
        prefixes = sorted({m.group("prefix") for n in files if (m := _SHARD.match(n))})
        for prefix in prefixes:
            members = sorted(
                n for n in files if n in (f"{prefix}.index", f"{prefix}.meta") or
                ((m := _SHARD.match(n)) is not None and m.group("prefix") == prefix)
            )
            grouped.update(members)
            relative = (base / prefix).relative_to(app_dir).as_posix()
            model_files = tuple(ModelFile((base / n).relative_to(app_dir).as_posix(), files[n]) for n in members)
            candidates.append((Model(relative, "checkpoint", "TensorFlow checkpoint", model_files), ""))
        for name in sorted(files):
            if name in grouped:
                continue
            relative = (base / name).relative_to(app_dir).as_posix()
            suffix = PurePosixPath(name).suffix.lower()
            if suffix in SUFFIXES:
                reason = f"{SUFFIXES[suffix]} file"
            elif ".ckpt" in name:
                reason = "checkpoint file"
            else:
                reason = ""
            if reason or _matches(relative, config.include):
                candidates.append((Model(relative, "file", reason, (ModelFile(relative, files[name]),)), ""))

    for model, problem in sorted(candidates, key=lambda c: c[0].path):
        member_paths = [model.path, *(f.path for f in model.files)]
        if any(_matches(p, config.exclude) for p in member_paths):
            result.excluded.append(model)
            continue
        included = next((g for p in member_paths if (g := _matches(p, config.include))), "")
        if included:
            model = Model(model.path, model.kind, model.reason or f"models.include '{included}'", model.files)
        elif not model.reason:
            continue
        if problem:
            result.unsafe.append((model, problem))
            continue
        if model.bytes < threshold and not included:
            result.small.append(model)
            continue
        result.models.append(model)
    return result


def discover(app_dir: Path, config: ModelsConfig) -> list[Model]:
    """The models that would be taken out of the slug (if their source has them)."""
    return scan(app_dir, config).models
