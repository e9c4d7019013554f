"""The lock swap's data, and the adapter each package manager implements (``locks.uv``, ...).

An adapter knows one manager's two files: it reads the lock (``read_lock``, from what ``deps.locked``,
the one reader of each lock format, gives) and the manifest's direct dependencies (``direct``), edits
the manifest's text for a ``ManifestChange`` (``edit``, minimally, so that the user's formatting and
comments survive) and runs the manager's re-lock (``relock``). ``locks.flow`` does the rest, the same
for every manager.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from slugslim.deps.locked import LockedPackage
from slugslim.deps.lockers import Locker
from slugslim.deps.pyversion import AppPython


@dataclass(frozen=True)
class Locked:
    """One package as a lock holds it. A lock that holds a name at several versions (uv's forks for
    different markers) gives them ", "-joined in ``version``, with all their hashes."""

    version: str
    hashes: frozenset[str]
    source: str = ""  # the index (URL or source name) it comes from, as the lock says
    requires: frozenset[str] = frozenset()  # canonical names of its dependencies, any marker or extra

    def same(self, other: Locked) -> bool:
        """Nothing the install would notice moved: version, hashes and index."""
        return (self.version, self.hashes, self.source) == (other.version, other.hashes, other.source)

    @staticmethod
    def merged(entries: Sequence[Locked]) -> Locked:
        """A name's entries (one per fork, group or category) as one: the same ones count once."""
        unique = list(dict.fromkeys(entries))
        if len(unique) == 1:
            return unique[0]
        return Locked(", ".join(sorted({e.version for e in unique})), frozenset().union(*(e.hashes for e in unique)),
                      ", ".join(sorted({e.source for e in unique})), frozenset().union(*(e.requires for e in unique)))


def by_name(packages: Iterable[LockedPackage],
            requires: Callable[[LockedPackage], frozenset[str]] | None = None) -> dict[str, Locked]:
    """Canonical name -> what a lock (``deps.locked``) holds of it; ``requires`` when the lock's own edges
    do not say what a package requires."""
    found: dict[str, list[Locked]] = {}
    for package in packages:
        needs = requires(package) if requires else frozenset(e.name for e in package.edges)
        found.setdefault(package.name, []).append(Locked(package.version, package.hashes, package.source, needs))
    return {name: Locked.merged(entries) for name, entries in found.items()}


@dataclass(frozen=True)
class TorchPin:
    """A PyTorch package to take from the CPU index at its locked public version."""

    name: str  # canonical: torch, torchvision, torchaudio
    version: str  # the locked public version (2.13.0); the CPU build is 2.13.0+cpu
    direct: bool  # a direct dependency already; otherwise the edit adds it, pinned


@dataclass(frozen=True)
class Renamed:
    """A GPU build whose CPU build has another name: dropped for it at the same version."""

    gpu: str  # tensorflow
    cpu: str  # tensorflow-cpu
    version: str
    direct: bool  # the manifest names the GPU build itself (else it comes in through another package)


@dataclass(frozen=True)
class ManifestChange:
    index_name: str  # the explicit index the torch packages come from ("pytorch-cpu")
    index_url: str
    torch: tuple[TorchPin, ...] = ()
    renamed: tuple[Renamed, ...] = ()

    @property
    def swapped(self) -> frozenset[str]:
        """Every name whose entry in the lock is meant to change (or appear, or go)."""
        return frozenset({p.name for p in self.torch} | {r.gpu for r in self.renamed} | {r.cpu for r in self.renamed})


@dataclass(frozen=True)
class Relock:
    """What a re-lock runs with."""

    app_dir: Path  # the manifest and the lock are here; the re-lock writes the lock in place
    locker: Locker
    cache_dir: Path  # the manager's own cache, kept in the build cache (CACHE_DIR/slugslim/...)
    config_vars: Mapping[str, str]  # all of them: the adapter passes on what heroku/python's installer sees
    python: AppPython
    timeout: float = 900


class Adapter(Protocol):
    manager: str  # uv, poetry, pipenv (deps.sources.MANAGERS)
    manifest: str  # pyproject.toml, Pipfile
    lock: str  # uv.lock, poetry.lock, Pipfile.lock
    # The manifest can drop a package however it comes in (uv's override-dependencies); without that, a
    # renamed GPU build (tensorflow) that another package requires is left to the fix-up.
    overrides: bool

    def read_lock(self, text: str) -> dict[str, Locked]:
        """Canonical name -> what the lock holds. Raises ValueError for a lock it cannot read."""
        ...

    def direct(self, manifest_text: str) -> frozenset[str]:
        """Canonical names of the direct (main) dependencies the manifest declares."""
        ...

    def edit(self, manifest_text: str, change: ManifestChange) -> str:
        """The manifest's text with the change made; everything else as it was."""
        ...

    def relock(self, run: Relock) -> None:
        """Re-lock in ``run.app_dir``; raise ``RelockFailed`` naming why when the locker fails."""
        ...


def requirement_name(line: object) -> str:
    """The canonical name of a PEP 508 requirement (``[project] dependencies``), or "" for what is not one."""
    try:
        return str(canonicalize_name(Requirement(str(line)).name))
    except InvalidRequirement:
        return ""
