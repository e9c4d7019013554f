"""Re-lock a pip-tools app (requirements.in next to a hashed requirements.txt) for the CPU build.

Editing one hashed line is not enough when pip-tools wrote the file: its ``# via`` notes and the set
of CUDA pins follow from the resolution. So the swap is applied to requirements.in and pip-compile
runs again, as the app's developer would:

    python -m piptools compile --generate-hashes -o <copy of requirements.txt> requirements.in

pip-compile keeps every version already pinned in the output file, so the copy we hand it is the
old lock with the GPU names swapped (their old hashes removed): the versions stay, only the CPU
build's hashes are new, and the same input gives the same file on every build. The lock's own
header comment and option lines (--index-url, …) are kept as they were; pip-compile's body follows.

pip-compile runs on slugslim's Python, not the app's (heroku/python installs that later); for
requirements whose dependencies differ between Python versions the lock may differ slightly from
one made on the app's Python.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from slugslim.core import pip
from slugslim.core.config import SwapConfig
from slugslim.core.errors import SwapHashError
from slugslim.deps import requirements
from slugslim.prepare.swap.plan import FilePlan, SwapPlan, header_change
from slugslim.prepare.swap.pytorch import TorchIndex, is_torch_family, same_index
from slugslim.prepare.swap.swap import build_plan

UNSAFE = frozenset({"pip", "setuptools", "distribute", "wheel"})


def relock(build_dir: Path, config: SwapConfig, lock: Path, source: Path, python_version: str,
           config_vars: Mapping[str, str], torch_index: TorchIndex | None = None) -> SwapPlan:
    """Swap requirements.in, re-lock requirements.txt with hashes; return the plan (files not yet written)."""
    in_plan = build_plan(build_dir, config, root=source, python_version=python_version, torch_index=torch_index)
    lock_plan = build_plan(build_dir, config, root=lock, python_version=python_version, strip_hashes=True,
                           torch_index=torch_index)
    if not any(s.action == "swap" for s in in_plan.swaps):
        # Nothing in requirements.in to swap (TensorFlow comes in through another package): no re-lock.
        in_plan.files = []
        in_plan.hash_mode = True
        return in_plan
    original = lock_plan.files[0].parsed
    with tempfile.TemporaryDirectory(prefix="slugslim-relock-") as scratch:
        out = Path(scratch) / "requirements.txt"
        out.write_bytes(_without_header(lock_plan.files[0]))
        # pip-compile reads the .in from disk; write the swapped copy next to the original so that
        # relative -r/-c/-e paths and the "# via -r requirements.in" notes come out as before.
        swapped_sources = [f for f in in_plan.files if f.changed]
        backups = {f.parsed.path: f.parsed.raw for f in swapped_sources}
        for file_plan in swapped_sources:
            file_plan.parsed.path.write_bytes(_swapped_without_header(file_plan))
        try:
            body = _compile(build_dir, source, out, original, config_vars)
        finally:
            for path, raw in backups.items():
                path.write_bytes(raw)
    relocked = FilePlan(parsed=original, swaps=[])
    torch_swapped = any(s.action == "swap" and is_torch_family(s.source) for s in in_plan.swaps)
    named = any(same_index(o.value or "", config.torch_index) for e in original.entries for o in e.options)
    extra_index = config.torch_index.rstrip("/") if torch_swapped and not named else None
    relocked.replacement = _assemble(original, body, in_plan, extra_index)
    for swap in in_plan.swaps:
        if swap.action == "swap":
            swap.version = swap.version or _pin(body, swap.target)
    plan = SwapPlan(app_dir=build_dir, python_version=python_version, python_origin=in_plan.python_origin,
                    files=[*in_plan.files, relocked], hash_mode=True, skipped=in_plan.skipped + lock_plan.skipped)
    return plan


def _without_header(file_plan: FilePlan) -> bytes:
    return file_plan.parsed.render(file_plan.edits) if file_plan.edits else file_plan.parsed.raw


def _swapped_without_header(file_plan: FilePlan) -> bytes:
    return file_plan.parsed.render(file_plan.edits)


def _compile(build_dir: Path, source: Path, out: Path, original: requirements.RequirementsFile,
             config_vars: Mapping[str, str]) -> str:
    names = {e.name for e in original.entries if e.name}
    command = [
        sys.executable, "-m", "piptools", "compile", "--quiet", "--generate-hashes", "--no-header",
        "--no-emit-index-url", "--no-emit-find-links", "--no-emit-trusted-host", "--no-emit-options",
        "--strip-extras", "--output-file", str(out),
    ]
    if names & UNSAFE:
        command.append("--allow-unsafe")
    command.append(str(source.relative_to(build_dir)))
    env = pip.environment(config_vars, tools=("piptools", "pip", "click", "build"))
    done = subprocess.run(command, cwd=build_dir, env=env, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        tail = " / ".join([line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-4:])
        first = next((e for e in original.entries if e.name), None)
        raise SwapHashError(original.path.name, first.lineno if first else 1, first.args if first else "",
                            "the CPU builds", f"re-locking with pip-compile failed: {tail}")
    return out.read_text(encoding="utf-8")


def _assemble(original: requirements.RequirementsFile, body: str, in_plan: SwapPlan, extra_index: str | None) -> bytes:
    """Original header comments and option lines (and PyTorch's CPU index when torch moved there), then
    pip-compile's body, in the file's own encoding."""
    keep: list[str] = []
    for entry in original.entries:
        if entry.kind in ("named", "url", "path", "editable", "invalid"):
            break
        keep.extend(original.lines[entry.first: entry.last + 1])
    newline = original.newline
    body_lines = body.splitlines()
    while body_lines and not body_lines[0].strip():
        body_lines.pop(0)
    changes = "; ".join(header_change(s) for s in in_plan.swaps if s.action == "swap")
    header = (f"# slugslim (Heroku buildpack) re-locked this file at build time for the CPU build, dynos have "
              f"no GPU: {changes} (see requirements.in). Set 'swap: false' in slugslim.yml to turn this off.")
    insert_at = original.coding_line() + 1
    if insert_at > len(keep):
        insert_at = len(keep)
    head = list(keep)
    if head and not head[-1].endswith(("\n", "\r")):
        head[-1] += newline
    head.insert(insert_at, header + newline)
    if extra_index:
        head.append(f"--extra-index-url {extra_index}{newline}")
    text = "".join(head) + "".join(line + newline for line in body_lines)
    return original.bom + text.encode(original.encoding, "surrogateescape")


def _pin(body: str, name: str) -> str | None:
    for line in body.splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].split()[0].rstrip("\\").strip()
    return None
