"""The one interface every pruning rule implements, and what rules share."""

from __future__ import annotations

from typing import Protocol

from slugslim.core.config import PruneConfig
from slugslim.core.plan import Removal
from slugslim.removal.tree import SiteTree


class Rule(Protocol):
    """A rule looks at the scanned tree and says what it would remove, and why.

    ``plan`` must not touch the filesystem beyond reading. The engine removes what the
    rules plan, drops anything under ``prune.keep`` or a protected path, and verifies.
    """

    name: str

    def plan(self, tree: SiteTree, config: PruneConfig) -> list[Removal]: ...


def removal(tree: SiteTree, path: str, rule: str, reason: str) -> Removal:
    """A Removal of a file or a whole directory, sized from the scan."""
    size, files = tree.size(path)
    return Removal(path=path, bytes=size, rule=rule, reason=reason, files=files, package=tree.owner(path))


def module_name(path: str) -> str:
    """'a/b/tests' -> 'a.b.tests', 'a/b/test_x.py' -> 'a.b.test_x'."""
    for suffix in (".py", ".pyi"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return path.replace("/", ".")
