"""What to remove: every rule's plan, plus the files that go with them, minus what is protected.

A plan is data (``slugslim.core.plan``); the engine applies it, the verifier checks it, the report
reads it. ``prune.keep`` and the protected names (``*.dist-info``, ``_vendor``) win over every rule.
"""

from __future__ import annotations

from slugslim.core.config import PruneConfig
from slugslim.core.plan import Plan, Removal
from slugslim.removal import bytecode, headers, packages, symbols, tests, user
from slugslim.removal.globs import GlobSet
from slugslim.removal.rule import Rule
from slugslim.removal.tree import SiteTree

# Order matters only for credit: when two rules plan the same path, the earlier one gets it.
RULE_ORDER = (packages.NAME, user.NAME, tests.NAME, headers.NAME, bytecode.NAME, symbols.NAME)
PROTECTED_SUFFIXES = (".dist-info",)
PROTECTED_NAMES = frozenset({"_vendor"})


def rules(source: str = "slugslim.yml") -> list[Rule]:
    return [packages.PackagesRule(), user.UserRule(source), tests.TestsRule(), headers.HeadersRule(),
            bytecode.BytecodeRule(), symbols.SymbolsRule()]


def _protected(path: str) -> bool:
    return any(part.endswith(PROTECTED_SUFFIXES) or part in PROTECTED_NAMES for part in path.split("/"))


def _companions(tree: SiteTree, removals: list[Removal]) -> list[Removal]:
    """The __pycache__ entries of single modules other rules remove."""
    out = []
    for r in removals:
        if r.rule == symbols.NAME or not r.path.endswith(".py") or r.path in tree.dirs:
            continue
        directory, _, name = r.path.rpartition("/")
        cache = f"{directory}/__pycache__" if directory else "__pycache__"
        stem = name[:-3]
        for child in tree.children.get(cache, []):
            if child.split(".", 1)[0] == stem and child.endswith(".pyc"):
                path = f"{cache}/{child}"
                out.append(Removal(path, tree.files.get(path, 0), r.rule, f"bytecode of a removed module ({r.reason})",
                                   1, r.package))
    return out


def _guard(tree: SiteTree, removals: list[Removal], keep: GlobSet) -> tuple[list[Removal], int]:
    """Drop what prune.keep or a protected path covers; split directories that hold such things."""
    held: set[str] = set()  # kept/protected paths
    for path in [*tree.dirs, *tree.files]:
        if _protected(path) or (keep and keep.matches(path)):
            held.add(path)
    ancestors = {"/".join(p.split("/")[:i]) for p in held for i in range(1, p.count("/") + 1)}

    def covered(path: str) -> bool:
        if path.startswith("../"):
            return False
        parts = path.split("/")
        return any("/".join(parts[:i]) in held for i in range(1, len(parts) + 1)) or _protected(path)

    out: list[Removal] = []
    dropped = 0

    def split(r: Removal, directory: str) -> None:
        for child in sorted(tree.children.get(directory, [])):
            path = f"{directory}/{child}"
            if path in held:
                continue
            if path in ancestors and path in tree.dirs:
                split(r, path)
                continue
            size, files = tree.size(path)
            out.append(Removal(path, size, r.rule, r.reason, files, tree.owner(path) or r.package))

    for r in removals:
        if covered(r.path):
            dropped += 1
        elif r.path in ancestors and r.path in tree.dirs and r.rule != symbols.NAME:
            split(r, r.path)
        else:
            out.append(r)
    return out, dropped


def _dedupe(removals: list[Removal]) -> list[Removal]:
    """One removal per path; nothing under a directory that is already removed; moves beat strips."""
    rank = {name: i for i, name in enumerate(RULE_ORDER)}
    ordered = sorted(removals, key=lambda r: (r.path.split("/"), r.rule == symbols.NAME, rank.get(r.rule, 99)))
    taken: set[str] = set()
    out = []
    for r in ordered:
        parts = r.path.split("/")
        if any("/".join(parts[:i]) in taken for i in range(1, len(parts) + 1)):
            continue
        taken.add(r.path)
        out.append(r)
    return out


def plan_tree(tree: SiteTree, config: PruneConfig, source: str = "slugslim.yml",
              active: list[Rule] | None = None) -> Plan:
    keep = GlobSet.of("prune.keep", config.keep, source)
    planned: list[Removal] = []
    for rule in active if active is not None else rules(source):
        planned.extend(rule.plan(tree, config))
    planned.extend(_companions(tree, planned))
    guarded, _dropped = _guard(tree, planned, keep)
    return Plan(root=str(tree.root), removals=_dedupe(guarded))
