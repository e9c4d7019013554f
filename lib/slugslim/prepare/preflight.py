"""Wheel preflight: make sure the framework the app asks for has a wheel for the Python it will get.

heroku/python picks Python 3.14 for an app that names none, and TensorFlow 2.21.0 has no cp314
wheel, so the first push of a TensorFlow app fails in pip with "No matching distribution found"
after minutes of work. Before anything is installed, for every framework build the app declares
(after the swap: what pip will really install), we read the index once and learn which of
heroku/python's Pythons have a wheel. A uv.lock or a poetry.lock says it without an index: uv and
Poetry install the lock's own files (``slugslim.deps.locked``), and only Pythons in the lock's
``requires-python`` (Poetry: ``python-versions``) can be picked. Then:

- the app's Python has one for every build: nothing to do;
- the app names no Python: write ``.python-version`` with the newest Python that has a wheel for
  every build, and say so in one line;
- the app pins its Python: stop with an error naming the file, the line, the Pythons that work, and the fix;
- the index cannot be read: a warning, and the build goes on unchanged.

``CHECKED`` names the frameworks of the catalogue (``slugslim.core.frameworks``) checked here, on the
app's own index. PyTorch is not among them: its CPU builds live on ``swap.torch_index``, and the swap's
lookup there already stops a pin that has no ``+cpu`` wheel for the app's Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from slugslim.core import frameworks, log
from slugslim.core.config import SwapConfig
from slugslim.core.errors import LookupFailed, PreflightError
from slugslim.core.frameworks import Framework
from slugslim.deps import locked, markers, pyversion, requirements, simpleindex
from slugslim.deps.sources import REQUIREMENTS, index_options

CHECKED = ("TensorFlow",)


@dataclass(frozen=True)
class Declared:
    """One framework build the install will ask for: ``tensorflow-cpu==2.21.0`` from requirements.txt line 3."""

    framework: str
    name: str  # what pip installs (the CPU build when the swap will make it so)
    specifier: str
    where: str
    written: str  # the requirement as the app wrote it, without markers

    @property
    def requirement(self) -> str:
        return f"{self.name}{self.specifier}"

    @property
    def asked(self) -> str:
        """``tensorflow==2.21.0 (installed as tensorflow-cpu==2.21.0)``."""
        return self.written if self.written == self.requirement else f"{self.written} (installed as {self.requirement})"


@dataclass
class Preflight:
    status: str = "none"  # none | ok | chose | unreachable | no-python
    python: str = ""
    chosen: str = ""
    builds: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "python": self.python, "chosen": self.chosen, "builds": self.builds,
                "message": self.message}


def _framework_of(name: str) -> Framework | None:
    """The checked framework that ``name`` (a GPU build, or the CPU build it is swapped for) installs."""
    key = canonicalize_name(name)
    return next((f for f in frameworks.FRAMEWORKS
                 if f.name in CHECKED and (key in f.builds or key in f.builds.values())), None)


def _installed_name(name: str, config: SwapConfig) -> str:
    target = frameworks.renamed_builds().get(canonicalize_name(name))
    return target if target and config.enabled and not frameworks.kept(name, config) else canonicalize_name(name)


def declared(app_dir: Path, python: str, config: SwapConfig, lock: locked.Lock | None = None) -> list[Declared]:
    """Framework builds in requirements.txt (and its -r files), ``lock`` (uv.lock, poetry.lock) or
    Pipfile.lock that apply on a dyno."""
    found: list[Declared] = []
    root = app_dir / REQUIREMENTS
    if lock is not None:  # what the sync installs on a dyno with this Python, as the lock pins it
        for package in lock.installed(markers.dyno_environment(python)):
            framework = _framework_of(package.name)
            if framework is not None:
                pinned = f"{package.name}=={package.version}"
                found.append(Declared(framework.name, package.name, f"=={package.version}", lock.file, pinned))
    elif root.is_file():
        environment = markers.dyno_environment(python)
        for parsed, _, entry in requirements.read_tree(root, app_dir).entries():
            req = entry.requirement
            framework = _framework_of(req.name) if req is not None and not parsed.constraint else None
            if req is not None and framework is not None and markers.applies_on_dyno(req, environment):
                where = f"{parsed.path.relative_to(app_dir).as_posix()} line {entry.lineno}"
                found.append(Declared(framework.name, _installed_name(req.name, config), str(req.specifier), where,
                                      f"{canonicalize_name(req.name)}{req.specifier}"))
    elif (app_dir / locked.PIPFILE_LOCK).is_file():
        # Pipenv installs the lock as written; the finish phase swaps the build after the install.
        try:
            text = (app_dir / locked.PIPFILE_LOCK).read_text(encoding="utf-8")
            pipfile_lock = locked.loads(locked.PIPFILE_LOCK, text)
        except ValueError:  # also a text that is not UTF-8
            return found
        for package in sorted(pipfile_lock.packages, key=lambda p: p.name):
            framework = _framework_of(package.name)
            if framework is not None and "default" in package.groups:
                try:
                    pinned = f"{package.name}=={package.version}" if package.version else package.name
                    specifier = str(Requirement(pinned).specifier)
                except InvalidRequirement:
                    continue
                found.append(Declared(framework.name, package.name, specifier, locked.PIPFILE_LOCK,
                                      f"{package.name}{specifier}"))
    return found


def check(app_dir: Path, python: pyversion.AppPython, config: SwapConfig, where: simpleindex.Settings) -> Preflight:
    """Decide; writes ``.python-version`` only when the app names no Python. Raises PreflightError."""
    result = Preflight(python=python.minor)
    lock = locked.read(app_dir)
    builds = declared(app_dir, python.minor, config, lock)
    if not builds:
        return result
    facts: list[tuple[Declared, simpleindex.Availability]] = []
    for build in builds:
        if lock is not None:
            facts.append((build, _in_lock(lock, build)))
        else:
            try:
                index_files = simpleindex.files(build.name, where)
            except LookupFailed as exc:
                result.status, result.message = "unreachable", str(exc)
                log.warning(f"Warning: slugslim could not check which Pythons have a {build.name} wheel: {exc}.\n"
                            "The build goes on unchanged.")
                return result
            facts.append((build, simpleindex.availability(build.name, SpecifierSet(build.specifier), index_files,
                                                          pyversion.SUPPORTED, where.pre)))
        found = facts[-1][1]
        result.builds.append({"framework": build.framework, "requirement": build.requirement, "where": build.where,
                              "pythons": found.pythons()})
    missing = [(b, a) for b, a in facts if python.minor not in a.pythons()]
    if not missing:
        result.status = "ok"
        return result
    working = [p for p in pyversion.SUPPORTED
               if (lock is None or lock.allows(p)) and all(p in a.pythons() for _, a in facts)]
    build, found = missing[0]
    if python.named_by_app:
        raise PreflightError(python.where, python.version, build.name, build.asked, build.where, working,
                             found.newest_any.get(python.minor, ""),
                             installer=lock.installer if lock else "pip")
    if not working:
        result.status = "no-python"
        result.message = f"no Python that heroku/python offers has a wheel for every one of {_names(facts)}"
        log.warning(f"Warning: {result.message}; the install will likely fail.\n"
                    "Pin releases of these that share a Python version.")
        return result
    result.status, result.chosen = "chose", working[-1]
    (app_dir / pyversion.VERSION_FILE).write_text(f"{result.chosen}\n", encoding="utf-8")
    result.message = (f"Python {result.chosen}: wrote {pyversion.VERSION_FILE}, because {build.where} "
                      f"({build.requirement}) has no wheel for Python {python.minor}, {python.where}; commit a "
                      f"{pyversion.VERSION_FILE} containing {result.chosen} to make this explicit")
    log.detail(result.message)
    return result


def _in_lock(lock: locked.Lock, build: Declared) -> simpleindex.Availability:
    """For each Python, whether what the lock installs of ``build.name`` there has a file for it (a
    Python for which the lock installs none of it needs none)."""
    result = simpleindex.Availability(build.requirement)
    for python in pyversion.SUPPORTED:
        packages = [p for p in lock.installed(markers.dyno_environment(python)) if p.name == build.name]
        fits = [p.version for p in packages if p.installable_on(python)]
        result.by_python[python] = fits if packages else [build.specifier.removeprefix("==")]
        if fits:
            result.newest_any[python] = fits[0]
    return result


def _names(facts: list[tuple[Declared, simpleindex.Availability]]) -> str:
    return ", ".join(b.requirement for b, _ in facts)


def index_settings(app_dir: Path, config_vars: Mapping[str, str]) -> simpleindex.Settings:
    """The index settings heroku/python's pip will use for this app."""
    root = app_dir / REQUIREMENTS
    options = index_options(requirements.read_tree(root, app_dir).files) if root.is_file() else []
    return simpleindex.settings(config_vars, options)
