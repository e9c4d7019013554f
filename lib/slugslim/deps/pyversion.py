"""Which Python the app will get: the one answer every step uses (swap markers, hash lookups, preflight).

heroku/python v351 (``lib/python_version.sh``, ``lib/cache.sh``) decides it from, in order:

1. ``runtime.txt``: ``python-N.N`` or ``python-N.N.N`` (deprecated, still first);
2. ``.python-version``: exactly one version line, ``N.N`` or ``N.N.N``; blank lines and ``#``
   comments are ignored, whitespace around a line is trimmed;
3. ``Pipfile.lock``, only for Pipenv apps: ``_meta.requires.python_full_version``, else
   ``_meta.requires.python_version``;
4. the version the previous build installed, ``CACHE_DIR/.heroku/python-version`` (written as
   ``python-N.N.N``), whose major.minor is kept ("sticky" versions);
5. its default, Python 3.14.

A file that heroku/python would reject (a malformed version, two versions, none at all) is an
error here too, named with its file and line, so the build stops before anything is installed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from slugslim.core.errors import PythonVersionError

# The minor versions heroku/python v351 can install (OLDEST/NEWEST_SUPPORTED_PYTHON_3_MINOR_VERSION).
SUPPORTED = ("3.10", "3.11", "3.12", "3.13", "3.14")
DEFAULT = "3.14"  # DEFAULT_PYTHON_FULL_VERSION's major.minor
VERSION_FILE = ".python-version"
CACHED_VERSION_FILE = Path(".heroku") / "python-version"
_INT = r"(0|[1-9][0-9]*)"
_VERSION = re.compile(rf"^{_INT}\.{_INT}(\.{_INT})?$")
_FULL_VERSION = re.compile(rf"^{_INT}\.{_INT}\.{_INT}$")

# Where the answer came from, as heroku/python names it, and as the build log says it.
ORIGINS = {
    "runtime.txt": "runtime.txt",
    ".python-version": ".python-version",
    "Pipfile.lock": "Pipfile.lock",
    "cached": "the previous build",
    "default": "heroku/python's default",
}


@dataclass(frozen=True)
class AppPython:
    """``version`` as requested (``3.13`` or ``3.13.2``); ``origin`` is a key of ``ORIGINS``."""

    version: str
    origin: str
    line: int = 0  # the line of the file it was read from, when it came from a file

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def named_by_app(self) -> bool:
        """False when heroku/python picks it (its default, or the previous build's)."""
        return self.origin not in ("cached", "default")

    @property
    def where(self) -> str:
        """``.python-version line 2``, ``Pipfile.lock``, ``heroku/python's default``."""
        described = ORIGINS[self.origin]
        return f"{described} line {self.line}" if self.line else described

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "minor": self.minor, "origin": self.origin, "source": self.where}


def _version_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty, non-comment lines, trimmed, with their line numbers (as heroku/python's sed does)."""
    text = path.read_bytes().decode("utf-8", errors="replace").replace("\x00", "␀")
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        trimmed = line.strip()
        if trimmed and not trimmed.startswith("#"):
            lines.append((number, trimmed))
    return lines


def _runtime_txt(path: Path) -> AppPython:
    lines = _version_lines(path)
    found = re.match(r"^python-(.+)$", lines[0][1]) if len(lines) == 1 else None
    if found is None or not _VERSION.match(found.group(1)):
        line = lines[0][0] if lines else 1
        raise PythonVersionError("runtime.txt", line, "\n".join(text for _, text in lines) or "(nothing)",
                                 f"Write 'python-{DEFAULT}' in runtime.txt, or better, delete it and create a "
                                 f".python-version file containing {DEFAULT}.")
    return AppPython(found.group(1), "runtime.txt", lines[0][0])


def _python_version_file(path: Path) -> AppPython:
    lines = _version_lines(path)
    for number, text in lines:
        if not _VERSION.match(text):
            raise PythonVersionError(VERSION_FILE, number, text,
                                     f"Write the major version only, for example {DEFAULT}, on a line of its own "
                                     "(no quotes, no 'python-' prefix; comments on lines starting with '#').")
    if len(lines) != 1:
        found = ", ".join(text for _, text in lines) or "no version"
        raise PythonVersionError(VERSION_FILE, lines[1][0] if lines else 1, found,
                                 f"Leave exactly one version in the file, for example {DEFAULT}.")
    return AppPython(lines[0][1], ".python-version", lines[0][0])


def _pipfile_lock(path: Path) -> AppPython | None:
    try:
        requires = json.loads(path.read_text(encoding="utf-8", errors="replace")).get("_meta", {}).get("requires", {})
    except (ValueError, AttributeError):
        return None  # heroku/python names the broken JSON itself
    if not isinstance(requires, dict):
        return None
    # jq's `a // b` in heroku/python: b only when a is missing or null.
    version = requires.get("python_full_version")
    if version is None:
        version = requires.get("python_version")
    if not isinstance(version, str) or not version:
        return None
    if not _VERSION.match(version):
        raise PythonVersionError("Pipfile.lock", 0, version,
                                 f"Set python_version = \"{DEFAULT}\" under [requires] in your Pipfile and run "
                                 "'pipenv lock'.")
    return AppPython(version, "Pipfile.lock")


def cached_version(cache_dir: Path | None) -> str | None:
    """The full version heroku/python's previous build recorded in the cache, without ``python-``."""
    if cache_dir is None:
        return None
    path = cache_dir / CACHED_VERSION_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    text = text.removeprefix("python-")
    return text if _FULL_VERSION.match(text) else None


def app_python(app_dir: Path, cache_dir: Path | None = None) -> AppPython:
    """The Python heroku/python will install for this app, and where that answer comes from."""
    if (app_dir / "runtime.txt").is_file():
        return _runtime_txt(app_dir / "runtime.txt")
    if (app_dir / VERSION_FILE).is_file():
        return _python_version_file(app_dir / VERSION_FILE)
    if (app_dir / "Pipfile.lock").is_file():
        from_lock = _pipfile_lock(app_dir / "Pipfile.lock")
        if from_lock is not None:
            return from_lock
    cached = cached_version(cache_dir)
    if cached is not None:
        return AppPython(".".join(cached.split(".")[:2]), "cached")
    return AppPython(DEFAULT, "default")
