"""What ``runtime.engine`` (litert or onnx) would do to an app, changing nothing (the finish step and analyze).

- **Models**: for LiteRT, the Keras files (``.keras``, ``.h5``, ``.hdf5``) and SavedModel directories
  the one model scanner (``slugslim.core.modelscan``) finds, whatever their size; for ONNX, the
  PyTorch models ``slugslim.finish.runtime.torchmodels`` finds (Hub snapshots baked by the Hugging
  Face step, model directories and TorchScript or ``torch.export`` files of the app).
- **The import gate**: the framework can only go when no file of the app imports it (TensorFlow,
  Keras; torch, sentence-transformers) through the one import scanner (``slugslim.appcheck.imports``),
  other than the loader slugslim ships. Imports inside ``try:`` do not count: the app expects them to fail.
- **The closure**: the framework's distributions (``engines.Engine.removed``; transformers only when no
  app file imports it) and those only they need, from the installed metadata. A distribution stays when
  a remaining distribution, the engine's packages, a requirement the app declares or a module the app
  imports needs it; so do pip, setuptools and wheel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from slugslim.appcheck import imports, unused
from slugslim.core import installed, shipped
from slugslim.core.config import Config
from slugslim.core.engines import LITERT, Engine
from slugslim.core.modelscan import Model, scan
from slugslim.core.plan import Removal
from slugslim.core.results import HubResult
from slugslim.finish.runtime import torchmodels
from slugslim.finish.runtime.torchmodels import Candidate

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
NEVER_REMOVED = frozenset({"pip", "setuptools", "wheel"})
RULE = "runtime"


@dataclass
class RuntimePlan:
    engine: Engine = LITERT
    models: list[Candidate] = field(default_factory=list)
    unsafe: list[tuple[Candidate, str]] = field(default_factory=list)
    imports: dict[str, list[str]] = field(default_factory=dict)  # app file -> gated modules it imports
    removed: list[str] = field(default_factory=list)  # canonical names of the closure
    removed_bytes: int = 0
    framework: str = ""  # the installed framework's version, "" when none

    @property
    def verdict(self) -> str:
        """'' when the engine can be shipped as far as a plan can tell, else why not."""
        if not self.models:
            return ("no Keras or SavedModel model was found in the app" if self.engine is LITERT else
                    "no PyTorch model slugslim can convert was found in the app or its Hugging Face models")
        if self.unsafe:
            model, why = self.unsafe[0]
            return f"{model.key} cannot be converted safely: {why}"
        if self.imports:
            return f"app code imports {self.engine.framework}: " + ", ".join(sorted(self.imports))
        if not self.framework:
            return f"{self.engine.framework} is not installed, and the conversion needs it"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {"engine": self.engine.name,
                "models": [{"path": m.key, "kind": m.kind, "bytes": m.bytes} for m in self.models],
                "unsafe": [{"path": m.key, "reason": why} for m, why in self.unsafe],
                "imports": self.imports, "removed": self.removed, "removed_bytes": self.removed_bytes,
                "framework": self.framework, "verdict": self.verdict}


def keras_models(app_dir: Path, config: Config) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """Keras files and SavedModel directories, of any size, also those models.exclude keeps in the slug."""
    found = scan(app_dir, replace(config.models, enabled=True))
    every = sorted([*found.models, *found.small, *found.excluded], key=lambda m: m.path)

    def wanted(model: Model) -> bool:
        return model.kind == "savedmodel" or (
            model.kind == "file" and PurePosixPath(model.path).suffix.lower() in KERAS_SUFFIXES)

    def candidate(model: Model) -> Candidate:
        kind = "savedmodel" if model.kind == "savedmodel" else "keras"
        return Candidate(model.path, kind, model.path, model.bytes, model.reason, (model.path,))

    return [candidate(m) for m in every if wanted(m)], [(candidate(m), why) for m, why in found.unsafe if wanted(m)]


def gate(app_dir: Path, engine: Engine = LITERT, modules: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """App files (but slugslim's loader) that import ``modules`` (the engine's gated ones) outside ``try:``."""
    watched = modules or engine.gated
    offenders: dict[str, list[str]] = {}
    for path in imports.app_sources(app_dir):
        relative = path.relative_to(app_dir).as_posix()
        if relative in shipped.HELPERS:
            continue
        try:
            found = imports.scan_source(path.read_bytes(), relative)
        except OSError:
            continue
        hits = sorted(m for m in found.modules if m.split(".", 1)[0] in watched)
        if hits:
            offenders[relative] = hits
    return offenders


def _roots(engine: Engine, app_dir: Path) -> frozenset[str]:
    """What goes: the engine's list, but distributions of optional modules some app file imports."""
    kept = {installed.canonical(m) for m in engine.optional if gate(app_dir, engine, (m,))}
    return frozenset(engine.removed - kept)


def closure(scanned: installed.Installed, app_dir: Path, engine: Engine = LITERT) -> set[str]:
    """Canonical names of the framework's distributions and what only they need."""
    dists = scanned.distributions
    roots = _roots(engine, app_dir)
    present = [key for key in dists if key in roots]
    reach: set[str] = set()
    for key in present:
        reach |= unused.dependencies(scanned, key)
    keepers = (set(dists) - reach) | NEVER_REMOVED
    keepers |= {r.name for r in unused.top_level_requirements(app_dir) if r.name not in roots}
    gone = {*engine.gated, *(m for m in engine.optional if installed.canonical(m) in roots)}
    found = imports.scan_app(app_dir, installed.console_scripts(scanned.site_packages))
    found.modules = {m for m in found.modules if m.split(".", 1)[0] not in gone}
    found.maybe = {m for m in found.maybe if m.split(".", 1)[0] not in gone}
    found.strings = set()  # dotted strings are not imports; the boot on the engine catches what they load
    keepers |= unused.used_distributions(scanned, found) - set(present)
    keepers |= {installed.canonical(name) for name in engine.packages if name in dists}
    if any(installed.canonical(name) not in dists for name in engine.packages):
        keepers |= {installed.canonical(name) for name in engine.requires}
    kept: set[str] = set()
    for key in keepers:
        kept |= unused.dependencies(scanned, key)
    return {key for key in reach - kept if key in dists}


def plan(app_dir: Path, site_packages: Path | None, config: Config, engine: Engine = LITERT,
         hub: HubResult | None = None) -> RuntimePlan:
    if engine is LITERT:
        models, unsafe = keras_models(app_dir, config)
    else:
        models, unsafe = torchmodels.find(app_dir, config, hub)
    result = RuntimePlan(engine=engine, models=models, unsafe=unsafe)
    if not models:
        return result
    result.imports = gate(app_dir, engine)
    if site_packages is not None:
        scanned = installed.scan(site_packages)
        framework = next((scanned.distributions[k] for k in sorted(engine.removed)
                          if k in scanned.distributions and k in ("tensorflow", "tensorflow-cpu", "torch")), None)
        result.framework = framework.version if framework else ""
        result.removed = sorted(closure(scanned, app_dir, engine))
        result.removed_bytes = sum(scanned.distributions[key].bytes for key in result.removed)
    return result


def removals(scanned: installed.Installed, names: set[str], engine: Engine = LITERT) -> list[Removal]:
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
        reason = (f"only {engine.framework} needs {scanned.distributions[key].name} "
                  f"(runtime.engine: {engine.name})")
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
