"""Check that the app still imports: the app's Python, in a subprocess, on the real tree.

It imports, by their full dotted names, the modules the app's own source and its Procfile
commands import (as ``imports.scan_app`` reads them) that an installed distribution provides,
plus ``tensorflow`` when it is installed and any ``verify.imports``, then runs
``verify.command``. ``from x import y`` counts as the module ``x.y`` only where ``x.y`` is a
module. Every process of these runs records the modules it loaded and whether each one's
``.pyc`` is valid for its source (``record``), which is what ``prune.bytecode`` keeps and what
proves the interpreter will not recompile it at dyno boot.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slugslim.appcheck.imports import Found, scan_app
from slugslim.appcheck.record import ImportRecord, Modules
from slugslim.core.installed import canonical, console_scripts, owners_of, top_level_modules

# Runs inside the app's interpreter. argv: result file, JSON list of modules, JSON list of names
# that count only if they are modules (``from x import y``: y may be a function).
_SCRIPT = r"""
import importlib, importlib.util, json, sys, traceback
out, modules, maybe = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
failures, found, optional = {}, [], {}
def attempt(name, into):
    try:
        importlib.import_module(name)
        return True
    except BaseException as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        into[name] = (lines[-1].strip() if lines else repr(exc))[:500]
        return False
for name in modules:
    attempt(name, failures)
for name in maybe:
    parent = sys.modules.get(name.rpartition(".")[0])
    if name in sys.modules:
        found.append(name)
        continue
    if parent is not None and not hasattr(parent, "__path__"):
        continue
    try:
        spec = importlib.util.find_spec(name)
    except BaseException:
        spec = None
    if spec is not None and attempt(name, optional):
        found.append(name)
# peak resident memory of this process: what one web process with these imports needs
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with open(out, "w") as handle:
    json.dump({"failures": failures, "found": found, "optional": optional, "peak_rss": peak}, handle)
"""


@dataclass
class Outcome:
    """What one verification run saw."""

    ok: bool
    failures: dict[str, str] = field(default_factory=dict)  # module -> last traceback line
    command_failure: str = ""  # last line of verify.command's output when it failed
    boot_failure: str = ""  # what the web process did instead of answering (boot_check)
    # module -> (source, cached .pyc, whether that .pyc is valid for the source)
    modules: Modules = field(default_factory=dict)
    found: list[str] = field(default_factory=list)  # names of ``maybe`` that are modules and import
    seconds: float = 0.0
    # modules whose bytecode was valid before pruning and is missing or stale now
    recompiled: list[str] = field(default_factory=list)
    peak_rss: int = 0  # bytes, the verification process's peak resident memory (0: unknown)
    web_rss: int = 0  # bytes, the booted web process (parent and workers) after its answers (boot_check)

    def problems(self) -> list[str]:
        lines = [f"import {name}: {line}" for name, line in sorted(self.failures.items())]
        if self.command_failure:
            lines.append(f"verify.command: {self.command_failure}")
        if self.boot_failure:
            lines.append(f"web process: {self.boot_failure}")
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
            "boot_failure": self.boot_failure,
            "modules": len(self.modules),
            "recompiled": self.recompiled,
            "seconds": round(self.seconds, 2),
            "peak_rss": self.peak_rss,
            "web_rss": self.web_rss,
        }


def targets(found: Found, installed: Mapping[str, str], extra: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """What to import: (modules, names that count only if they are modules), both limited to what
    an installed distribution provides, with TF when installed and ``verify.imports``."""

    def provided(name: str) -> bool:
        return name.split(".", 1)[0] in installed

    wanted = {name for name in found.modules if provided(name)}
    if "tensorflow" in installed:
        wanted.add("tensorflow")
    wanted |= {name for name in extra if name}
    maybe = {name for name in found.maybe if provided(name)} - wanted
    return sorted(wanted), sorted(maybe)


def run(
    python: Path | str,
    env: Mapping[str, str],
    cwd: Path,
    modules: list[str],
    site_packages: Path,
    command: str = "",
    timeout: float = 600,
    maybe: Iterable[str] = (),
) -> Outcome:
    """One verification run. Never raises for the app's own failures; they are the outcome."""
    started = time.monotonic()
    run_env = dict(env)
    # Verification must not write bytecode into the slug; what exists is what is checked.
    run_env["PYTHONDONTWRITEBYTECODE"] = "1"
    failures: dict[str, str] = {}
    found: list[str] = []
    peak_rss = 0
    with tempfile.TemporaryDirectory(prefix="slugslim-verify-") as scratch, ImportRecord() as record:
        run_env = record.env(run_env)
        result_file = Path(scratch) / "result.json"
        argv = [str(python), "-c", _SCRIPT, str(result_file), json.dumps(modules), json.dumps(sorted(maybe))]
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
            found = list(data["found"])
            peak_rss = int(data.get("peak_rss", 0))
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            why = tail[-1] if tail else f"the interpreter exited with status {proc.returncode}"
            failures = {"(interpreter)": why}
        command_failure = ""
        if command and not failures:
            command_failure = _run_command(command, run_env, cwd, max(1.0, timeout - (time.monotonic() - started)))
        loaded = record.modules(site_packages)
    return Outcome(
        ok=not failures and not command_failure,
        failures=failures,
        command_failure=command_failure,
        modules=loaded,
        found=found,
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


def app_targets(app_dir: Path | None, site_packages: Path, provided: Mapping[str, str] | None, names: Iterable[str],
                unchecked: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """The import check's targets for the app in ``app_dir`` (``targets``): its imports, its Procfile's
    and console scripts' modules, and ``names`` (``verify.imports``), among the top-level modules
    ``provided`` (module -> distribution; None: as the installed metadata says), leaving out the
    distributions in ``unchecked``."""
    if provided is None:
        provided = top_level_modules(owners_of(site_packages))
    found = scan_app(app_dir, console_scripts(site_packages)) if app_dir else Found()
    return targets(found, {m: d for m, d in provided.items() if canonical(d) not in unchecked}, names)
