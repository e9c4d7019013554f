"""Rule 'bytecode': stale caches, orphaned bytecode, and the .pyc the app never imports.

Evidence: all ``.pyc`` in tensorflow-cpu 2.21.0's site-packages are 31.5 MB gz, of which
14.6 MB belong to modules a Keras app imports. Dropping every ``.pyc`` made a cold
``import tensorflow`` take 1.75x as long (5.4 s -> 9.8 s on 2 cores), on every dyno boot.
Measured on the bench's reference app (flask, gunicorn, pillow, tensorflow; its web process
booted with its Procfile, then GET / and POST /predict): with ``imported`` the slug is 270.4 MB
and the web process compiles 1 module at boot and 18 at its first requests (PIL's image
plugins, ``tensorflow/python/data/ops/*``: what a request loads that the boot check's GET /
does not); with ``distributions`` it is 275.7 MB (+2 %) and compiles none. So the default is
``distributions``: a module the checks never loaded, in a distribution the app uses, keeps its
bytecode.

What it always removes: ``__pycache__`` entries whose source is gone (orphans, and the
bytecode of code other rules remove), ``.pytest_cache`` and ``.mypy_cache`` directories,
and pip leftovers in the prefix (``build/`` directories, ``src/`` checkouts no ``.pth`` or
``.egg-link`` points at).

``prune.bytecode`` then decides the rest of ``__pycache__``: ``imported`` keeps
the ``.pyc`` files the verification runs loaded (the import check, ``verify.command`` and the
booted web process with its requests) and drops the others; ``distributions`` (default) keeps every
``.pyc`` of each distribution the app loaded anything from and drops those of distributions
it never loads, plus optimized ``opt-1``/``opt-2`` bytecode; ``keep`` keeps all; ``drop`` drops
all. With ``imported`` or ``distributions`` and no verification run (a dry run, or verify
off), nothing is dropped by policy, because nothing is known.

What it must never touch: bytecode of modules the app imports (a missing or stale one is a
verification failure), sourceless ``.pyc`` outside ``__pycache__`` (that is the module),
anything in ``_vendor``.
"""

from __future__ import annotations

import os
from pathlib import Path

from slugslim.core.config import PruneConfig
from slugslim.core.plan import Removal
from slugslim.removal.rule import removal
from slugslim.removal.tree import SiteTree

NAME = "bytecode"
TOOL_CACHES = frozenset({".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"})


def source_of(pyc: str) -> str:
    """'pkg/__pycache__/mod.cpython-311.pyc' -> 'pkg/mod.py'."""
    directory, _, name = pyc.rpartition("/")
    parent = directory.rpartition("/")[0]
    stem = name.split(".", 1)[0]
    return f"{parent}/{stem}.py" if parent else f"{stem}.py"


def _du(path: Path) -> tuple[int, int]:
    total = files = 0
    for top, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
                files += 1
            except OSError:
                continue
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(top, d))]
    return total, files


def _owner(tree: SiteTree, pyc: str) -> str:
    """The distribution a .pyc belongs to: its source's owner (pip records the .py, not always the .pyc)."""
    return tree.owner(source_of(pyc)) or tree.owner(pyc)


def _distributions(tree: SiteTree, imported: frozenset[str]) -> set[str]:
    """The distributions the app imported anything from."""
    return {owner for owner in (_owner(tree, pyc) for pyc in imported) if owner}


class BytecodeRule:
    name = NAME

    def plan(self, tree: SiteTree, config: PruneConfig) -> list[Removal]:
        removals: list[Removal] = []
        for directory in tree.dirs:
            if directory.rsplit("/", 1)[-1] in TOOL_CACHES and directory not in tree.links:
                removals.append(removal(tree, directory, NAME, "tool cache, never read at run time"))

        keep = tree.imported_bytecode
        policy = config.bytecode
        used = _distributions(tree, keep) if policy == "distributions" and keep is not None else set()
        for directory in tree.dirs:
            if directory.rsplit("/", 1)[-1] != "__pycache__" or directory in tree.links:
                continue
            entries = [f"{directory}/{n}" for n in tree.children.get(directory, [])]
            pycs = [e for e in entries if e.endswith(".pyc") and e in tree.files and e not in tree.links]
            orphans = {p for p in pycs if source_of(p) not in tree.files}
            if policy == "drop":
                doomed = set(pycs)
            elif policy == "imported" and keep is not None:
                doomed = {p for p in pycs if p not in keep}
            elif policy == "distributions" and keep is not None:
                doomed = {p for p in pycs if _owner(tree, p) not in used or ".opt-" in p.rsplit("/", 1)[-1]}
            else:
                doomed = set()
            doomed |= orphans
            if not doomed:
                continue
            if doomed == set(entries):
                why = "bytecode of removed or unimported modules" if policy != "drop" else "prune.bytecode is drop"
                removals.append(removal(tree, directory, NAME, why))
                continue
            for pyc in sorted(doomed):
                if pyc in orphans:
                    why = "bytecode whose source is gone"
                elif policy == "drop":
                    why = "prune.bytecode is drop"
                elif policy == "distributions" and _owner(tree, pyc) in used:
                    why = "optimized bytecode (opt-1, opt-2), read only under python -O"
                elif policy == "distributions":
                    why = "bytecode of a distribution the app never imports"
                else:
                    why = "bytecode of a module the app did not import"
                removals.append(removal(tree, pyc, NAME, why))
        removals.extend(self._prefix_leftovers(tree))
        return removals

    def _prefix_leftovers(self, tree: SiteTree) -> list[Removal]:
        """pip's build/ and unreferenced src/ checkouts next to site-packages, in the prefix."""
        if tree.prefix is None:
            return []
        out: list[Removal] = []
        up = os.path.relpath(tree.prefix, tree.root).replace(os.sep, "/")
        pointers = ""
        for path in tree.files:
            pointer = "/" not in path and path.endswith((".pth", ".egg-link"))
            if pointer or path.endswith(".dist-info/direct_url.json"):
                try:
                    pointers += (tree.root / path).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
        candidates: list[tuple[Path, str]] = []
        build = tree.prefix / "build"
        if build.is_dir() and not build.is_symlink():
            candidates.append((build, "pip build directory left behind"))
        src = tree.prefix / "src"
        if src.is_dir() and not src.is_symlink():
            for checkout in sorted(src.iterdir()):
                if checkout.is_symlink() or checkout.name in pointers:
                    continue
                candidates.append((checkout, "pip src/ checkout that no installed package points at"))
        for leftover, why in candidates:
            size, files = _du(leftover)
            rel = f"{up}/{leftover.relative_to(tree.prefix).as_posix()}"
            out.append(Removal(path=rel, bytes=size, rule=NAME, reason=why, files=files))
        return out
