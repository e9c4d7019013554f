"""The one import scanner: which modules a Python file, an app or a Procfile command names.

Static only; it never runs app code. A source file gives:

- ``modules``: names it imports as modules (``import a.b.c``, the ``a.b`` of ``from a.b import
  c``, literal ``importlib.import_module("a.b")`` and ``__import__("a.b")``), relative imports
  resolved against the file's package when its path is known;
- ``maybe``: names that are modules only if they exist as such (``from a import b`` gives
  ``a.b``, which may be a function), and imports inside ``try:`` blocks, which the app expects
  may fail, and in the ``except`` of a ``try:`` that imports slugslim's loader (the app's fallback
  where slugslim did not ship it: never in a slug of slugslim's);
- ``strings``: other dotted string literals (Django's ``"whitenoise.middleware.X"``, TensorFlow's
  lazy loaders), which may name modules;
- ``hub_models``: Hugging Face Hub model ids its calls name literally (``hubrefs``), with the line.

A Procfile command gives the modules its process loads at boot: ``module:app`` arguments
(gunicorn, uvicorn, waitress), ``python -m x``, gunicorn's worker class (``-k``, ``--worker-class``,
its default sync worker) and, for each console script it runs, the module that script's entry
point names (read from the installed metadata by ``installed.console_scripts``).

A UTF-8 byte order mark at the start of a source file or a Procfile is ignored, as Python and
Heroku ignore it. Source newer than the Python running slugslim falls back to the import lines.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slugslim.appcheck.hubrefs import HubRef, hub_ref, module_constants
from slugslim.core.app import walk
from slugslim.core.shipped import HELPERS

BOM = "\ufeff"
# Directories of an app checkout that are not the app's own code.
MAX_APP_FILES = 5000
# gunicorn's worker classes by their short names; "sync" is its default.
GUNICORN_WORKERS = {"sync": "gunicorn.workers.sync", "gthread": "gunicorn.workers.gthread",
                    "eventlet": "gunicorn.workers.geventlet", "gevent": "gunicorn.workers.ggevent",
                    "tornado": "gunicorn.workers.gtornado"}
_PROCESS = re.compile(r"^([A-Za-z0-9_-]+):\s*(.*)$")
_APP_REF = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_][\w.]*(\(.*\))?$")
_DOTTED = re.compile(r"^(\.*)([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|(?<=\.)[A-Za-z_]\w*)$")
_FROM = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#;]*)", re.M)
_QUOTED = re.compile(r"""['"](\.*[A-Za-z_]\w*(?:\.\w+)*)['"]""")
_LOADER = frozenset(name.removesuffix(".py") for name in HELPERS)


@dataclass
class Found:
    """Module names, absolute and dotted, split by how sure the scan is that each is a module."""

    modules: set[str] = field(default_factory=set)
    maybe: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)
    commands: set[str] = field(default_factory=set)  # words of Procfile commands (console scripts)
    hub_models: list[HubRef] = field(default_factory=list)  # in file order; source files only

    def names(self) -> set[str]:
        return self.modules | self.maybe | self.strings

    def update(self, other: Found) -> None:
        self.modules |= other.modules
        self.maybe |= other.maybe
        self.strings |= other.strings
        self.commands |= other.commands
        self.hub_models.extend(other.hub_models)


def decode(data: bytes) -> str:
    """Source or Procfile bytes as text, without a UTF-8 byte order mark."""
    return data.decode("utf-8", errors="replace").removeprefix(BOM)


def _imports_loader(body: list[ast.stmt]) -> bool:
    """Whether these statements import slugslim's loader (``from slugslim_models import SentenceEncoder``)."""
    for node in (n for statement in body for n in ast.walk(statement)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        if any(name.split(".", 1)[0] in _LOADER for name in names):
            return True
    return False


def _package(path: str) -> list[str]:
    """The package a file belongs to: 'pkg/sub/mod.py' -> ['pkg', 'sub']."""
    return [p for p in path.replace(os.sep, "/").split("/")[:-1] if p]


def _resolve(package: list[str], dots: int, name: str) -> str:
    if not dots:
        return name
    if dots > len(package):
        return ""  # above the top package, or a file whose package is not known
    base = package[: len(package) - (dots - 1)]
    return ".".join([*base, name] if name else base)


class _Visitor(ast.NodeVisitor):
    def __init__(self, package: list[str], path: str = "", constants: Mapping[str, str] | None = None) -> None:
        self.package = package
        self.path = path  # for hub_models
        self.constants = constants or {}  # the file's module-level string constants
        self.found = Found()
        self.guarded = 0  # inside a try: body

    def _add(self, name: str, sure: bool) -> None:
        if name:
            (self.found.modules if sure and not self.guarded else self.found.maybe).add(name)

    def visit_Try(self, node: ast.Try) -> None:
        self.guarded += 1
        for statement in node.body:
            self.visit(statement)
        self.guarded -= 1
        fallback = int(_imports_loader(node.body))
        self.guarded += fallback
        for handler in node.handlers:
            self.visit(handler)
        self.guarded -= fallback
        for other in [*node.orelse, *node.finalbody]:
            self.visit(other)

    visit_TryStar = visit_Try

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, True)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.package, node.level, node.module or "")
        if not base:
            return  # relative, in a file whose package is not known
        self._add(base, True)
        for alias in node.names:
            if alias.name != "*":
                self._add(f"{base}.{alias.name}", False)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        first = node.args[0] if node.args else None
        if called in ("import_module", "__import__") and isinstance(first, ast.Constant) \
                and isinstance(first.value, str) and first.value and not first.value.startswith("."):
            self._add(first.value, True)
        ref = hub_ref(node, called, self.constants, self.path)
        if ref is not None:
            self.found.hub_models.append(ref)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and len(node.value) < 200:
            match = _DOTTED.match(node.value)
            if match:
                name = _resolve(self.package, len(match.group(1)), match.group(2))
                if name:
                    self.found.strings.add(name)


