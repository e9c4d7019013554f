"""Prepare phase of the swap: rewrite requirements.txt (and what it includes) before the install.

``slugslim.prepare.swap.swap`` plans the changes; this module looks the wheels up on the app's indexes, re-locks
pip-tools apps (``slugslim.prepare.swap.relock``), writes the files atomically and logs each change. Apps with a
uv, Poetry or Pipenv lock are re-locked for the CPU builds by ``slugslim.prepare.swap.locks``; what
either leaves is for the finish phase's fix-up (``slugslim.finish.fixup``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slugslim.core import log
from slugslim.core.config import Config, SwapConfig
from slugslim.core.state import SwapLine, SwapState
from slugslim.deps import pyversion, requirements
from slugslim.deps.sources import (
    MANAGERS,
    OTHER_MANAGERS,
    PIP_TOOLS_INPUT,
    REQUIREMENTS,
    index_options,
    package_manager,
)
from slugslim.deps.wheels import Lookup, PipLookup
from slugslim.prepare.swap import relock
from slugslim.prepare.swap._write import write_bytes
from slugslim.prepare.swap.locks import flow
from slugslim.prepare.swap.plan import Swap, SwapPlan
from slugslim.prepare.swap.pytorch import TorchIndex
from slugslim.prepare.swap.swap import build_plan, relative


@dataclass
class SwapResult:
    enabled: bool
    manager: str  # pip, uv, poetry, pipenv or none
    python_version: str = ""
    python_origin: str = ""
    swaps: list[Swap] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    hash_mode: bool = False
    relocked: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled, "manager": self.manager, "python_version": self.python_version,
            "python_origin": self.python_origin, "swaps": [s.to_json() for s in self.swaps],
            "files_changed": self.files_changed, "hash_mode": self.hash_mode, "relocked": self.relocked,
            "notes": self.notes,
        }

    def state(self) -> SwapState:
        """What the finish phase needs of the swap (``core.state``)."""
        return SwapState(enabled=self.enabled, manager=self.manager, python_version=self.python_version, lines=[
            SwapLine(action=s.action, old=" ".join(s.old.split()), new=" ".join(s.new.split()), reason=s.reason,
                     saved_bytes=s.saved_bytes, old_wheel_bytes=s.old_wheel.size if s.old_wheel else None,
                     new_wheel_bytes=s.new_wheel.size if s.new_wheel else None)
            for s in self.swaps])


def prepare(build_dir: Path, config: Config, env: dict[str, str], lookup: Lookup | None = None,
            torch_index: TorchIndex | None = None, python: pyversion.AppPython | None = None,
            cache_dir: Path | None = None) -> SwapResult:
    """Rewrite requirements.txt (and the files it includes) to the CPU builds, or re-lock a uv, Poetry or
    Pipenv lock for them (``locks.flow``). Logs each change.

    ``python`` is the app's Python as the prepare phase decided it (``slugslim.deps.pyversion``);
    ``cache_dir`` the build cache, where the re-lock's locker and its cache are kept.
    """
    manager = package_manager(build_dir)
    if not config.swap.enabled:
        log.detail("CPU swap: off ('swap: false')")
        return SwapResult(enabled=False, manager=manager)
    python = python or pyversion.app_python(build_dir)
    python_version, origin = python.minor, python.where
    result = SwapResult(enabled=True, manager=manager, python_version=python_version, python_origin=origin)
    if manager != "pip":
        if manager in MANAGERS:
            _swap_lock(build_dir, manager, config, env, python, cache_dir, result)
        return result
    root = build_dir / REQUIREMENTS
    if lookup is None:
        tree_files = requirements.read_tree(root, build_dir).files
        lookup = PipLookup(python_version, env, index_options(tree_files))
    torch_index = torch_index or TorchIndex(config.swap.torch_index, python_version, env)
    relock_input = build_dir / PIP_TOOLS_INPUT
    plan = build_plan_or_relock(build_dir, config.swap, root, python_version, lookup, torch_index, relock_input, env,
                                result)
    result.hash_mode = plan.hash_mode
    for warning in plan.skipped:
        log.warning(f"Warning: {warning}")
    for file_plan in plan.files:
        for swap in file_plan.swaps:
            if swap.action == "warn":
                log.warning(f"Warning: {swap.file} line {swap.line}: {swap.describe()}.")
            elif swap.action == "note":
                log.detail(f"{swap.file} line {swap.line}: {swap.describe()}")
        if file_plan.changed:
            write_bytes(file_plan.parsed.path, file_plan.render(), build_dir)
            result.files_changed.append(relative(file_plan.parsed.path, build_dir))
    result.swaps = plan.swaps
    changes = [s for s in plan.swaps if s.action not in ("warn", "note")]
    if changes:
        log.detail(f"CPU swap (Python {python_version}, from {origin}):")
        for swap in changes:
            log.detail(f"  {swap.file} line {swap.line}: {swap.describe()}")
    elif not plan.swaps:
        log.detail("CPU swap: no GPU build in requirements.txt")
    return result


def _swap_lock(build_dir: Path, manager: str, config: Config, env: dict[str, str], python: pyversion.AppPython,
               cache_dir: Path | None, result: SwapResult) -> None:
    lock = OTHER_MANAGERS[MANAGERS.index(manager)]
    if manager not in flow.ADAPTERS or cache_dir is None:
        result.notes.append(f"{lock} is not re-locked at build time; any GPU build it installs "
                            "(TensorFlow, PyTorch, ONNX Runtime) is replaced by the CPU build after the install")
        log.detail(f"CPU swap: {result.notes[-1]}")
        return
    done = flow.swap(build_dir, manager, config.swap, env, cache_dir, python)
    result.swaps, result.files_changed, result.relocked = done.swaps, done.files_changed, done.relocked
    result.notes.extend(done.notes)


def build_plan_or_relock(build_dir: Path, config: SwapConfig, root: Path, python_version: str, lookup: Lookup,
                         torch_index: TorchIndex, relock_input: Path, env: Mapping[str, str],
                         result: SwapResult) -> SwapPlan:
    """Hash mode with pip-tools: re-lock from the swapped requirements.in; otherwise plan line edits."""
    if relock_input.is_file() and root.is_file() and requirements.read_tree(root, build_dir).hash_mode:
        plan = relock.relock(build_dir, config, root, relock_input, python_version, env, torch_index)
        result.relocked = bool(plan.swaps)
        return plan
    return build_plan(build_dir, config, root=root, python_version=python_version, lookup=lookup,
                      torch_index=torch_index)
