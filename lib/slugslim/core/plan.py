"""A removal plan is data: the engine applies it, the verifier checks it, the report reads it.

``PruneResult`` is what applying one plan did: what was removed, what was put back and why.
"""

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


@dataclass
class PruneResult:
    status: str  # pruned | partial | unpruned | skipped | dry-run
    plan: Plan
    removed: dict[str, int] = field(default_factory=dict)  # rule -> bytes actually saved
    files: dict[str, int] = field(default_factory=dict)  # rule -> files removed
    culprits: list[dict[str, Any]] = field(default_factory=list)
    strip_rolled_back: dict[str, str] = field(default_factory=dict)
    strip_skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    verify_runs: int = 0
    verified_modules: list[str] = field(default_factory=list)
    verify_peak_rss: int = 0  # bytes, the last passing import check (slugslim.memory reads it)
    web_rss: int = 0  # bytes, the booted web process after its answers, when the boot check ran
    notes: list[str] = field(default_factory=list)
    recovered: int = 0

    @property
    def bytes(self) -> int:
        return sum(self.removed.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "bytes": self.bytes,
            "removed": self.removed,
            "files": self.files,
            "planned": self.plan.by_rule(),
            "culprits": self.culprits,
            "strip_rolled_back": self.strip_rolled_back,
            "strip_skipped": len(self.strip_skipped),
            "failed": self.failed,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "verify_runs": self.verify_runs,
            "verified_modules": self.verified_modules,
            "verify_peak_rss": self.verify_peak_rss,
            "web_rss": self.web_rss,
            "notes": self.notes,
            "recovered": self.recovered,
            "removals": [r.to_json() for r in self.plan.removals],
        }
