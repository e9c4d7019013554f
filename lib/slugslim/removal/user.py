"""Rule 'user': what the app's prune.remove globs ask for.

Evidence: the app knows its own dead weight (sample data, docs, a vendored CLI) better than
any default. Globs are relative to site-packages, matched against the scan, never against
the filesystem; a glob that is absolute or climbs out with '..' is refused.

What it must never touch: whatever prune.keep covers (the engine applies keep last, so it
wins over every rule), ``*.dist-info`` and ``_vendor`` directories (the engine protects them).
"""

from __future__ import annotations

from slugslim.core.config import PruneConfig
from slugslim.core.plan import Removal
from slugslim.removal.globs import GlobSet
from slugslim.removal.rule import removal
from slugslim.removal.tree import SiteTree

NAME = "user"


class UserRule:
    name = NAME

    def __init__(self, source: str = "slugslim.yml") -> None:
        self.source = source

    def plan(self, tree: SiteTree, config: PruneConfig) -> list[Removal]:
        globs = GlobSet.of("prune.remove", config.remove, self.source)
        if not globs:
            return []
        hits = [p for p in [*tree.dirs, *tree.files] if globs.matches(p)]
        hits.sort()
        removals: list[Removal] = []
        taken: list[str] = []
        for path in hits:
            if taken and path.startswith(f"{taken[-1]}/"):
                continue
            taken.append(path)
            removals.append(removal(tree, path, NAME, "matches a prune.remove glob"))
        return removals
