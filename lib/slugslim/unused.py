"""Requirements the app lists but never imports: a warning with their installed size, never a removal.

The evidence is static. We read the app's own Python files (everything outside the installed
environment) with ``ast``, collect every module it imports (``import x``, ``from x import y``,
``importlib.import_module("x")``, dotted strings such as Django's ``"whitenoise.middleware.X"``)
and every command its ``Procfile`` runs (``gunicorn`` is used through its console script, and
``-k uvicorn.workers.UvicornWorker`` names a module). Import names map to distributions through
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

import ast
import importlib
import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from slugslim.installed import Installed, canonical

REQUIREMENTS_FILES = ("requirements.txt",)
# Directories that are not the app's own code.
SKIP_DIRS = frozenset({".heroku", ".slugslim", ".git", "node_modules", "__pycache__", "site-packages", ".venv", "venv"})
# Loaded by SQLAlchemy or Django from a database URL or setting, never imported by name.
DYNAMIC_DRIVERS = frozenset(
    {"psycopg2", "psycopg2-binary", "psycopg", "psycopg-binary", "psycopg-c", "mysqlclient", "pymysql", "cx-oracle"}
)
_IMPORT_RE = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w., ]+))", re.MULTILINE)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_PROCFILE_TOKEN = re.compile(r"^([A-Za-z_][\w.]*)(:[\w.()]*)?$")


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


@dataclass
class Usage:
    """What the app's code and Procfile reference."""

    modules: set[str] = field(default_factory=set)  # dotted names
    commands: set[str] = field(default_factory=set)  # words of Procfile commands


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


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw if not buffer else raw.lstrip()
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        yield start, buffer + line
        buffer = ""
    if buffer:
        yield start, buffer


def _read_requirements_txt(path: Path, app_dir: Path, seen: set[Path]) -> list[TopRequirement]:
    resolved = path.resolve()
    if resolved in seen or not path.is_file():
        return []
    seen.add(resolved)
    result: list[TopRequirement] = []
    label = os.path.relpath(path, app_dir)
    for number, line in _logical_lines(path.read_text(encoding="utf-8", errors="replace")):
        text = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not text:
            continue
        include = re.match(r"^(?:-r|--requirement)(?:\s+|=)(\S+)", text)
        if include:
            result.extend(_read_requirements_txt(path.parent / include.group(1), app_dir, seen))
            continue
        egg = re.search(r"#egg=([\w.\-\[\]]+)", line)
        if text.startswith("-e") or text.startswith("--editable"):
            if egg:
                text = egg.group(1)
            else:
                continue
        elif text.startswith("-"):
            continue
        text = re.sub(r"\s--hash[= ]\S+", "", text)
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        result.append(TopRequirement(canonical(req.name), frozenset(req.extras), f"{label} line {number}"))
    return result


def _read_toml_requirements(app_dir: Path) -> list[TopRequirement]:
    try:
        tomllib: Any = importlib.import_module("tomllib")
    except ImportError:  # heroku-22's python3.10: tomli, the same parser, comes with our tools (tools.lock)
        tomllib = importlib.import_module("tomli")

    result: list[TopRequirement] = []
    pipfile = app_dir / "Pipfile"
    if pipfile.is_file():
        try:
            data = tomllib.loads(pipfile.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
        for name in data.get("packages", {}):
            result.append(TopRequirement(canonical(str(name)), frozenset(), "Pipfile [packages]"))
    pyproject = app_dir / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
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


# --- what the app uses -----------------------------------------------------------------------


def app_sources(app_dir: Path) -> Iterable[Path]:
    """The app's own .py files: not the installed environment, not a virtualenv, not VCS data."""
    for current, dirs, files in os.walk(app_dir):
        dirs[:] = [
            d
            for d in dirs
            if d not in SKIP_DIRS and not os.path.exists(os.path.join(current, d, "pyvenv.cfg"))
            and not os.path.islink(os.path.join(current, d))
        ]
        for name in files:
            if name.endswith(".py"):
                yield Path(current, name)


def scan_source(text: str) -> set[str]:
    """Every module a Python file imports, or names as a dotted string."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        # Newer syntax than our python understands: fall back to the import lines.
        names: set[str] = set()
        for match in _IMPORT_RE.finditer(text):
            if match.group(1):
                names.add(match.group(1))
            else:
                names.update(part.split(" as ")[0].strip() for part in match.group(2).split(","))
        return {n for n in names if n and not n.startswith(".")}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
            found.add(node.value)  # "whitenoise.middleware.WhiteNoiseMiddleware", import_module("a.b")
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.add(node.args[0].value)
    return found


def procfile_words(text: str) -> tuple[set[str], set[str]]:
    """(commands, modules) that the Procfile's process types run.

    Every word counts as a possible console script (``newrelic-admin run-program gunicorn``
    runs both), ``python -m x`` and ``module:app`` or dotted arguments count as imports.
    """
    commands: set[str] = set()
    modules: set[str] = set()
    for line in text.splitlines():
        if ":" not in line or line.lstrip().startswith("#"):
            continue
        _, command = line.split(":", 1)
        try:
            words = shlex.split(command, posix=True)
        except ValueError:
            words = command.split()
        queue = list(words)
        while queue:
            word = queue.pop(0)
            if " " in word:  # bash -c "gunicorn app:app"
                try:
                    queue[:0] = shlex.split(word)
                except ValueError:
                    queue[:0] = word.split()
                continue
            if "=" in word and not word.startswith("-"):
                value = word.split("=", 1)[1]
                word = value if value else word
            base = os.path.basename(word)
            commands.add(base)
            token = word.split("=", 1)[-1]
            match = _PROCFILE_TOKEN.match(token)
            if match:
                modules.add(match.group(1))
    return commands, modules


def usage(app_dir: Path) -> Usage:
    result = Usage()
    for path in app_sources(app_dir):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        result.modules.update(scan_source(text))
    procfile = app_dir / "Procfile"
    if procfile.is_file():
        commands, modules = procfile_words(procfile.read_text(encoding="utf-8", errors="replace"))
        result.commands.update(commands)
        result.modules.update(modules)
    return result


# --- putting it together ---------------------------------------------------------------------


def used_distributions(installed: Installed, use: Usage) -> set[str]:
    providers = installed.providers()
    used: set[str] = set()
    for module in use.modules:
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


def _dependencies(installed: Installed, key: str, extras: frozenset[str] = frozenset()) -> set[str]:
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
        for line in dist.requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
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
    used = used_distributions(installed, usage(app_dir))
    needed_by_used: set[str] = set()
    for key in used:
        needed_by_used |= _dependencies(installed, key)
    candidates = [r for r in reqs if r.name not in needed_by_used and r.name not in ignored]
    flagged = {r.name for r in candidates}
    keep: set[str] = set(needed_by_used)
    for req in reqs:
        if req.name not in flagged:
            keep |= _dependencies(installed, req.name, req.extras)
    result = []
    for req in candidates:
        freed = _dependencies(installed, req.name, req.extras) - keep
        size = sum(installed.distributions[key].bytes for key in freed)
        result.append(Unused(installed.distributions[req.name].key, size, req.source))
    return sorted(result, key=lambda u: (-u.bytes, u.name))
