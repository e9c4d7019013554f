"""The framework kept for the next build, so that a LiteRT or ONNX Runtime slug does not download it again.

heroku/python (v351 ``cache::save``) caches ``.heroku/python`` as ``bin/post_compile`` left it: without
TensorFlow or PyTorch, once ``runtime.engine: litert`` or ``onnx`` shipped. At the next build pip would
find the framework missing and download it again (the ``tensorflow-cpu`` wheel alone is 274 MB,
torch's CPU build 190 MB), only for the conversion. So the finish step keeps the files it removes in
``CACHE_DIR/slugslim/litert-stash`` (named when LiteRT was the only engine; kept, so that caches made
then still work), as hard links when the cache is on the same filesystem, which costs no space until
the build dir is gone; and the next prepare phase, which runs before heroku/python restores its
cache, moves them back into the cached ``.heroku/python``: pip then finds the framework installed and
downloads nothing.

They go back only into a cache that exists, for the same Python (heroku/python discards its cache
when the Python version changed, and the framework's files are built for one), and never over a file
the cache has. When slugslim clears heroku/python's cache (``slugslim.core.buildcache``), the stash goes too.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slugslim.core.buildcache import PYTHON_CACHE
from slugslim.core.plan import Removal

STASH = Path("slugslim") / "litert-stash"
# What slugslim installed for the engine (ai-edge-litert, onnxruntime, and their new dependencies):
# heroku/python's cache keeps them, so a later build that keeps the framework takes them out again.
INSTALLS = Path("slugslim") / "litert-installed.json"
RECORD = "stash.json"
PYTHON_VERSION_FILE = Path(".heroku") / "python-version"  # heroku/python's record of the cached Python


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def drop(cache_dir: Path) -> None:
    root = cache_dir / STASH
    if root.is_symlink():
        root.unlink()
    elif root.exists():
        shutil.rmtree(root)


def stash(cache_dir: Path, prefix: Path, site_packages: Path, removals: Iterable[Removal], record: dict[str, Any]
          ) -> int:
    """Keep what ``removals`` (relative to site-packages) name, by its path under ``prefix``. Returns bytes."""
    drop(cache_dir)
    root = cache_dir / STASH
    (root / "python").mkdir(parents=True)
    total = 0
    for removal in removals:
        source = Path(os.path.normpath(site_packages / removal.path))
        if not source.is_relative_to(prefix) or not (source.exists() or source.is_symlink()):
            continue
        target = root / "python" / source.relative_to(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(source), str(target))
        total += removal.bytes
    (root / RECORD).write_text(json.dumps({**record, "bytes": total}, indent=1, sort_keys=True) + "\n",
                               encoding="utf-8")
    return total


def _move_missing(source: Path, target: Path) -> int:
    """Move what ``target`` lacks from ``source`` into it; returns the files moved."""
    if not (target.exists() or target.is_symlink()):
        os.rename(source, target)
        return 1
    if target.is_dir() and not target.is_symlink() and source.is_dir() and not source.is_symlink():
        return sum(_move_missing(child, target / child.name) for child in sorted(source.iterdir()))
    return 0


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def reinsert(cache_dir: Path) -> str:
    """Put the stash back into heroku/python's cached ``.heroku/python``; say what happened ('' if nothing)."""
    root = cache_dir / STASH
    try:
        record = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        drop(cache_dir)
        return ""
    cached = cache_dir / PYTHON_CACHE
    site = cached / str(record.get("site_packages", ""))
    why = ""
    if cached.is_symlink() or not cached.is_dir():
        why = "heroku/python has no cache to put it into"
    elif not record.get("site_packages") or not site.is_dir():
        why = "the cached Python has another site-packages"
    else:
        try:
            cached_version = (cache_dir / PYTHON_VERSION_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            cached_version = ""
        cached_version = cached_version.removeprefix("python-")
        # X.Y: the framework's extension modules are built for one; a patch release changes nothing here,
        # and heroku/python discards its own cache when the full version changed.
        if record.get("python") and cached_version and _minor(cached_version) != _minor(str(record["python"])):
            why = f"the cache is for Python {cached_version}, not {record['python']}"
    if why:
        drop(cache_dir)
        return f"Dropped the {record.get('framework') or 'TensorFlow'} kept by the last build: {why}"
    moved = _move_missing(root / "python", cached)
    drop(cache_dir)
    names = ", ".join(record.get("distributions", [])[:4])
    return (f"Put back into heroku/python's cache the {len(record.get('distributions', []))} distributions the last "
            f"build removed for {record.get('engine') or 'LiteRT'} ({names}…, {moved} entries), so pip does not "
            "download them again")


def remember_installs(cache_dir: Path, names: list[str]) -> None:
    (cache_dir / INSTALLS).parent.mkdir(parents=True, exist_ok=True)
    (cache_dir / INSTALLS).write_text(json.dumps(sorted(names)) + "\n", encoding="utf-8")


def earlier_installs(cache_dir: Path) -> list[str]:
    try:
        loaded = json.loads((cache_dir / INSTALLS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(name) for name in loaded] if isinstance(loaded, list) else []
