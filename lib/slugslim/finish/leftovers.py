"""What the build's checks leave under the app's HOME, and taking it out of the slug.

The checks run the app as a dyno would, with HOME at the build directory, and libraries write their
caches there: ``~/.cache/huggingface``, ``~/.keras``, ``~/.config/matplotlib`` and the like. Left
alone, they would ship in the slug unexamined. At the start of the finish phase (after the app's own
``bin/post_compile``, so whatever that made is the app's) the names under HOME are noted: the hidden
entries at its top, and the entries of ``.cache``, ``.config`` and ``.local`` when the app has them.
At the end, every such entry the checks created is removed, unless a step keeps it on purpose (the
Hugging Face models). What the app committed is never touched, and no symlink is followed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from slugslim.core import log
from slugslim.core.context import FinishContext
from slugslim.core.results import LeftoversResult, snapshot

# The build's own hidden entries: heroku/python's, the .profile.d scripts, slugslim's.
OURS = frozenset({".heroku", ".profile.d", ".slugslim"})
# Hidden directories whose entries are watched one by one when the app has them already.
CONTAINERS = (".cache", ".config", ".local")


@dataclass
class Watched:
    """The names under HOME before the checks ran."""

    top: set[str] = field(default_factory=set)
    inside: dict[str, set[str]] = field(default_factory=dict)  # container -> its entries


def _names(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()


def watch(build_dir: Path) -> Watched:
    watched = Watched(top=_names(build_dir))
    for name in CONTAINERS:
        path = build_dir / name
        if path.is_dir() and not path.is_symlink():
            watched.inside[name] = _names(path)
    return watched


def _created(build_dir: Path, watched: Watched) -> list[str]:
    found = sorted(n for n in _names(build_dir) - watched.top if n.startswith(".") and n not in OURS)
    for name, before in sorted(watched.inside.items()):
        path = build_dir / name
        if path.is_dir() and not path.is_symlink():
            found += [f"{name}/{child}" for child in sorted(_names(path) - before)]
    return found


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):  # os.walk does not follow symlinks to directories
        total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total


def run(ctx: FinishContext, watched: Watched) -> LeftoversResult:
    result = LeftoversResult()
    hub = ctx.results.hub
    keep = ctx.build_dir / hub.cache if hub is not None and hub.status == "baked" and hub.cache else None
    for relative in _created(ctx.build_dir, watched):
        path = ctx.build_dir / relative
        if keep is not None and (keep == path or path in keep.parents):
            result.kept[relative] = "the Hugging Face models, baked in at build time"
            continue
        result.removed[relative] = _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        ctx.results.leftovers = snapshot(result)
    if result.removed:
        log.step("Removing what the build's checks left under HOME")
        log.detail(", ".join(f"{name} ({log.human_bytes(size)})" for name, size in result.removed.items())
                   + ": caches the app's libraries wrote while slugslim ran it, not part of your app")
    ctx.results.leftovers = snapshot(result)
    return result
