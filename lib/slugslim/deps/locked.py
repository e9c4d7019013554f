"""The one reader of lock files: uv.lock, poetry.lock and Pipfile.lock, and what the first two install on a dyno.

The wheel preflight reads what a uv.lock or a poetry.lock installs (``read``, ``Lock.installed``);
the lock swap (``prepare.swap.locks``) reads every package of the three, with its hashes and index
(``loads``).

heroku/python runs ``uv sync --locked --no-default-groups`` and ``poetry sync --only main``, which
install the lock's own files and ask no index what else exists, so the lock's file names say for
which Pythons a locked package can be installed.

- uv.lock: the top-level ``requires-python``; each ``[[package]]`` has ``name``, ``version``,
  ``source``, ``dependencies`` (each ``{ name, version?, marker?, extra? }``), ``optional-dependencies``
  by extra, ``resolution-markers`` when the lock forks by environment, ``wheels`` (each with its
  ``url``) and maybe an ``sdist``. What is installed is the project (``source = { virtual = "." }``
  or ``{ editable = "." }``) and what its dependencies reach through edges whose marker holds;
  dependency groups (``dev-dependencies``) are not (``--no-default-groups``).
- Pipfile.lock (JSON): ``_meta``, then per category (``default``, ``develop``) each package's
  ``version`` (``==2.13.0``), ``hashes``, ``markers`` and the source name (``index``) of those the
  Pipfile names. It records no dependency graph and no file names.
- poetry.lock: ``[metadata] python-versions``; each ``[[package]]`` has ``name``, ``version``,
  ``python-versions``, ``groups``, ``markers`` (one string, or one per group), ``optional`` (only
  with extras, which heroku/python does not ask for), ``files`` (each with its ``file`` name and
  ``hash``), ``dependencies`` (a table by name) and maybe a ``source`` (``url``, ``reference``).
  Poetry's own constraints (``^3.11``, ``~3.11``, ``a || b``) are read as Poetry reads them.

A marker that cannot be decided counts as holding, and a package with an sdist as installable on
every Python (it may build): the preflight stops a build only on what the lock says for sure.
"""

from __future__ import annotations

import json
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

LOCKS = {"uv": "uv.lock", "poetry": "poetry.lock"}  # what the preflight reads as installed files
PIPFILE_LOCK = "Pipfile.lock"
# The group each manager installs on a dyno: heroku/python's ``poetry sync --only main``, ``pipenv install``.
_INSTALLED_GROUP = {LOCKS["poetry"]: "main", PIPFILE_LOCK: "default"}


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
    hashes: frozenset[str] = frozenset()  # of its files, as the lock records them (sha256:...)
    source: str = ""  # where it comes from, as the lock says: uv's source table, Poetry's source URL or
    # name, Pipfile.lock's index name ("" for the default index)
    python_versions: str = ""  # Poetry's python-versions of the package
    markers: tuple[str, ...] = ()  # it is installed where any holds (none: everywhere)
    groups: tuple[str, ...] = ()  # Poetry's groups; Pipfile.lock's category
    optional: bool = False  # Poetry: only installed for an extra
    dependencies: tuple[Edge, ...] = ()  # Poetry: names only
    extras: Mapping[str, tuple[Edge, ...]] = field(default_factory=dict)
    dev: Mapping[str, tuple[Edge, ...]] = field(default_factory=dict)  # uv: dependency groups
    project: str = ""  # uv: the directory of a project of the app's workspace (virtual or editable)

    @property
    def root(self) -> bool:
        """uv: the app's own project."""
        return self.project == "."

    @property
    def edges(self) -> tuple[Edge, ...]:
        """Every dependency, whatever its marker, extra or group."""
        return (*self.dependencies, *(e for es in self.extras.values() for e in es),
                *(e for es in self.dev.values() for e in es))

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
    file: str  # uv.lock, poetry.lock or Pipfile.lock
    requires_python: str  # the project's Python range, as the lock records it ("" when it does not)
    packages: tuple[LockedPackage, ...]

    @property
    def installer(self) -> str:
        return {LOCKS["uv"]: "uv", LOCKS["poetry"]: "Poetry"}.get(self.file, "Pipenv")

    def allows(self, python: str) -> bool:
        return allows(self.requires_python, python)

    def installed(self, environment: Mapping[str, str]) -> list[LockedPackage]:
        """What the sync installs on a dyno whose PEP 508 marker values are ``environment``."""
        group = _INSTALLED_GROUP.get(self.file)
        present = [p for p in self.packages if not p.optional and not (group and p.groups and group not in p.groups)
                   and (not p.markers or any(_holds(m, environment) for m in p.markers))]
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


