"""What ``slugslim analyze`` found, as data: the target it read and the analysis of it.

``slugslim.analyze`` fills it in, ``slugslim.analyze.view`` shows it, ``--json`` prints ``to_json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slugslim.appcheck import unused
from slugslim.appcheck.hubrefs import HubRef
from slugslim.core import config
from slugslim.finish.report import estimate, report
from slugslim.finish.runtime.plan import RuntimePlan

EXIT_OK = 0
EXIT_OVER_LIMIT = 2
SCHEMA_VERSION = 1


@dataclass
class Target:
    kind: str
    app_dir: Path | None
    site_packages: Path | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Analysis:
    target: Target
    settings: config.Config
    before: estimate.Estimate | None = None
    after: estimate.Estimate | None = None
    removals: list[dict[str, Any]] = field(default_factory=list)
    swaps: list[Any] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)
    unused: list[unused.Unused] = field(default_factory=list)
    hub_refs: list[HubRef] = field(default_factory=list)  # the Hub model ids the app's source names
    distributions: list[tuple[str, int]] = field(default_factory=list)
    before_bytes: int = 0
    after_bytes: int = 0
    runtime: RuntimePlan | None = None  # what runtime.engine: litert would do (with an app dir)

    @property
    def over_hard(self) -> bool:
        return self.after is not None and self.after.compressed_bytes > self.settings.limits.hard_mb * report.MB

    @property
    def over_soft(self) -> bool:
        return self.after is not None and self.after.compressed_bytes > self.settings.limits.soft_mb * report.MB

    def exit_code(self) -> int:
        return EXIT_OVER_LIMIT if self.over_hard else EXIT_OK

    def by_rule(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for removal in self.removals:
            totals[removal["rule"]] = totals.get(removal["rule"], 0) + removal["bytes"]
        return totals

    def hub_models(self) -> list[dict[str, Any]]:
        """One entry per Hub model (id and revision), with every ``file:line`` that loads it."""
        places: dict[tuple[str, str], list[str]] = {}
        for ref in sorted(self.hub_refs, key=lambda r: (r.path, r.line)):
            where = places.setdefault((ref.id, ref.revision), [])
            if f"{ref.path}:{ref.line}" not in where:
                where.append(f"{ref.path}:{ref.line}")
        return [{"id": model, "revision": revision, "places": where}
                for (model, revision), where in sorted(places.items())]

    def to_json(self) -> dict[str, Any]:
        limits = self.settings.limits

        def size(which: estimate.Estimate | None, uncompressed: int) -> dict[str, int]:
            return {"bytes": uncompressed, "compressed_bytes": which.compressed_bytes if which else 0}

        return {
            "schema": SCHEMA_VERSION,
            "kind": self.target.kind,
            "app_dir": str(self.target.app_dir) if self.target.app_dir else None,
            "site_packages": str(self.target.site_packages) if self.target.site_packages else None,
            "complete": self.target.site_packages is not None,
            "before": size(self.before, self.before_bytes),
            "after": size(self.after, self.after_bytes),
            "removals": self.removals,
            "by_rule": self.by_rule(),
            "swaps": [s.to_json() for s in self.swaps],
            "models": [{**m.to_json(), "removed": bool(self.settings.models.source)} for m in self.models],
            "unused": [u.to_json() for u in self.unused],
            "hub_models": self.hub_models(),
            "distributions": [{"name": n, "bytes": b} for n, b in self.distributions],
            "limits": {"soft_mb": limits.soft_mb, "hard_mb": limits.hard_mb,
                       "over_soft": self.over_soft, "over_hard": self.over_hard},
            "runtime": self.runtime.to_json() if self.runtime is not None else None,
            "notes": self.target.notes,
            "exit_code": self.exit_code(),
        }
