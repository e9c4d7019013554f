"""The last finish step: what the slug weighed before and after, where the bytes went, what is left.

``snapshot`` runs first in the finish phase, before any change; ``run`` runs last. The report
reads what the other steps recorded (the prepare phase's swap, the fixup, runtime, prune and models
results, and through ``fit`` the Python, preflight, LFS and memory), measures
the slug again, prints it in the build log and stores the same data in ``.slugslim/report.json``
inside the slug, so ``heroku run cat .slugslim/report.json`` shows it.

``lever_savings`` lists exactly which field of each step's result it reads.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slugslim.appcheck import unused
from slugslim.core import frameworks, installed, log
from slugslim.core.app import BUILDPACK_DIRS
from slugslim.core.config import Config, LimitsConfig
from slugslim.core.context import FinishContext, find_site_packages
from slugslim.core.results import Results
from slugslim.core.state import STATE_DIR, PrepareState
from slugslim.finish.report import estimate, fit

REPORT_FILE = "report.json"
SCHEMA_VERSION = 3  # 2: python, preflight, memory and lfs; 3: runtime
SLUG_ROOT = "./app"  # heroku puts the build dir under ./app in the slug tar
MB = 1_000_000
PARTIAL_BLOCKS = " ▏▎▍▌▋▊▉"
FULL_BLOCK = "█"
ELLIPSIS = "…"


@dataclass
class Snapshot:
    """The slug as it was before slugslim changed anything."""

    size: estimate.Estimate
    distributions: dict[str, int] = field(default_factory=dict)  # name -> bytes on disk

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.size.bytes, "compressed_bytes": self.size.compressed_bytes}


@dataclass
class ReportResult:
    before: dict[str, int]
    after: dict[str, int]
    levers: list[dict[str, Any]]
    distributions_before: list[tuple[str, int]]
    distributions_after: list[tuple[str, int]]
    unused: list[unused.Unused]
    limits: dict[str, Any]
    swaps: list[str] = field(default_factory=list)
    remaining: list[tuple[str, int]] = field(default_factory=list)  # biggest items left; app files as "app:x"
    fit: dict[str, Any] = field(default_factory=dict)  # python, preflight, memory, lfs (slugslim.finish.report.fit)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            **self.fit,
            "before": self.before,
            "after": self.after,
            "saved": {k: self.before[k] - self.after[k] for k in ("bytes", "compressed_bytes")},
            "swaps": self.swaps,
            "levers": self.levers,
            "distributions": {
                "before": [{"name": n, "bytes": b} for n, b in self.distributions_before],
                "after": [{"name": n, "bytes": b} for n, b in self.distributions_after],
            },
            "unused": [u.to_json() for u in self.unused],
            "limits": self.limits,
        }


# --- measuring -------------------------------------------------------------------------------


def distribution_sizes(build_dir: Path) -> tuple[dict[str, int], installed.Installed | None]:
    site_packages = find_site_packages(build_dir)
    if site_packages is None:
        return {}, None
    scanned = installed.scan(site_packages)
    return {installed.canonical(k) if k != installed.UNOWNED else k: v for k, v in scanned.sizes().items()}, scanned


def snapshot(build_dir: Path) -> Snapshot:
    sizes, _ = distribution_sizes(build_dir)
    return Snapshot(size=estimate.estimate(build_dir, SLUG_ROOT), distributions=sizes)


def top(sizes: dict[str, int], count: int) -> list[tuple[str, int]]:
    return sorted(((n, b) for n, b in sizes.items() if b > 0), key=lambda item: (-item[1], item[0]))[:count]


# --- what the other steps did ----------------------------------------------------------------


def lever_savings(state: PrepareState, results: Results) -> list[dict[str, Any]]:
    """Bytes saved per lever, from what each step recorded it actually did.

    - swap: each swapped line's ``saved_bytes``, the difference of the wheel sizes
      (it happened before install, so the slug never held the GPU build);
    - fixup: its ``bytes_removed``;
    - runtime: its ``removed`` (the framework's closure, TensorFlow's or PyTorch's, and the original models);
    - prune: its ``removed`` (rule -> bytes actually removed after verification; its plan is what
      was planned, which a rollback may have undone);
    - models: its ``removed_bytes``.
    """
    levers: list[dict[str, Any]] = []
    saved = sum(line.saved_bytes for line in state.swap.lines if line.action == "swap" and line.saved_bytes is not None)
    if saved > 0:
        levers.append({"lever": "swap", "step": "swap", "rule": "swap", "bytes": saved, "measured": "wheel"})
    by_step: list[tuple[str, dict[str, int]]] = [
        ("fixup", {"fixup": results.fixup.bytes_removed} if results.fixup else {}),
        ("runtime", dict(results.runtime.removed) if results.runtime else {}),
        ("prune", dict(results.prune.removed) if results.prune else {}),
        ("models", {"models": results.models.removed_bytes} if results.models else {}),
    ]
    for step, by_rule in by_step:
        for rule, size in by_rule.items():
            if size <= 0:
                continue
            name = step if rule == step else f"{step}: {rule}"
            levers.append({"lever": name, "step": step, "rule": rule, "bytes": size, "measured": "disk"})
    return levers


def swap_lines(state: PrepareState) -> list[str]:
    """One line per requirement the swap changed, as the swap step described it."""
    lines = []
    for line in state.swap.lines:
        if line.action == "warn":
            continue
        if line.action == "swap":
            suffix = ""
            if line.old_wheel_bytes is not None and line.new_wheel_bytes is not None:
                suffix = f" ({log.human_bytes(line.old_wheel_bytes)} → {log.human_bytes(line.new_wheel_bytes)} wheel)"
            lines.append(f"{line.old} → {line.new}{suffix}")
        elif line.action == "remove":
            lines.append(f"{line.old} removed ({line.reason})")
        elif line.old:
            lines.append(f"{line.old}: {line.reason or line.action}")
    return lines


# --- drawing ---------------------------------------------------------------------------------


def _fit(name: str, width: int) -> str:
    return name if len(name) <= width else name[: max(0, width - 1)] + ELLIPSIS


def bar(value: int, scale: int, width: int) -> str:
    """A bar of ``width`` cells at most, in eighths of a block; never empty for a non-zero value."""
    if scale <= 0 or width <= 0 or value <= 0:
        return ""
    eighths = max(1, round(min(value, scale) / scale * width * 8))
    full, rest = divmod(eighths, 8)
    return FULL_BLOCK * full + (PARTIAL_BLOCKS[rest] if rest else "")


def bar_chart(rows: Sequence[tuple[str, int]], width: int = 80, scale: int | None = None,
              indent: int = len(log.DETAIL), label: Callable[[int], str] = log.human_bytes,
              align_with: Sequence[tuple[str, int]] = ()) -> list[str]:
    """Rows of ``name  bar  size`` that fit in ``width`` columns once indented by ``indent``.

    Names longer than a third of the room are cut with an ellipsis. Charts drawn with the same
    ``scale`` and ``align_with`` (all rows of all of them) share columns and bar lengths, so a
    before and an after chart compare at a glance.
    """
    if not rows:
        return []
    every = [*rows, *align_with]
    size_width = max(len(label(value)) for _, value in every)
    room = max(10, width - indent)
    # Names get a third of the room, but at least 16 columns while a bar of 6 still fits.
    name_width = min(max(len(name) for name, _ in every), max(6, room // 3, min(16, room - size_width - 8)))
    bar_width = room - name_width - size_width - 2
    if bar_width < 3:
        name_width = max(3, room - size_width - 2 - 3)
        bar_width = max(1, room - name_width - size_width - 2)
    top_value = scale if scale else max(value for _, value in every)
    return [
        f"{_fit(name, name_width):<{name_width}} {bar(value, top_value, bar_width):<{bar_width}} "
        f"{label(value):>{size_width}}"
        for name, value in rows
    ]


def terminal_width() -> int:
    return max(40, min(120, shutil.get_terminal_size((80, 24)).columns))


# --- the limits ------------------------------------------------------------------------------


def advice(name: str) -> str:
    """What would shrink one of the biggest remaining items."""
    key = installed.canonical(name)
    gpu_advice = frameworks.advice(key)
    if gpu_advice is not None:
        return gpu_advice
    if key.startswith("tensorflow"):
        return "for inference only, ai-edge-litert (TFLite) is a fraction of the size"
    if key == "libclang":
        return "nothing imports it at run time: keep it in prune.packages"
    if key.startswith("app:"):
        return "move large data out of the slug (models.include, with models.source to fetch it at boot)"
    return "check you need it; prune.remove can drop parts of it you never import"


def limit_warnings(after_compressed: int, limits: LimitsConfig, remaining: list[tuple[str, int]],
                   flagged: list[unused.Unused]) -> list[str]:
    """Warnings for the soft and hard limits, each naming the biggest items left and a fix."""
    over_hard = after_compressed > limits.hard_mb * MB
    over_soft = after_compressed > limits.soft_mb * MB
    if not over_soft:
        return []
    size = log.human_bytes(after_compressed)
    if over_hard:
        head = (f"Warning: The slug is about {size} compressed, over the {limits.hard_mb} MB limit "
                "(limits.hard_mb), so Heroku will likely reject it.")
    else:
        head = (f"Warning: The slug is about {size} compressed, over {limits.soft_mb} MB (limits.soft_mb). "
                "This may affect boot time.")
    unused_names = {u.name: u for u in flagged}
    lines = [head, "", "The biggest items left:"]
    for name, value in remaining[:3]:
        fix = advice(name)
        if name in unused_names:
            fix = "your app never imports it: remove it from your requirements"
        shown = name.removeprefix("app:")
        lines.append(f"  {shown} ({log.human_bytes(value)}): {fix}")
    return lines


def app_items(build_dir: Path) -> dict[str, int]:
    """The app's own top-level files and directories (outside .heroku and .slugslim), by size."""
    items: dict[str, int] = {}
    for entry in build_dir.iterdir():
        if entry.name in BUILDPACK_DIRS or entry.is_symlink():
            continue
        if entry.is_file():
            items[f"app:{entry.name}"] = entry.stat().st_size
        elif entry.is_dir():
            total = 0
            for current, _, files in os.walk(entry):
                for name in files:
                    path = os.path.join(current, name)
                    if not os.path.islink(path):
                        total += os.path.getsize(path)
            items[f"app:{entry.name}/"] = total
    return items


# --- the step --------------------------------------------------------------------------------


def build(ctx: FinishContext, before: Snapshot) -> ReportResult:
    after_sizes, scanned = distribution_sizes(ctx.build_dir)
    after = estimate.estimate(ctx.build_dir, SLUG_ROOT)
    count = ctx.config.report.top
    flagged: list[unused.Unused] = []
    if scanned is not None:
        flagged = unused.find_unused(ctx.build_dir, scanned, ctx.config.report.ignore_unused)
    limits = ctx.config.limits
    remaining = top({**after_sizes, **app_items(ctx.build_dir)}, 3)
    return ReportResult(
        before={"bytes": before.size.bytes, "compressed_bytes": before.size.compressed_bytes},
        after={"bytes": after.bytes, "compressed_bytes": after.compressed_bytes},
        levers=lever_savings(ctx.state, ctx.results),
        distributions_before=top(before.distributions, count),
        distributions_after=top(after_sizes, count),
        unused=flagged,
        limits={
            "soft_mb": limits.soft_mb,
            "hard_mb": limits.hard_mb,
            "over_soft": after.compressed_bytes > limits.soft_mb * MB,
            "over_hard": after.compressed_bytes > limits.hard_mb * MB,
            "biggest": [{"name": n.removeprefix("app:"), "bytes": b, "advice": advice(n)} for n, b in remaining],
        },
        swaps=swap_lines(ctx.state),
        remaining=remaining,
        fit=fit.sections(ctx.state, ctx.results),
    )


def render(result: ReportResult, config: Config, width: int | None = None) -> None:
    """The build-log lines (steps and details on stdout, warnings on stderr)."""
    width = width or terminal_width()
    before, after = result.before, result.after
    log.step("Slug size")
    log.detail(
        f"Before slugslim: {log.human_bytes(before['compressed_bytes'])} compressed (estimated), "
        f"{log.human_bytes(before['bytes'])} on disk"
    )
    log.detail(
        f"After slugslim:  {log.human_bytes(after['compressed_bytes'])} compressed (estimated), "
        f"{log.human_bytes(after['bytes'])} on disk"
    )
    saved = before["compressed_bytes"] - after["compressed_bytes"]
    if before["compressed_bytes"] > 0:
        change = f"{log.human_bytes(abs(saved))} compressed ({abs(saved) / before['compressed_bytes']:.0%})"
        log.detail(f"Saved {change}" if saved >= 0 else f"Grew by {change}")
    baked = sum(m["bytes"] for m in (result.fit.get("hf") or {}).get("models", []) if m.get("where") == "slug")
    if baked:
        log.detail(f"Added: the Hugging Face models, {log.human_bytes(baked)} on disk, downloaded once by this "
                   "build instead of by every dyno at every boot")
    for line in result.swaps:
        log.detail(f"Swapped before install: {line}")
    if result.fit:
        fit.render(result.fit)
    if result.levers:
        log.detail("Saved, by lever (the swap in wheel size, the rest on disk):")
        name_width = max(len(lever["lever"]) for lever in result.levers)
        for lever in sorted(result.levers, key=lambda item: (item["step"] != "swap", -item["bytes"])):
            log.detail(f"  {lever['lever']:<{name_width}}  {log.human_bytes(lever['bytes']):>9}")
    both = [*result.distributions_before, *result.distributions_after]
    for title, rows in (("before", result.distributions_before), ("after", result.distributions_after)):
        if rows:
            log.detail(f"Largest distributions {title} (on disk):")
            for line in bar_chart(rows, width=width, align_with=both):
                log.detail(line)
    for item in result.unused:
        log.warning(
            f"Warning: {item.message(log.human_bytes)}.\n"
            f"It is listed in {item.source}, but no file of your app imports it and your Procfile does not run it.\n"
            "If you do not need it, remove it to make the slug smaller. If it is loaded dynamically,\n"
            f"add it to report.ignore_unused in slugslim.yml to silence this warning."
        )
    warnings = limit_warnings(after["compressed_bytes"], config.limits, result.remaining, result.unused)
    if warnings:
        log.warning("\n".join(warnings))


def write(build_dir: Path, result: ReportResult) -> Path:
    directory = build_dir / STATE_DIR
    directory.mkdir(exist_ok=True)
    path = directory / REPORT_FILE
    path.write_text(json.dumps(result.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


BUILD_LOG_WIDTH = 72  # heroku/python indents our hook's output by another 7 columns


def run(ctx: FinishContext, before: Snapshot) -> ReportResult:
    result = build(ctx, before)
    render(result, ctx.config, width=BUILD_LOG_WIDTH)
    write(ctx.build_dir, result)
    return result
