"""Requirements the app lists but never imports: a warning with their installed size, never a removal.

The evidence is static: every module the app's own Python files and its ``Procfile`` commands
name, as the one import scanner (``imports.scan_app``) reads them, dotted strings such as
Django's ``"whitenoise.middleware.X"`` included, and every word of those commands as a possible
console script (``gunicorn`` is used through its script). Import names map to distributions through
the installed RECORD and ``top_level.txt`` of the *app's* site-packages (``installed.scan``), by
the longest dotted prefix, so namespace packages (``google.protobuf`` vs ``google.cloud``) and
import names that differ from the distribution name (``PIL`` from pillow, ``cv2`` from
opencv-python-headless) resolve to the right distribution.

A requirement is flagged only when nothing the app uses depends on it either, since removing it
would otherwise save nothing. The size shown is what removing it would save: the distribution
and those of its dependencies nothing else needs. Anything loaded in ways a static scan cannot
see goes in ``report.ignore_unused``; database drivers that frameworks load from a URL are
never flagged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from slugslim.appcheck.imports import Found, scan_app
from slugslim.core.errors import SlugslimError
from slugslim.core.installed import Installed, canonical
from slugslim.deps import requirements, tomlfile

REQUIREMENTS_FILES = ("requirements.txt",)
# Loaded by SQLAlchemy or Django from a database URL or setting, never imported by name.
DYNAMIC_DRIVERS = frozenset(
    {"psycopg2", "psycopg2-binary", "psycopg", "psycopg-binary", "psycopg-c", "mysqlclient", "pymysql", "cx-oracle"}
)


@dataclass(frozen=True)
class TopRequirement:
    name: str  # canonical
    extras: frozenset[str]
    source: str  # "requirements.txt line 3"


@dataclass(frozen=True)
class Unused:
    name: str
    bytes: int  # what removing it would free: it and the dependencies only it needs
    source: str

    def message(self, human: Any) -> str:
        return f"{self.name} ({human(self.bytes)} installed) is never imported by your app"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "source": self.source}


# --- the requirements the app declares -------------------------------------------------------


def top_level_requirements(app_dir: Path) -> list[TopRequirement]:
    """Requirements declared in requirements.txt (following -r), Pipfile or pyproject.toml."""
    found: list[TopRequirement] = []
    for name in REQUIREMENTS_FILES:
        path = app_dir / name
        if path.is_file():
            found.extend(_read_requirements_txt(path, app_dir, set()))
    found.extend(_read_toml_requirements(app_dir))
    unique: dict[str, TopRequirement] = {}
    for req in found:
        unique.setdefault(req.name, req)
    return list(unique.values())


def _read_requirements_txt(path: Path, app_dir: Path, seen: set[Path]) -> list[TopRequirement]:
    """The projects ``path`` and the files it includes with -r declare, read by the one requirements
    reader (constraint files declare nothing)."""
    try:
        tree = requirements.read_tree(path, app_dir)
    except SlugslimError:  # a file pip would reject: the build says so; the report just lists nothing
        return []
    result: list[TopRequirement] = []
    for parsed, _, entry in tree.entries():
        if parsed.constraint or parsed.path.resolve() in seen:
            continue
        name = entry.target_name() if entry.kind in ("named", "url", "path", "editable") else None
        if not name:
            continue
        declared = entry.requirement or entry.direct
        extras = frozenset(declared.extras) if declared is not None else frozenset()
        result.append(TopRequirement(canonical(name), extras,
                                     f"{os.path.relpath(parsed.path, app_dir)} line {entry.lineno}"))
    seen.update(parsed.path.resolve() for parsed in tree.files)
    return result


def _read_toml_requirements(app_dir: Path) -> list[TopRequirement]:
    result: list[TopRequirement] = []
    pipfile = app_dir / "Pipfile"
    if pipfile.is_file():
        data = tomlfile.read(pipfile) or {}
        for name in data.get("packages", {}):
            result.append(TopRequirement(canonical(str(name)), frozenset(), "Pipfile [packages]"))
    pyproject = app_dir / "pyproject.toml"
    if pyproject.is_file():
        data = tomlfile.read(pyproject) or {}
        for line in data.get("project", {}).get("dependencies", []):
            try:
                req = Requirement(str(line))
            except InvalidRequirement:
                continue
            result.append(TopRequirement(canonical(req.name), frozenset(req.extras), "pyproject.toml dependencies"))
        poetry = data.get("tool", {}).get("poetry", {}).get("dependencies", {})
        for name in poetry:
            if canonical(str(name)) != "python":
                result.append(TopRequirement(canonical(str(name)), frozenset(), "pyproject.toml [tool.poetry]"))
    return result


# --- putting it together ---------------------------------------------------------------------


def used_distributions(installed: Installed, use: Found) -> set[str]:
    providers = installed.providers()
    used: set[str] = set()
    for module in use.names():
        parts = module.split(".")
        for end in range(len(parts), 0, -1):
            owners = providers.get(".".join(parts[:end]))
            if owners:
                used.update(owners)
                break
    for dist in installed.distributions.values():
        if dist.scripts & use.commands:
            used.add(dist.key)
    return used


def dependencies(installed: Installed, key: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Installed distributions ``key`` needs (itself included), following Requires-Dist.

    Markers other than extras are not evaluated: counting a dependency that a marker would
    skip only makes the savings we claim smaller, never larger.
    """
    needed: set[str] = set()
    stack: list[tuple[str, frozenset[str]]] = [(key, extras)]
    while stack:
        current, wanted = stack.pop()
        dist = installed.distributions.get(current)
        if dist is None or current in needed:
            continue
        needed.add(current)
        for req in dist.meta.requires:
            marker = str(req.marker) if req.marker else ""
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if extra and canonical(extra.group(1)) not in {canonical(e) for e in wanted}:
                continue
            stack.append((canonical(req.name), frozenset(req.extras)))
    return needed


def find_unused(
    app_dir: Path,
    installed: Installed,
    ignore: Iterable[str] = (),
    requirements: list[TopRequirement] | None = None,
) -> list[Unused]:
    """Top-level requirements the app never uses, biggest first."""
    reqs = requirements if requirements is not None else top_level_requirements(app_dir)
    reqs = [r for r in reqs if r.name in installed.distributions]
    ignored = {canonical(name) for name in ignore} | DYNAMIC_DRIVERS
    used = used_distributions(installed, scan_app(app_dir))
    needed_by_used: set[str] = set()
    for key in used:
        needed_by_used |= dependencies(installed, key)
    candidates = [r for r in reqs if r.name not in needed_by_used and r.name not in ignored]
    flagged = {r.name for r in candidates}
    keep: set[str] = set(needed_by_used)
    for req in reqs:
        if req.name not in flagged:
            keep |= dependencies(installed, req.name, req.extras)
    result = []
    for req in candidates:
        freed = dependencies(installed, req.name, req.extras) - keep
        size = sum(installed.distributions[key].bytes for key in freed)
        result.append(Unused(installed.distributions[req.name].key, size, req.source))
    return sorted(result, key=lambda u: (-u.bytes, u.name))
