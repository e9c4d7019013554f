"""What is installed in a site-packages: distributions, their files and sizes, their import names.

slugslim runs on the system python, not the app's, so this reads the *target* site-packages'
metadata directories itself (``read_dists``, the one reader): METADATA for names, versions and
requirements, RECORD for the files, ``top_level.txt`` and RECORD for import names,
``entry_points.txt`` for console scripts.

Sizes are what is on disk now. Files no RECORD lists (``__pycache__`` written after install,
files a build step added) count towards the distribution that owns most of their top-level
directory, so the per-distribution sizes add up to the whole site-packages.
"""

from __future__ import annotations

import configparser
import csv
import email.message
import email.parser
import io
import os
import posixpath
import re
import stat
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

UNOWNED = "(files no package claims)"
_MODULE_SUFFIX = re.compile(r"(\.cpython-[^.]+|\.abi3|\.cp\d+-[^.]+)?\.(py|pyc|so|pyd)$")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return str(canonicalize_name(name))


@dataclass
class Distribution:
    """An installed distribution with the files on disk it owns, their size and its import names."""

    name: str
    version: str
    meta: Dist  # what its metadata directory says
    files: list[str] = field(default_factory=list)  # relative to site-packages, inside it only
    bytes: int = 0
    import_names: set[str] = field(default_factory=set)  # dotted prefixes it provides files for
    scripts: set[str] = field(default_factory=set)  # console scripts and bin/ files it installs

    @property
    def key(self) -> str:
        return canonical(self.name)


@dataclass
class Installed:
    site_packages: Path
    distributions: dict[str, Distribution] = field(default_factory=dict)  # canonical name -> dist
    file_sizes: dict[str, int] = field(default_factory=dict)  # every regular file, relative path -> bytes
    unowned_bytes: int = 0

    @property
    def bytes(self) -> int:
        return sum(self.file_sizes.values())

    def sizes(self) -> dict[str, int]:
        """Distribution name -> bytes on disk, plus UNOWNED when some files belong to nobody."""
        result = {d.name: d.bytes for d in self.distributions.values()}
        if self.unowned_bytes:
            result[UNOWNED] = self.unowned_bytes
        return result

    def providers(self) -> dict[str, set[str]]:
        """Dotted import name (and every prefix of it) -> canonical names of distributions providing it."""
        mapping: dict[str, set[str]] = {}
        for dist in self.distributions.values():
            for name in dist.import_names:
                mapping.setdefault(name, set()).add(dist.key)
        return mapping


