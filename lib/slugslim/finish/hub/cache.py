"""The Hugging Face Hub cache on disk: what it holds, and keeping it between builds.

The client's layout (``huggingface_hub`` 1.x and 2.x): ``models--ORG--NAME/blobs/<etag>`` holds each
file once, ``snapshots/<commit>/<path>`` links to it (``../../blobs/<etag>``), ``refs/<branch>``
names the commit a branch was at. A link that leads out of its repo's ``blobs/`` is never
followed: what it points to is not counted, and is not kept.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# Where the build keeps the Hub cache between builds, inside CACHE_DIR.
BUILD_CACHE = Path("slugslim") / "hf-hub"
# The client's bookkeeping that the dyno does not need: download locks, and the xet and tree caches.
NOT_SHIPPED = (".locks",)


@dataclass
class Snapshot:
    """One repo at one commit, as the cache holds it."""

    id: str
    commit: str
    files: dict[str, int] = field(default_factory=dict)  # path in the repo -> bytes of its blob
    refs: list[str] = field(default_factory=list)  # branches and tags that point at this commit

    @property
    def bytes(self) -> int:
        return sum(self.files.values())


def repo_id(folder: str) -> str:
    """``models--org--name`` -> ``org/name``."""
    return folder.removeprefix("models--").replace("--", "/")


def folder(model: str) -> str:
    """``org/name`` -> ``models--org--name``, the repo's folder in the cache."""
    return "models--" + model.replace("/", "--")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return False
    return True


def read(cache: Path) -> list[Snapshot]:
    """Every model snapshot in a Hub cache, with the size of each file it has."""
    found: list[Snapshot] = []
    for repo in sorted(cache.glob("models--*")):
        if repo.is_symlink() or not repo.is_dir():
            continue
        refs: dict[str, list[str]] = {}
        for ref in sorted((repo / "refs").rglob("*")) if (repo / "refs").is_dir() else []:
            if ref.is_file() and not ref.is_symlink():
                refs.setdefault(ref.read_text(encoding="utf-8").strip(), []).append(
                    ref.relative_to(repo / "refs").as_posix())
        for snapshot in sorted((repo / "snapshots").glob("*")):
            if snapshot.is_symlink() or not snapshot.is_dir():
                continue
            entry = Snapshot(repo_id(repo.name), snapshot.name, refs=refs.get(snapshot.name, []))
            for path in sorted(snapshot.rglob("*")):
                if path.is_dir() and not path.is_symlink():
                    continue
                if path.is_symlink() and not _inside(path, repo / "blobs"):
                    continue
                if path.is_file():
                    entry.files[path.relative_to(snapshot).as_posix()] = path.stat().st_size
            if entry.files:
                found.append(entry)
    return found


def tidy(cache: Path) -> None:
    """Take out what the dyno never reads: the client's download locks, and blobs no snapshot links
    to (files of models the app no longer loads, brought back from the last build by ``restore``)."""
    for name in NOT_SHIPPED:
        target = cache / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
    for repo in sorted(cache.glob("models--*")):
        if repo.is_symlink() or not repo.is_dir():
            continue
        snapshots, blobs = repo / "snapshots", repo / "blobs"
        linked = {os.path.realpath(p) for p in snapshots.rglob("*") if p.is_symlink()} if snapshots.is_dir() else set()
        if not linked:
            shutil.rmtree(repo)
            continue
        for blob in blobs.iterdir() if blobs.is_dir() and not blobs.is_symlink() else []:
            if not blob.is_symlink() and blob.is_file() and os.path.realpath(blob) not in linked:
                blob.unlink()


def _link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def copy_tree(source: Path, dest: Path) -> None:
    """``source`` into ``dest`` with its symlinks as they are, hard-linking files where it can."""
    shutil.copytree(source, dest, symlinks=True, copy_function=_link_or_copy, dirs_exist_ok=True)


def restore(cache_dir: Path | None, cache: Path) -> bool:
    """Put the last build's files where the Hub client looks for them, so that it downloads only what
    changed. Only the blobs: the client links the ones the app still asks for into a snapshot (it
    asks the Hub which commit and file that is, and finds the file already there), and ``tidy``
    drops the others."""
    kept = cache_dir / BUILD_CACHE if cache_dir is not None else None
    if kept is None or not kept.is_dir() or kept.is_symlink():
        return False
    restored = False
    for blobs in sorted(kept.glob("models--*/blobs")):
        if blobs.is_dir() and not blobs.is_symlink() and not blobs.parent.is_symlink():
            copy_tree(blobs, cache / blobs.parent.name / "blobs")
            restored = True
    return restored


def save(cache_dir: Path | None, cache: Path) -> None:
    """Keep this build's Hub cache for the next one (only models the app still uses: the old copy goes)."""
    if cache_dir is None:
        return
    kept = cache_dir / BUILD_CACHE
    if kept.exists() or kept.is_symlink():
        if kept.is_symlink() or not kept.is_dir():
            kept.unlink()
        else:
            shutil.rmtree(kept)
    if cache.is_dir():
        kept.parent.mkdir(parents=True, exist_ok=True)
        copy_tree(cache, kept)
