"""What a uv.lock or a poetry.lock installs on a dyno, read before the install (the wheel preflight).

heroku/python runs ``uv sync --locked --no-default-groups`` and ``poetry sync --only main``, which
install the lock's own files and ask no index what else exists, so the lock's file names say for
which Pythons a locked package can be installed.

- uv.lock: the top-level ``requires-python``; each ``[[package]]`` has ``name``, ``version``,
  ``source``, ``dependencies`` (each ``{ name, version?, marker?, extra? }``), ``optional-dependencies``
  by extra, ``resolution-markers`` when the lock forks by environment, ``wheels`` (each with its
  ``url``) and maybe an ``sdist``. What is installed is the project (``source = { virtual = "." }``
  or ``{ editable = "." }``) and what its dependencies reach through edges whose marker holds;
  dependency groups are not (``--no-default-groups``).
- poetry.lock: ``[metadata] python-versions``; each ``[[package]]`` has ``name``, ``version``,
  ``python-versions``, ``groups``, ``markers`` (one string, or one per group), ``optional`` (only
  with extras, which heroku/python does not ask for) and ``files`` (each with its ``file`` name).
  Poetry's own constraints (``^3.11``, ``~3.11``, ``a || b``) are read as Poetry reads them.

A marker that cannot be decided counts as holding, and a package with an sdist as installable on
every Python (it may build): the preflight stops a build only on what the lock says for sure.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from slugslim.deps import simpleindex, tomlfile
from slugslim.deps.sources import package_manager

LOCKS = {"uv": "uv.lock", "poetry": "poetry.lock"}


@dataclass(frozen=True)
class Edge:
    name: str
    version: str = ""
    marker: str = ""
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class LockedPackage:
    name: str  # canonical
    version: str
    files: tuple[str, ...] = ()  # file names: wheels, and sdists
    python_versions: str = ""  # Poetry's python-versions of the package
    markers: tuple[str, ...] = ()  # it is installed where any holds (none: everywhere)
    dependencies: tuple[Edge, ...] = ()
    extras: Mapping[str, tuple[Edge, ...]] = field(default_factory=dict)
    root: bool = False  # uv: the app's own project

    def installable_on(self, python: str) -> bool:
        """A file of it installs on a dyno running ``python`` (``3.13``): a wheel it accepts, or an sdist."""
        if not allows(self.python_versions, python):
            return False
        accepted = simpleindex.dyno_tags(python)
        for name in self.files:
            if not name.endswith(".whl"):
                return True
            try:
                if parse_wheel_filename(name)[3] & accepted:
                    return True
            except InvalidWheelFilename:
                continue
        return False


@dataclass(frozen=True)
class Lock:
    file: str  # uv.lock or poetry.lock
    requires_python: str  # the project's Python range, as the lock records it ("" when it does not)
    packages: tuple[LockedPackage, ...]

    @property
    def installer(self) -> str:
        return "uv" if self.file == LOCKS["uv"] else "Poetry"

    def allows(self, python: str) -> bool:
        return allows(self.requires_python, python)

    def installed(self, environment: Mapping[str, str]) -> list[LockedPackage]:
        """What the sync installs on a dyno whose PEP 508 marker values are ``environment``."""
        present = [p for p in self.packages if not p.markers or any(_holds(m, environment) for m in p.markers)]
        roots = [p for p in present if p.root]
        if self.file != LOCKS["uv"] or not roots:
            return [p for p in present if not p.root]
        reached: dict[tuple[str, str], LockedPackage] = {}
        pending = [edge for root in roots for edge in root.dependencies]
        while pending:
            edge = pending.pop()
            if edge.marker and not _holds(edge.marker, environment):
                continue
            for package in present:
                if package.name != edge.name or (edge.version and package.version != edge.version):
                    continue
                if (package.name, package.version) not in reached:
                    reached[package.name, package.version] = package
                    pending += package.dependencies
                pending += [e for extra in edge.extras for e in package.extras.get(extra, ())]
        return list(reached.values())


def read(app_dir: Path) -> Lock | None:
    """The lock heroku/python will install for this app (uv.lock or poetry.lock), or None."""
    manager = package_manager(app_dir)
    if manager not in LOCKS:
        return None
    data = tomlfile.read(app_dir / LOCKS[manager])
    if data is None:
        return None  # uv and Poetry name a lock they cannot read themselves
    return _uv(data) if manager == "uv" else _poetry(data)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _edges(value: Any) -> tuple[Edge, ...]:
    return tuple(Edge(canonicalize_name(str(d["name"])), str(d.get("version", "")), str(d.get("marker", "")),
                      tuple(str(e) for e in _list(d.get("extra"))))
                 for d in map(_table, _list(value)) if d.get("name"))


def _uv(data: dict[str, Any]) -> Lock:
    packages = []
    for entry in map(_table, _list(data.get("package"))):
        source = _table(entry.get("source"))
        urls = [str(_table(w).get("url", "")) for w in _list(entry.get("wheels"))]
        if entry.get("sdist"):
            urls.append(str(_table(entry["sdist"]).get("url", "") or "source.tar.gz"))
        packages.append(LockedPackage(
            canonicalize_name(str(entry.get("name", ""))), str(entry.get("version", "")),
            tuple(urllib.parse.unquote(urllib.parse.urlsplit(u).path.rsplit("/", 1)[-1]) for u in urls),
            markers=tuple(str(m) for m in _list(entry.get("resolution-markers"))),
            dependencies=_edges(entry.get("dependencies")),
            extras={str(k): _edges(v) for k, v in _table(entry.get("optional-dependencies")).items()},
            root=source.get("virtual") == "." or source.get("editable") == "."))
    return Lock(LOCKS["uv"], str(data.get("requires-python", "")), tuple(packages))


def _poetry(data: dict[str, Any]) -> Lock:
    packages = []
    for entry in map(_table, _list(data.get("package"))):
        groups = [str(g) for g in _list(entry.get("groups"))]
        if entry.get("optional") is True or (groups and "main" not in groups):
            continue
        markers = entry.get("markers", "")
        marker = str(_table(markers).get("main", "")) if isinstance(markers, dict) else str(markers)
        packages.append(LockedPackage(
            canonicalize_name(str(entry.get("name", ""))), str(entry.get("version", "")),
            tuple(str(_table(f).get("file", "")) for f in _list(entry.get("files"))),
            python_versions=str(entry.get("python-versions", "")), markers=(marker,) if marker else ()))
    return Lock(LOCKS["poetry"], str(_table(data.get("metadata")).get("python-versions", "")), tuple(packages))


def _holds(marker: str, environment: Mapping[str, str]) -> bool:
    try:
        return Marker(marker).evaluate(dict(environment))
    except (InvalidMarker, UndefinedEnvironmentName, UndefinedComparison):
        return True


_CARET = re.compile(r"^\^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_TILDE = re.compile(r"^~(?!=)\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def allows(constraint: str, python: str) -> bool:
    """Whether ``python`` (``3.13``) is in a PEP 440 or Poetry range; one that cannot be read allows it."""
    constraint = constraint.strip()
    if not constraint or constraint == "*":
        return True
    version = Version(f"{python}.0")
    for alternative in constraint.split("||"):
        clauses = []
        for clause in (c.strip() for c in alternative.split(",") if c.strip()):
            caret, tilde = _CARET.match(clause), _TILDE.match(clause)
            if caret:
                major, minor, patch = (int(p or 0) for p in caret.groups())
                upper = f"{major + 1}" if major else (f"0.{minor + 1}" if minor or caret.group(3) is None
                                                       else f"0.0.{patch + 1}")
                clauses += [f">={major}.{minor}.{patch}", f"<{upper}"]
            elif tilde:
                major, minor, patch = (int(p or 0) for p in tilde.groups())
                upper = f"{major}.{minor + 1}" if tilde.group(2) else f"{major + 1}"
                clauses += [f">={major}.{minor}.{patch}", f"<{upper}"]
            elif re.match(r"^\d", clause):
                clauses.append(f"=={clause}")
            else:
                clauses.append(clause)
        try:
            if SpecifierSet(",".join(clauses)).contains(version, prereleases=True):
                return True
        except (InvalidSpecifier, InvalidVersion):
            return True
    return False