def module_names(relpath: str) -> list[str]:
    """Dotted names a site-packages file makes importable: ``google/protobuf/x.py`` gives
    ``google``, ``google.protobuf``, ``google.protobuf.x``. Empty for metadata and data dirs."""
    parts = relpath.split("/")
    if parts[0].endswith((".dist-info", ".egg-info", ".data")) or parts[0] in ("..", "__pycache__", "bin"):
        return []
    if parts[0].endswith(".pth"):
        return []
    last = parts[-1]
    match = _MODULE_SUFFIX.search(last)
    if match:
        parts[-1] = last[: match.start()]
        if parts[-1] == "__init__":
            parts.pop()
    else:
        parts.pop()  # a data file: only its directories are importable names
    parts = [p for p in parts if p != "__pycache__"]
    if not parts or not all(p.isidentifier() for p in parts):
        # e.g. 'numpy.libs' or a stray file: keep the importable prefix only
        good: list[str] = []
        for part in parts:
            if not part.isidentifier():
                break
            good.append(part)
        parts = good
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _walk_sizes(root: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    stack = [("", str(root))]
    while stack:
        rel, path = stack.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        stack.append((child, entry.path))
                    elif stat.S_ISREG(st.st_mode):
                        sizes[child] = st.st_size
        except OSError:
            continue
    return sizes


def _script_name(record_path: str) -> str | None:
    """``../../../bin/gunicorn`` in RECORD is a script pip put into the environment's bin/."""
    parts = record_path.split("/")
    if ".." in parts and len(parts) >= 2 and parts[-2] in ("bin", "Scripts"):
        return parts[-1]
    return None


def console_scripts(site_packages: Path) -> dict[str, str]:
    """Every console script the site-packages' distributions install -> the 'module:attr' it runs."""
    scripts: dict[str, str] = {}
    for found in read_dists(site_packages).values():
        for name, value in found.entry_points.items():
            scripts.setdefault(name, value)
    return scripts


def scan(site_packages: Path) -> Installed:
    installed = Installed(site_packages=site_packages, file_sizes=_walk_sizes(site_packages))
    claimed: dict[str, str] = {}
    for found in read_dists(site_packages).values():
        dist = Distribution(name=found.display_name, version=found.version, meta=found)
        for rel in sorted(found.paths()):
            script = _script_name(rel)
            if script:
                dist.scripts.add(script)
                continue
            if rel.startswith("../") or rel not in installed.file_sizes or rel in claimed:
                continue
            claimed[rel] = dist.key
            dist.files.append(rel)
            dist.import_names.update(module_names(rel))
        dist.import_names.update(name.replace("/", ".") for name in found.top_level)
        dist.scripts |= set(found.entry_points)
        installed.distributions[dist.key] = dist

    # Attribute files nobody claims to whoever owns most of their top-level directory.
    owners: dict[str, Counter[str]] = {}
    for rel, key in claimed.items():
        owners.setdefault(rel.split("/", 1)[0], Counter())[key] += 1
    for rel, size in installed.file_sizes.items():
        owner = claimed.get(rel)
        if owner is None:
            counts = owners.get(rel.split("/", 1)[0])
            if counts and "/" in rel:
                owner = counts.most_common(1)[0][0]
                installed.distributions[owner].files.append(rel)
        if owner is None:
            installed.unowned_bytes += size
        else:
            installed.distributions[owner].bytes += size
    return installed


def find_site_packages(path: Path) -> Path | None:
    """The site-packages of a virtualenv, a Python prefix or a Heroku app dir; or path itself."""
    if path.name == "site-packages" or any(path.glob("*.dist-info")):
        return path
    for pattern in (
        ".heroku/python/lib/python3.*/site-packages",
        "lib/python3.*/site-packages",
        "Lib/site-packages",
    ):
        candidates = sorted(p for p in path.glob(pattern) if p.is_dir() and not p.is_symlink())
        if candidates:
            return candidates[-1]
    return None


# The fix-up's view: each distribution's requirements and RECORD, and whether it is slugslim's stand-in.
STAND_IN_INSTALLER = "slugslim"
MARKER_FILE = "SLUGSLIM"


@dataclass
class Dist:
    """An installed distribution, as its ``.dist-info`` (or a legacy ``.egg-info``) directory says."""

    name: str  # canonical
    version: str
    info: Path  # the .dist-info directory
    requires: list[Requirement]
    files: list[tuple[str, str]]  # (path relative to site-packages, "sha256=..." or "")
    installer: str = ""
    marked: bool = False  # a SLUGSLIM file: the files are already the CPU build's
    display_name: str = ""  # the Name as METADATA spells it, for messages and prune rules
    entry_points: dict[str, str] = field(default_factory=dict)  # console and GUI script -> "module:attr"
    top_level: list[str] = field(default_factory=list)  # top_level.txt, when there is one

    @property
    def is_stand_in(self) -> bool:
        return self.installer == STAND_IN_INSTALLER

    def paths(self) -> set[str]:
        """The files RECORD lists, as normalised POSIX paths relative to site-packages."""
        return {posixpath.normpath(p.replace("\\", "/")) for p, _ in self.files}

    def inside(self) -> list[str]:
        """``paths()`` inside site-packages (not its scripts in ../../bin), sorted."""
        return sorted(p for p in self.paths() if p != ".." and not p.startswith(("../", "/")))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _headers(text: str) -> email.message.Message:
    """METADATA's headers; the description after them can be long, and nothing here reads it."""
    end = text.find("\n\n")
    return email.parser.Parser().parsestr(text if end < 0 else text[: end + 1], headersonly=True)


def _scripts(text: str) -> dict[str, str]:
    """entry_points.txt's console and GUI scripts."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error:
        return {}
    return {name: value.strip() for group in ("console_scripts", "gui_scripts") if parser.has_section(group)
            for name, value in parser.items(group)}


def _read_dist(info: Path) -> Dist | None:
    legacy = info.name.endswith(".egg-info")
    message = _headers(_text(info / ("PKG-INFO" if legacy else "METADATA")))
    display = str(message.get("Name", "") or "").strip()
    if not display:
        return None
    requires: list[Requirement] = []
    for text in message.get_all("Requires-Dist") or []:
        try:
            requires.append(Requirement(text))
        except InvalidRequirement:
            continue
    files: list[tuple[str, str]] = []
    if legacy:  # installed-files.txt lists paths relative to the .egg-info directory
        files = [(posixpath.normpath(f"{info.name}/{line.strip()}"), "")
                 for line in _text(info / "installed-files.txt").splitlines() if line.strip()]
    else:
        files = [(row[0], row[1] if len(row) > 1 else "")
                 for row in csv.reader(io.StringIO(_text(info / "RECORD"))) if row and row[0]]
    return Dist(name=canonicalize_name(display), version=str(message.get("Version", "") or "").strip(), info=info,
                requires=requires, files=files, installer=_text(info / "INSTALLER").strip(),
                marked=(info / MARKER_FILE).is_file(), display_name=display,
                entry_points=_scripts(_text(info / "entry_points.txt")),
                top_level=[line.strip() for line in _text(info / "top_level.txt").splitlines() if line.strip()])


def read_dists(site_packages: Path) -> dict[str, Dist]:
    """The one reader of installed metadata: every distribution in a site-packages, by canonical name.

    Symlinked metadata directories are never followed. When two directories name the same
    distribution, the first in name order wins.
    """
    dists: dict[str, Dist] = {}
    try:
        entries = sorted(site_packages.iterdir())
    except OSError:
        return dists
    for info in entries:
        if not info.name.endswith((".dist-info", ".egg-info")) or info.is_symlink() or not info.is_dir():
            continue
        found = _read_dist(info)
        if found is not None and found.name not in dists:
            dists[found.name] = found
    return dists


def top_level_modules(owners: Mapping[str, str]) -> dict[str, str]:
    """Importable top-level names -> the distribution that installed them, from file -> owner (RECORD's
    view: ``owners_of``). A name provided by two distributions goes to the first."""
    names: dict[str, str] = {}
    for path, dist in owners.items():
        first = path.split("/", 1)[0]
        if first.endswith(".dist-info") or first.endswith(".data") or first in ("..", "__pycache__"):
            continue
        if "/" not in path:
            if not path.endswith((".py", ".so", ".pyd")):
                continue
            first = path.split(".", 1)[0]
        names.setdefault(first, dist)
    return names


def owners_of(site_packages: Path) -> dict[str, str]:
    """Each file RECORD lists inside site-packages -> the name of the distribution that installed it
    (as METADATA spells it), without walking the tree."""
    owners: dict[str, str] = {}
    for dist in read_dists(site_packages).values():
        for path in dist.inside():
            owners.setdefault(path, dist.display_name)
    return owners


def requirers(dists: Mapping[str, Dist], name: str, exclude: set[str]) -> list[str]:
    return sorted(d.name for d in dists.values() if d.name not in exclude and not d.is_stand_in
                  and any(canonicalize_name(r.name) == name for r in d.requires))
