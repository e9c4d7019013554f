"""The swap's plan as data: each change to a requirement line, per file, and how a file renders.

``slugslim.prepare.swap.swap`` decides the plan, ``slugslim.prepare.swap.relock`` re-locks pip-tools files from it,
``slugslim.prepare.swap.rewrite`` writes it, and ``analyze`` and the report show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from slugslim.core import log
from slugslim.deps import requirements
from slugslim.deps.wheels import WheelInfo


@dataclass
class Swap:
    """One change to one requirement line (or one warning about a line we must not change)."""

    file: str  # relative to the app dir
    line: int
    action: str  # "swap", "remove", "exclude-linux", "warn" or "note" (left alone, said in the log)
    old: str  # the requirement as written (without options)
    new: str = ""
    source: str = ""  # canonical name before
    target: str = ""  # canonical name after
    version: str | None = None  # the version pip installs, when known
    old_wheel: WheelInfo | None = None
    new_wheel: WheelInfo | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.action == "swap":
            return f"{_short(self.old)} → {_short(self.new)} ({self._sizes()})"
        if self.action == "remove":
            return f"{_short(self.old)} removed ({self.reason})"
        if self.action == "exclude-linux":
            return f"{_short(self.old)} kept off Linux ({self.reason})"
        return f"{_short(self.old)} left as written ({self.reason})"

    def _sizes(self) -> str:
        old = self.old_wheel.size if self.old_wheel else None
        new = self.new_wheel.size if self.new_wheel else None
        version = ""
        if self.version and f"=={self.version}" not in (self.old + self.new).replace(" ", ""):
            version = f"{self.version}: "
        if old is None and new is None:
            return f"{version}wheel sizes unknown"
        return (f"{version}{log.human_bytes(old) if old is not None else 'unknown'} → "
                f"{log.human_bytes(new) if new is not None else 'unknown'} wheel")

    @property
    def saved_bytes(self) -> int | None:
        if self.old_wheel and self.new_wheel and self.old_wheel.size is not None and self.new_wheel.size is not None:
            return self.old_wheel.size - self.new_wheel.size
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "line": self.line, "action": self.action, "old": self.old, "new": self.new,
            "source": self.source, "target": self.target, "version": self.version, "reason": self.reason,
            "old_wheel": self.old_wheel.to_json() if self.old_wheel else None,
            "new_wheel": self.new_wheel.to_json() if self.new_wheel else None,
            "saved_bytes": self.saved_bytes,
        }


def _short(requirement_text: str) -> str:
    return " ".join(requirement_text.split())


@dataclass
class FilePlan:
    parsed: requirements.RequirementsFile
    edits: dict[int, list[str] | None] = field(default_factory=dict)
    swaps: list[Swap] = field(default_factory=list)
    replacement: bytes | None = None  # the whole new file, when it was re-locked rather than edited

    @property
    def changed(self) -> bool:
        return bool(self.edits) or self.replacement is not None

    def header(self) -> str:
        changes = [f"line {s.line} {header_change(s)}" for s in self.swaps if s.action not in ("warn", "note")]
        return ("# slugslim (Heroku buildpack) changed this file at build time, dynos have no GPU: "
                + "; ".join(changes) + ". Set 'swap: false' in slugslim.yml to turn this off.")

    def render(self) -> bytes:
        if self.replacement is not None:
            return self.replacement
        if not self.edits:
            return self.parsed.raw
        return self.parsed.render(self.edits, header=self.header())


def header_change(swap: Swap) -> str:
    if swap.action == "swap" and swap.source == swap.target:
        return f"{swap.source} -> {_short(swap.new)} (CPU build)"
    if swap.action == "swap":
        return f"{swap.source} -> {swap.target}"
    if swap.action == "remove":
        return f"removed {swap.source}"
    return f"{swap.source} not on Linux"


@dataclass
class SwapPlan:
    app_dir: Path
    python_version: str
    python_origin: str
    files: list[FilePlan] = field(default_factory=list)
    hash_mode: bool = False
    skipped: list[str] = field(default_factory=list)  # warnings about files we could not read

    @property
    def swaps(self) -> list[Swap]:
        return [s for f in self.files for s in f.swaps]


# --- requirement text -------------------------------------------------------------------------

def pinned_version(requirement: Requirement) -> str | None:
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def without_marker(requirement: Requirement) -> str:
    bare = Requirement(str(requirement))
    bare.marker = None
    return str(bare)


def replace_args(parsed: requirements.RequirementsFile, entry: requirements.Entry, new_args: str) -> list[str]:
    lines = [parsed.content(i) for i in range(entry.first, entry.last + 1)]
    for position, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(entry.args):
            lines[position] = line[: len(line) - len(stripped)] + new_args + stripped[len(entry.args):]
            return lines
        if stripped.strip(" \t\\"):
            break
    options = " ".join(f"--{o.name}" if o.value is None else f"--{o.name}={o.value}" for o in entry.options)
    return [f"{new_args}{' ' + options if options else ''}"]
