"""Check that the app still imports: the app's Python, in a subprocess, on the real tree.

It imports every top-level module the app's own source imports that an installed
distribution provides, plus ``tensorflow`` when it is installed and any ``verify.imports``,
then runs ``verify.command``. It records each module it loaded and whether that module's
``.pyc`` is valid for its source, which is what ``prune.bytecode: imported`` keeps and what
proves the interpreter will not recompile it at dyno boot.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Directories of an app checkout that are not the app's own code.
SKIP_DIRS = frozenset(
    {".heroku", ".slugslim", ".git", ".hg", "node_modules", ".venv", "venv", "env", "__pycache__", ".profile.d",
     "site-packages", ".tox", ".nox", ".mypy_cache", ".pytest_cache"}
)
MAX_APP_FILES = 5000

# Runs inside the app's interpreter. argv: result file, JSON list of modules, root to report on.
_SCRIPT = r"""
import importlib, importlib.util, json, os, sys, traceback
out, modules, root = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
failures = {}
for name in modules:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        failures[name] = (lines[-1].strip() if lines else repr(exc))[:500]
def valid(source, cached):
    try:
        with open(cached, "rb") as handle:
            head = handle.read(16)
        if len(head) < 16 or head[:4] != importlib.util.MAGIC_NUMBER:
            return False
        if int.from_bytes(head[4:8], "little") & 1:
            return True
        st = os.stat(source)
        return (int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF)
    except OSError:
        return False
loaded = {}
for name, module in list(sys.modules.items()):
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) or ""
    if not origin.endswith(".py"):
        continue
    # /app/.heroku/python is a symlink to BUILD_DIR/.heroku/python during the build
    origin = os.path.realpath(origin)
    if not origin.startswith(root):
        continue
    cached = getattr(spec, "cached", None) or ""
    cached = os.path.realpath(cached) if cached else ""
    loaded[name] = [origin, cached, bool(cached) and valid(origin, cached)]
import resource  # peak resident memory of this process: what one web process with these imports needs
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with open(out, "w") as handle:
    json.dump({"failures": failures, "modules": loaded, "peak_rss": peak}, handle)
"""


@dataclass
class Outcome:
    """What one verification run saw."""

    ok: bool
    failures: dict[str, str] = field(default_factory=dict)  # module -> last traceback line
    command_failure: str = ""  # last line of verify.command's output when it failed
    # module -> (source, cached .pyc, whether that .pyc is valid for the source)
    modules: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    seconds: float = 0.0
    # modules whose bytecode was valid before pruning and is missing or stale now
    recompiled: list[str] = field(default_factory=list)
    peak_rss: int = 0  # bytes, the verification process's peak resident memory (0: unknown)

    def problems(self) -> list[str]:
        lines = [f"import {name}: {line}" for name, line in sorted(self.failures.items())]
        if self.command_failure:
            lines.append(f"verify.command: {self.command_failure}")
        if self.recompiled:
            shown = ", ".join(self.recompiled[:5])
            lines.append(f"{len(self.recompiled)} imported modules would be recompiled at boot ({shown})")
        return lines

    def bytecode(self, site_packages: Path) -> frozenset[str]:
        """The valid .pyc files this run imported, relative to site-packages."""
        root = os.path.realpath(site_packages) + os.sep
        return frozenset(
            cached[len(root):].replace(os.sep, "/")
            for _source, cached, good in self.modules.values()
            if good and cached.startswith(root)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failures": self.failures,
            "command_failure": self.command_failure,
            "modules": len(self.modules),
            "recompiled": self.recompiled,
            "seconds": round(self.seconds, 2),
            "peak_rss": self.peak_rss,
        }


def app_imports(app_dir: Path) -> set[str]:
    """Top-level module names the app's own source imports (static; never runs app code)."""
    names: set[str] = set()
    seen = 0
    for top, dirnames, filenames in os.walk(app_dir):
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in SKIP_DIRS and not os.path.islink(os.path.join(top, d))
            and not os.path.exists(os.path.join(top, d, "pyvenv.cfg"))
        )
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            seen += 1
            if seen > MAX_APP_FILES:
                return names
            try:
                source = Path(top, name).read_bytes()
                tree = ast.parse(source)
            except (OSError, SyntaxError, ValueError):
                continue
            names |= _imports_of(tree)
    return names


def _imports_of(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".", 1)[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".", 1)[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            value = node.args[0].value
            if called in ("import_module", "__import__") and isinstance(value, str) and value and value[0] != ".":
                names.add(value.split(".", 1)[0])
    return names


def targets(app_imports: Iterable[str], installed: Mapping[str, str], extra: Iterable[str] = ()) -> list[str]:
    """What to import: the app's imports that an installed distribution provides, TF, extras."""
    wanted = {name for name in app_imports if name in installed}
    if "tensorflow" in installed:
        wanted.add("tensorflow")
    wanted |= {name for name in extra if name}
    return sorted(wanted)


def run(
    python: Path | str,
    env: Mapping[str, str],
    cwd: Path,
    modules: list[str],
    site_packages: Path,
    command: str = "",
    timeout: float = 600,
) -> Outcome:
    """One verification run. Never raises for the app's own failures; they are the outcome."""
    started = time.monotonic()
    run_env = dict(env)
    # Verification must not write bytecode into the slug; what exists is what is checked.
    run_env["PYTHONDONTWRITEBYTECODE"] = "1"
    failures: dict[str, str] = {}
    loaded: dict[str, tuple[str, str, bool]] = {}
    peak_rss = 0
    with tempfile.TemporaryDirectory(prefix="slugslim-verify-") as scratch:
        result_file = Path(scratch) / "result.json"
        root = os.path.realpath(site_packages) + os.sep
        argv = [str(python), "-c", _SCRIPT, str(result_file), json.dumps(modules), root]
        try:
            proc = subprocess.run(
                argv, cwd=cwd, env=run_env, timeout=timeout, capture_output=True, text=True, errors="replace"
            )
        except subprocess.TimeoutExpired:
            return Outcome(
                ok=False,
                failures={m: f"timed out after {timeout:.0f}s" for m in modules[:1]} or {"(imports)": "timed out"},
                seconds=time.monotonic() - started,
            )
        if result_file.is_file():
            data = json.loads(result_file.read_text(encoding="utf-8"))
            failures = dict(data["failures"])
            loaded = {k: (v[0], v[1], bool(v[2])) for k, v in data["modules"].items()}
            peak_rss = int(data.get("peak_rss", 0))
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            why = tail[-1] if tail else f"the interpreter exited with status {proc.returncode}"
            failures = {"(interpreter)": why}
        command_failure = ""
        if command and not failures:
            command_failure = _run_command(command, run_env, cwd, max(1.0, timeout - (time.monotonic() - started)))
    return Outcome(
        ok=not failures and not command_failure,
        failures=failures,
        command_failure=command_failure,
        modules=loaded,
        seconds=time.monotonic() - started,
        peak_rss=peak_rss,
    )


def _run_command(command: str, env: Mapping[str, str], cwd: Path, timeout: float) -> str:
    try:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=dict(env), timeout=timeout, capture_output=True, text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f}s"
    if proc.returncode == 0:
        return ""
    tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return f"exit status {proc.returncode}" + (f": {tail[-1]}" if tail else "")
