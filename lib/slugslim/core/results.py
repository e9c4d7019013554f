"""What each finish step hands the steps after it and the report: one typed result per step.

A step creates its result, fills it in and puts it into ``Results`` (``ctx.results``) as a
snapshot at the points where it has something to say, so that a step skipped halfway leaves what
it had said last, never its half-done state. The report reads them by field; the memory and
runtime results' ``to_json()`` are report.json's sections of those names.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from slugslim.core import log
from slugslim.core.modelscan import Model
from slugslim.core.plan import PruneResult

T = TypeVar("T")
MIB = 1 << 20
# What serving adds to the import check's peak. Measured on tensorflow-cpu 2.21.0 + flask with the real
# heroku/python: import check 496 MB; the gunicorn worker after its first answer 520 MB, plus a 27 MB parent.
HEADROOM = 1.10


def snapshot(result: T) -> T:
    """A copy of ``result`` as it is now, for ``Results``: the step goes on changing its own."""
    return copy.deepcopy(result)


@dataclass
class FixupResult:
    enabled: bool = True
    layout: str = ""  # "stand-in" or "merged"
    actions: list[dict[str, Any]] = field(default_factory=list)
    bytes_removed: int = 0
    lock_snippet: list[str] = field(default_factory=list)  # what to commit so the lock asks for the CPU build

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "layout": self.layout, "actions": self.actions,
                "bytes_removed": self.bytes_removed, "lock_snippet": self.lock_snippet}

    def add(self, action: str, package: str, detail: str, **extra: Any) -> None:
        self.actions.append({"action": action, "package": package, "detail": detail, **extra})
        log.detail(f"  {detail}")


@dataclass
class RuntimeResult:
    engine: str = "tensorflow"
    status: str = "off"  # off | nothing | tensorflow or torch (kept, see reason) | litert or onnx (shipped)
    reason: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    version: str = ""  # of the engine's package (ai-edge-litert, onnxruntime), as installed
    python: str = ""  # the app's Python, as the converter saw it
    installed: list[str] = field(default_factory=list)
    # bytes of the booted web process on the framework (tensorflow, torch) and on the engine (litert, onnx)
    memory: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)  # "tensorflow" or "torch", and "models": bytes gone
    removal: dict[str, Any] = field(default_factory=dict)  # the prune engine's outcome
    cache: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"engine": self.engine, "status": self.status, "reason": self.reason, "plan": self.plan,
                "models": self.models, "version": self.version, "python": self.python, "installed": self.installed,
                "memory": self.memory, "removed": self.removed, "removal": self.removal, "cache": self.cache,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


@dataclass
class ModelsResult:
    enabled: bool = True
    source: str = ""
    found: list[Model] = field(default_factory=list)
    removed: list[Model] = field(default_factory=list)
    kept: list[tuple[Model, str]] = field(default_factory=list)
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    present_files: int = 0
    small_files: int = 0
    manifest: str = ""

    @property
    def removed_bytes(self) -> int:
        """What left the slug: a Git LFS pointer's real file was never in it."""
        return sum(m.bytes for m in self.removed if m.kind != "lfs")

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "source": log.redact(self.source) if self.source.startswith("http") else self.source,
            "found": [m.to_json() for m in self.found],
            "removed": [m.path for m in self.removed],
            "removed_bytes": self.removed_bytes,
            "kept": [{"path": m.path, "bytes": m.bytes, "reason": why} for m, why in self.kept],
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "already_at_source_files": self.present_files,
            "small_files_kept": self.small_files,
            "manifest": self.manifest,
        }


@dataclass
class MemoryResult:
    enabled: bool = True
    process_bytes: int = 0
    measured_by: str = ""
    per_dyno: list[dict[str, Any]] = field(default_factory=list)
    script: str = ""

    @property
    def measured_mb(self) -> int:
        return math.ceil(self.process_bytes / MIB)

    @property
    def process_mb(self) -> int:
        """What one serving web process is budgeted: the measurement plus ``HEADROOM``."""
        return math.ceil(self.process_bytes * HEADROOM / MIB)

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "process_bytes": self.process_bytes, "measured_mb": self.measured_mb,
                "process_mb": self.process_mb,
                "measured_by": self.measured_by, "per_dyno": self.per_dyno, "script": self.script}


@dataclass
class HubModelResult:
    """One Hugging Face Hub repo baked into the build: the files the app read, at one commit."""

    id: str
    commit: str
    files: list[str] = field(default_factory=list)  # paths in the repo
    bytes: int = 0
    where: str = "slug"  # "slug", or "store" once the models step took its large files to models.source
    skipped_bytes: int = 0  # the repo's other files (other formats, ONNX, OpenVINO...), not downloaded
    folder: str = ""  # the repo's folder in the Hub cache, relative to the app

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "commit": self.commit, "files": self.files, "bytes": self.bytes, "where": self.where,
                "not_downloaded_bytes": self.skipped_bytes}


@dataclass
class HubResult:
    """The Hugging Face step: the models the app downloads, baked in at build time."""

    status: str = "none"  # "none": no Hub models; "baked"; "skipped" (why in notes)
    cache: str = ""  # where the Hub cache is, relative to the app
    models: list[HubModelResult] = field(default_factory=list)
    offline: bool = False  # HF_HUB_OFFLINE=1 on the dyno: the app booted with the Hub unreachable
    offline_failure: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.models)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "cache": self.cache, "bytes": self.bytes, "offline": self.offline,
                "offline_failure": self.offline_failure, "models": [m.to_json() for m in self.models],
                "notes": self.notes}


@dataclass
class LeftoversResult:
    """What the build's checks wrote under the app's HOME (library caches), and what became of it."""

    removed: dict[str, int] = field(default_factory=dict)  # path relative to the app -> bytes
    kept: dict[str, str] = field(default_factory=dict)  # path -> why it stays

    def to_json(self) -> dict[str, Any]:
        return {"removed": self.removed, "kept": self.kept}


@dataclass
class Results:
    """The finish steps' results so far; a step that has not run (or said nothing yet) is None."""

    fixup: FixupResult | None = None
    hub: HubResult | None = None
    runtime: RuntimeResult | None = None
    prune: PruneResult | None = None
    models: ModelsResult | None = None
    memory: MemoryResult | None = None
    leftovers: LeftoversResult | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # step name -> why the guard skipped it
