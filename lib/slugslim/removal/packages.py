"""Rule 'packages': distributions a dependency pulls in that nothing imports at run time.

Default list and evidence:
- ``libclang`` (24.6 MB gz, 64.0 MB): tensorflow 2.x requires it for its build-time op
  generators; nothing in tensorflow, keras or their dependencies imports ``clang`` when an app
  runs (measured: import tensorflow/keras and a Keras fit/save/load/predict run pass without it).

What it removes: every file RECORD lists for the distribution inside site-packages, except
its ``.dist-info``. What it must never touch: the ``.dist-info`` itself, so ``pip check``,
``pip install`` on a cached build and ``importlib.metadata.version('libclang')`` keep working
(removing ``*.dist-info`` breaks importlib.metadata users). Configure with ``prune.packages``.
"""

from __future__ import annotations

import re

from slugslim.core.config import PruneConfig
from slugslim.core.plan import Removal
from slugslim.removal.rule import removal
from slugslim.removal.tree import SiteTree

NAME = "packages"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class PackagesRule:
    name = NAME

    def plan(self, tree: SiteTree, config: PruneConfig) -> list[Removal]:
        wanted = {_normalize(n) for n in config.packages}
        removals: list[Removal] = []
        for dist, files in sorted(tree.dist_files.items()):
            if _normalize(dist) not in wanted:
                continue
            info = tree.dist_info[dist]
            present = [f for f in files if f in tree.files and not f.startswith(f"{info}/")]
            # Take whole top-level directories when the distribution owns everything in them.
            tops: dict[str, list[str]] = {}
            for path in present:
                tops.setdefault(path.split("/", 1)[0], []).append(path)
            for top, owned in sorted(tops.items()):
                whole = top in tree.dirs and top not in tree.links and all(
                    tree.file_owner.get(f) == dist or f.split("/")[-2:-1] == ["__pycache__"]
                    for f in tree.walk_files(top)
                )
                reason = f"{dist} is not imported at run time (prune.packages)"
                if whole:
                    removals.append(removal(tree, top, NAME, reason))
                else:
                    removals.extend(removal(tree, path, NAME, reason) for path in owned)
        return removals