def loads(file: str, text: str) -> Lock:
    """The lock ``file`` (uv.lock, poetry.lock, Pipfile.lock) whose text is ``text``, every package of it;
    ValueError, saying why, for one that cannot be read."""
    if file == PIPFILE_LOCK:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("_meta"), dict):
            raise ValueError("it has no _meta section")
        return _pipenv(data)
    data = tomlfile.loads(text)
    if not isinstance(data.get("package"), list):
        raise ValueError("it has no [[package]] entries")
    return _uv(data) if file == LOCKS["uv"] else _poetry(data)


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
        stored = [f for f in [_table(entry.get("sdist")), *map(_table, _list(entry.get("wheels")))] if f.get("hash")]
        packages.append(LockedPackage(
            canonicalize_name(str(entry.get("name", ""))), str(entry.get("version", "")),
            tuple(urllib.parse.unquote(urllib.parse.urlsplit(u).path.rsplit("/", 1)[-1]) for u in urls),
            hashes=frozenset(str(f["hash"]) for f in stored),
            source=", ".join(f"{k} = {v}" for k, v in sorted(source.items())),
            markers=tuple(str(m) for m in _list(entry.get("resolution-markers"))),
            dependencies=_edges(entry.get("dependencies")),
            extras={str(k): _edges(v) for k, v in _table(entry.get("optional-dependencies")).items()},
            dev={str(k): _edges(v) for k, v in _table(entry.get("dev-dependencies")).items()},
            project=str(source.get("virtual", source.get("editable", "")))))
    return Lock(LOCKS["uv"], str(data.get("requires-python", "")), tuple(packages))


def _poetry(data: dict[str, Any]) -> Lock:
    packages = []
    for entry in map(_table, _list(data.get("package"))):
        markers = entry.get("markers", "")
        marker = str(_table(markers).get("main", "")) if isinstance(markers, dict) else str(markers)
        files = list(map(_table, _list(entry.get("files"))))
        source = _table(entry.get("source"))
        packages.append(LockedPackage(
            canonicalize_name(str(entry.get("name", ""))), str(entry.get("version", "")),
            tuple(str(f.get("file", "")) for f in files),
            hashes=frozenset(str(f["hash"]) for f in files if f.get("hash")),
            source=str(source.get("url") or source.get("reference") or ""),
            python_versions=str(entry.get("python-versions", "")), markers=(marker,) if marker else (),
            groups=tuple(str(g) for g in _list(entry.get("groups"))), optional=entry.get("optional") is True,
            dependencies=tuple(Edge(canonicalize_name(str(d))) for d in _table(entry.get("dependencies")))))
    return Lock(LOCKS["poetry"], str(_table(data.get("metadata")).get("python-versions", "")), tuple(packages))


def _pipenv(data: dict[str, Any]) -> Lock:
    packages = []
    for category, entries in data.items():
        if category == "_meta" or not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            marker = str(entry.get("markers") or "")
            packages.append(LockedPackage(
                canonicalize_name(str(name)), str(entry.get("version", "")).removeprefix("=="),
                hashes=frozenset(str(h) for h in _list(entry.get("hashes"))), source=str(entry.get("index", "")),
                markers=(marker,) if marker else (), groups=(str(category),)))
    return Lock(PIPFILE_LOCK, "", tuple(packages))  # its _meta names the Pipfile's Python, not a range


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
