"""What ``runtime.engine: litert`` would do to an app, changing nothing (the finish step and analyze).

- **Models**: the Keras files (``.keras``, ``.h5``, ``.hdf5``) and SavedModel directories the one
  model scanner (``slugslim.core.modelscan``) finds, whatever their size.
- **The import gate**: TensorFlow can only go when no file of the app imports ``tensorflow``,
  ``keras`` or ``tf_keras`` (the one import scanner, ``slugslim.appcheck.imports``), other than the loader
  ``slugslim_models.py``. Imports inside ``try:`` do not count: the app expects them to fail.
- **The closure**: TensorFlow, Keras and the distributions only they need, from the installed
  metadata. A distribution stays when a remaining distribution, ``ai-edge-litert``, a requirement
  the app declares or a module the app imports needs it; so do pip, setuptools and wheel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from slugslim.appcheck import imports, unused
from slugslim.core import installed
from slugslim.core.config import Config
from slugslim.core.frameworks import FRAMEWORKS
from slugslim.core.modelscan import Model, scan
from slugslim.core.plan import Removal

LITERT = "ai-edge-litert"
# ai-edge-litert 2.3.0's Requires-Dist, for a plan made before it is installed (analyze).
LITERT_REQUIRES = ("backports-strenum", "flatbuffers", "numpy", "tqdm", "typing-extensions", "protobuf", "ml-dtypes")
GATED_MODULES = ("tensorflow", "keras", "tf_keras")
HELPER = "slugslim_models.py"
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
NEVER_REMOVED = frozenset({"pip", "setuptools", "wheel"})
RULE = "runtime"


def roots() -> frozenset[str]:
    """Every build of TensorFlow in the framework catalogue, and Keras."""
    tensorflow = next(f for f in FRAMEWORKS if f.package == "tensorflow")
    return frozenset({*tensorflow.builds, *tensorflow.builds.values(), "tensorflow-intel", "keras", "tf-keras"})


@dataclass
class RuntimePlan:
    models: list[Model] = field(default_factory=list)
    unsafe: list[tuple[Model, str]] = field(default_factory=list)
    imports: dict[str, list[str]] = field(default_factory=dict)  # app file -> TF/Keras modules it imports
    removed: list[str] = field(default_factory=list)  # canonical names of the closure
    removed_bytes: int = 0
    tensorflow: str = ""  # the installed TensorFlow's version, "" when none

    @property
    def verdict(self) -> str:
        """'' when LiteRT can be shipped as far as a plan can tell, else why not."""
        if not self.models:
            return "no Keras or SavedModel model was found in the app"
        if self.unsafe:
            model, why = self.unsafe[0]
            return f"{model.path} cannot be converted safely: {why}"
        if self.imports:
            return "app code imports TensorFlow or Keras: " + ", ".join(sorted(self.imports))
        if not self.tensorflow:
            return "TensorFlow is not installed, and the conversion needs it"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {"models": [{"path": m.path, "kind": kind_of(m), "bytes": m.bytes} for m in self.models],
                "unsafe": [{"path": m.path, "reason": why} for m, why in self.unsafe],
                "imports": self.imports, "removed": self.removed, "removed_bytes": self.removed_bytes,
                "tensorflow": self.tensorflow, "verdict": self.verdict}


def kind_of(model: Model) -> str:
    return "savedmodel" if model.kind == "savedmodel" else "keras"


def convertible(app_dir: Path, config: Config) -> tuple[list[Model], list[tuple[Model, str]]]:
    """Keras files and SavedModel directories, of any size, also those models.exclude keeps in the slug."""
    found = scan(app_dir, replace(config.models, enabled=True))
    every = sorted([*found.models, *found.small, *found.excluded], key=lambda m: m.path)

    def wanted(model: Model) -> bool:
        return model.kind == "savedmodel" or (
            model.kind == "file" and PurePosixPath(model.path).suffix.lower() in KERAS_SUFFIXES)

    return [m for m in every if wanted(m)], [(m, why) for m, why in found.unsafe if wanted(m)]


def gate(app_dir: Path) -> dict[str, list[str]]:
    """App files (but the loader) that import TensorFlow or Keras outside ``try:`` -> those modules."""
    offenders: dict[str, list[str]] = {}
    for path in imports.app_sources(app_dir):
        relative = path.relative_to(app_dir).as_posix()
        if relative == HELPER:
            continue
        try:
            found = imports.scan_source(path.read_bytes(), relative)
        except OSError:
            continue
        hits = sorted(m for m in found.modules if m.split(".", 1)[0] in GATED_MODULES)
        if hits:
            offenders[relative] = hits
    return offenders


def closure(scanned: installed.Installed, app_dir: Path) -> set[str]:
    """Canonical names of TensorFlow, Keras and what only they need."""
    dists = scanned.distributions
    present = [key for key in dists if key in roots()]
    reach: set[str] = set()
    for key in present:
        reach |= unused.dependencies(scanned, key)
    keepers = (set(dists) - reach) | NEVER_REMOVED
    keepers |= {r.name for r in unused.top_level_requirements(app_dir) if r.name not in roots()}
    found = imports.scan_app(app_dir, installed.console_scripts(scanned.site_packages))
    found.modules = {m for m in found.modules if m.split(".", 1)[0] not in GATED_MODULES}
    found.maybe = {m for m in found.maybe if m.split(".", 1)[0] not in GATED_MODULES}
    found.strings = set()  # dotted strings are not imports; the LiteRT boot check catches what they load
    keepers |= unused.used_distributions(scanned, found) - set(present)
    if LITERT not in dists:
        keepers |= {installed.canonical(name) for name in LITERT_REQUIRES}
    kept: set[str] = set()
    for key in keepers:
        kept |= unused.dependencies(scanned, key)
    return {key for key in reach - kept if key in dists}


def plan(app_dir: Path, site_packages: Path | None, config: Config) -> RuntimePlan:
    models, unsafe = convertible(app_dir, config)
    result = RuntimePlan(models=models, unsafe=unsafe)
    if not models:
        return result
    result.imports = gate(app_dir)
    if site_packages is not None:
        scanned = installed.scan(site_packages)
        tensorflow = scanned.distributions.get("tensorflow") or scanned.distributions.get("tensorflow-cpu")
        result.tensorflow = tensorflow.version if tensorflow else ""
        result.removed = sorted(closure(scanned, app_dir))
        result.removed_bytes = sum(scanned.distributions[key].bytes for key in result.removed)
    return result


def removals(scanned: installed.Installed, names: set[str]) -> list[Removal]:
    """The files of ``names``, dist-info and console scripts included (so pip and importlib.metadata
    agree they are gone): whole top-level entries where only these own files, else file by file."""
    owner: dict[str, str] = {}
    for key, dist in scanned.distributions.items():
        for path in dist.files:
            owner.setdefault(path, key)
    tops: dict[str, list[str]] = {}
    for path in scanned.file_sizes:
        tops.setdefault(path.split("/", 1)[0], []).append(path)
    out: list[Removal] = []
    for top, paths in sorted(tops.items()):
        mine = [p for p in paths if owner.get(p) in names]
        if not mine:
            continue
        key = owner[mine[0]]
        reason = f"only TensorFlow and Keras need {scanned.distributions[key].name} (runtime.engine: litert)"
        if len(mine) == len(paths) and not (scanned.site_packages / top).is_symlink():
            out.append(Removal(top, sum(scanned.file_sizes[p] for p in paths), RULE, reason, len(paths), key))
            continue
        out.extend(Removal(p, scanned.file_sizes[p], RULE, reason, 1, owner[p]) for p in sorted(mine))
    site = scanned.site_packages
    bin_dir = site.parent.parent.parent / "bin"
    for key in sorted(names):
        for script in sorted(scanned.distributions[key].scripts):
            target = bin_dir / script
            if target.is_file() and not target.is_symlink():
                out.append(Removal(os.path.relpath(target, site).replace(os.sep, "/"), target.stat().st_size,
                                   RULE, f"a console script of {scanned.distributions[key].name}", 1, key))
    return out
