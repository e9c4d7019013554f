"""A removal plan is data: the engine applies it, the verifier checks it, the report reads it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Removal:
    """One thing slugslim takes out of the slug.

    ``path`` is relative to the root it was planned against (site-packages for pruning,
    the app directory for models). ``bytes`` is its on-disk size before removal;
    ``files`` how many regular files it holds. ``rule`` names the rule that asked for it
    and ``reason`` says why, in words a user understands. ``package`` is the
    distribution it belongs to, when known, so a failed verification can be bisected.
    """

    path: str
    bytes: int
    rule: str
    reason: str
    files: int = 1
    package: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    root: str
    removals: list[Removal] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals)

    def by_rule(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for removal in self.removals:
            totals[removal.rule] = totals.get(removal.rule, 0) + removal.bytes
        return totals

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "bytes": self.bytes, "removals": [r.to_json() for r in self.removals]}