def scan_source(text: str | bytes, path: str = "") -> Found:
    """What one Python file imports. ``path`` (relative to its import root) resolves relative imports
    and is the path ``hub_models`` give."""
    if isinstance(text, bytes):
        text = decode(text)
    text = text.removeprefix(BOM)
    package = _package(path)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return _scan_lines(text, package)
    visitor = _Visitor(package, path.replace(os.sep, "/"), module_constants(tree))
    visitor.visit(tree)
    return visitor.found


def scan_quick(text: str | bytes, path: str = "") -> Found:
    """``scan_source`` read from the import lines and quoted names, without parsing: 20x faster,
    for whole site-packages (parsing TensorFlow's sources would take minutes). Imports inside
    ``try:`` are not told apart, and a quoted dotted name in a comment counts as a string."""
    if isinstance(text, bytes):
        text = decode(text)
    package = _package(path)
    found = _scan_lines(text, package)
    for match in _QUOTED.finditer(text):
        literal = match.group(1)
        stripped = literal.lstrip(".")
        name = _resolve(package, len(literal) - len(stripped), stripped)
        if name and ("." in name or literal.startswith(".")):
            found.strings.add(name)
    return found


def _scan_lines(text: str, package: list[str]) -> Found:
    """The import lines: all that newer syntax than our Python understands still tells."""
    found = Found()
    for match in _FROM.finditer(text):
        base = _resolve(package, len(match.group(1)), match.group(2))
        if not base:
            continue
        found.modules.add(base)
        for item in match.group(3).strip("()").replace("\\", " ").split(","):
            word = item.strip().split(" ", 1)[0].strip()
            if word and word != "*" and word.isidentifier():
                found.maybe.add(f"{base}.{word}")
    for match in _IMPORT.finditer(text):
        for item in match.group(1).replace("\\", " ").split(","):
            word = item.strip().split(" ", 1)[0].strip()
            if word and all(part.isidentifier() for part in word.split(".")):
                found.modules.add(word)
    return found


def app_sources(app_dir: Path) -> Iterator[Path]:
    """The app's own .py files (``core.app.walk``), at most MAX_APP_FILES of them."""
    seen = 0
    for base, _, files in walk(app_dir):
        for name in files:
            if name.endswith(".py"):
                seen += 1
                if seen > MAX_APP_FILES:
                    return
                yield base / name


def processes(app_dir: Path) -> dict[str, str]:
    """The Procfile's process types -> their commands (empty without a Procfile)."""
    try:
        text = decode((app_dir / "Procfile").read_bytes())
    except OSError:
        return {}
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _PROCESS.match(line.strip())
        if match and match.group(2).strip():
            found.setdefault(match.group(1), match.group(2).strip())
    return found


def _words(command: str) -> list[str]:
    try:
        words = shlex.split(command, posix=True)
    except ValueError:
        words = command.split()
    out: list[str] = []
    for word in words:
        if " " in word:  # bash -c "exec gunicorn app:app"
            out.extend(_words(word))
        else:
            out.append(word)
    return out


def command_imports(command: str, scripts: Mapping[str, str] | None = None) -> Found:
    """What a Procfile command loads. ``scripts``: console script name -> 'module:attr'."""
    found = Found()
    words = _words(command)
    bases = [os.path.basename(w) for w in words]
    worker = ""
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if "=" in word and not word.startswith("-") and re.match(r"^[A-Za-z_]\w*=", word):
            continue  # FOO=bar before the command
        found.commands.add(bases[index])
        if word == "-m" and following and any(b.startswith("python") for b in bases[:index]):
            found.modules.add(following)
        elif word in ("-k", "--worker-class"):
            worker = following
        elif word.startswith("--worker-class="):
            worker = word.split("=", 1)[1]
        elif word.startswith("-k") and len(word) > 2:
            worker = word[2:]
        match = _APP_REF.match(word.split("=", 1)[-1])
        if match:
            found.modules.add(match.group(1))
        entry = (scripts or {}).get(bases[index])
        if entry:
            found.modules.add(entry.split(":", 1)[0].strip())
    if "gunicorn" in bases:
        if worker and "." in worker:
            found.modules.add(worker.rpartition(".")[0])
        elif worker in GUNICORN_WORKERS or not worker:
            found.modules.add(GUNICORN_WORKERS[worker or "sync"])
    return found


def scan_app(app_dir: Path, scripts: Mapping[str, str] | None = None) -> Found:
    """Everything the app's own source files and its Procfile's commands import, and the Hub models
    they name. An id that is also a path in the app (``from_pretrained("models")`` with a ``models/``
    directory) is the app's local copy, which ``from_pretrained`` reads first from the dyno's /app."""
    found = Found()
    for path in app_sources(app_dir):
        try:
            found.update(scan_source(path.read_bytes(), path.relative_to(app_dir).as_posix()))
        except OSError:
            continue
    for command in processes(app_dir).values():
        found.update(command_imports(command, scripts))
    found.hub_models = [ref for ref in found.hub_models if not os.path.lexists(app_dir / ref.id)]
    return found
