"""What the runtime step runs with the app's Python: ``litert_tool.py``, and pip for the runtime packages.

``litert_tool.py`` (the converter and verifier, stdlib + numpy + TensorFlow or LiteRT) runs as
``<app python> litert_tool.py convert|check REQUEST.json RESULT.json``; exit status 0 means it
wrote RESULT.json.

The runtime packages (``ai-edge-litert`` and what it needs) come from slugslim's one lock of them,
``lib/runtime.lock`` (``make lock``: uv's universal resolution, hashed for every Python the app may
run), so that a build does not change when a new release appears on the index. They go in through
the app's pip (or ours aimed at the app's Python) in the one pip environment (``core.pip``: of the
app's config vars only ``PIP_EXTRA_INDEX_URL`` reaches it, as with heroku/python's pip), binary
wheels only, no pip cache, in two runs:

1. a dry run of the package at its locked version, with the lock's other pins as constraints,
   except for the distributions the app already has: those stay as the app installed them. When
   the install would change one of them anyway (a numpy downgrade, say), nothing is installed, so
   that undoing it is always uninstalling exactly what it added;
2. the install of exactly what the dry run chose, ``--no-deps --require-hashes`` with the lock's
   hashes: a file whose hash the lock does not list is refused, and the step keeps TensorFlow.

A version setting (``runtime.litert_version``) installs that version instead, and what it needs as
pip resolves it: not in the lock, so no hash can be checked.

The ONNX converter's export tools (``onnx``, ``onnxscript`` and what they need, ``lib/onnx-export.lock``)
go the same way into a build-only directory instead (``install(..., target=...)``, pip ``--target``):
under the build cache, one per Python (``export_tools_dir``), reused by the next build when the dry run
chooses the same files, and put in front of the app's path for the conversion only (``export_tools_env``).
What the app already has is not put there: a second copy would shadow the app's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from slugslim.core import apptool, pip
from slugslim.core.context import FinishContext
from slugslim.core.errors import NotShipped, RequirementsError
from slugslim.core.installed import read_dists
from slugslim.deps import requirements
from slugslim.deps.markers import applies_on_dyno, dyno_environment
from slugslim.deps.requirements import Entry

# The converter and verifier of each engine, run with the app's Python.
TOOLS = {"litert": Path(__file__).parent / "litert_tool.py", "onnx": Path(__file__).parent / "onnx_tool.py"}
LOCK = Path(__file__).resolve().parents[3] / "runtime.lock"
EXPORT_LOCK = LOCK.with_name("onnx-export.lock")
# In a target directory: what the install there put in, so that the next build can reuse it.
_TARGET_STAMP = ".slugslim-installed"
# Binary wheels only, no pip cache: the dry run and the install see the same files.
_PIP_ARGS = ("--only-binary=:all:", "--no-cache-dir", "--no-input", "--quiet")


@dataclass(frozen=True)
class Installed:
    added: list[str]  # the distributions newly installed
    version: str  # of the package asked for, as installed
    locked: bool  # from the lock, every file checked against its hashes


def run_tool(ctx: FinishContext, engine: str, action: str, request: dict[str, Any], timeout: float,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """One run of the engine's tool (``env``: the app's Python environment, or one made from it); NotShipped
    when it could not run at all."""
    try:
        loaded = apptool.run(ctx.python, TOOLS[engine], action, request, env or ctx.python_env(), ctx.build_dir,
                             timeout)
    except apptool.ToolFailed as exc:
        raise NotShipped(str(exc)) from None
    if not isinstance(loaded.get("models"), list):
        raise NotShipped(f"the {action} step wrote a result slugslim cannot read")
    return loaded


def _run_pip(ctx: FinishContext, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    command, env = pip.for_app(ctx.python, ctx.site_packages, ctx.env)
    try:
        return subprocess.run([*command, *args], cwd=ctx.build_dir, env=env, capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise NotShipped(f"pip did not finish within {timeout:.0f} s") from None


def _pins(lock: Path) -> list[Entry]:
    """The lock's pins: ``name==version``, maybe a marker, and hashes."""
    try:
        entries = requirements.read(lock).entries
    except (OSError, RequirementsError) as exc:
        raise NotShipped(f"slugslim's lock of runtime packages cannot be read: {exc}") from None
    return [e for e in entries if e.requirement is not None and e.hashes]


def _version(pin: Entry) -> str:
    assert pin.requirement is not None
    return next((s.version for s in pin.requirement.specifier if s.operator == "=="), "")


def app_python(ctx: FinishContext) -> str:
    """The app's Python as X.Y, from its site-packages (``lib/pythonX.Y/site-packages``); '' when unknown."""
    name = ctx.site_packages.parent.name if ctx.site_packages is not None else ""
    return name.removeprefix("python") if name.startswith("python3.") else ""


def locked_version(package: str, lock: Path | None = None, pins: list[Entry] | None = None, python: str = "") -> str:
    """The version of ``package`` the lock pins for the app's Python ``python`` (X.Y; '' for any), or ''
    when it pins none; ``pins`` when already read. A universal lock may pin two versions with markers:
    onnxruntime 1.24.3 for Python 3.10, whose wheels end there, 1.32.0 for the others."""
    pins = pins if pins is not None else _pins(lock or LOCK)
    environment = dyno_environment(python) if python else None
    return next((_version(p) for p in pins if p.name == canonicalize_name(package) and p.requirement is not None
                 and (environment is None or applies_on_dyno(p.requirement, environment))), "")


def install(ctx: FinishContext, package: str, timeout: float, *, version: str = "", lock: Path | None = None,
            ours: Collection[str] = (), target: Path | None = None) -> Installed:
    """Install ``package`` and what it needs from the lock, or at ``version`` (a version setting) unchecked.

    ``ours``: distributions an earlier build of this step installed, which this one may change.
    ``target``: a directory to install into instead of the app's site-packages (what the app has
    stays out of it); ``added`` is then what the directory holds.
    """
    assert ctx.site_packages is not None
    before = read_dists(ctx.site_packages)
    pins = _pins(lock or LOCK)
    name = canonicalize_name(package)
    pinned = locked_version(package, pins=pins, python=app_python(ctx))
    locked = not version or version == pinned
    if locked and not pinned:
        raise NotShipped(f"slugslim's lock of runtime packages pins no {package}")
    wanted = pinned if locked else version
    # The app's own distributions are not constrained: they stay at the versions the app installed.
    constraints = [p.args for p in pins if locked and p.name != name and p.name not in before]
    with tempfile.TemporaryDirectory(prefix="slugslim-runtime-pip-") as scratch:
        report, constraints_file, chosen = (Path(scratch) / n for n in ("report.json", "constraints.txt", "chosen.txt"))
        constraints_file.write_text("".join(f"{line}\n" for line in constraints), encoding="utf-8")
        dry = _run_pip(ctx, ["install", "--dry-run", "--report", str(report), *_PIP_ARGS,
                             "--constraint", str(constraints_file), f"{package}=={wanted}"], timeout)
        if dry.returncode != 0 or not report.is_file():
            raise NotShipped(f"pip found no {package} {wanted} wheel for the app's Python, or not what it "
                             f"needs:\n{apptool.tail(dry.stderr + dry.stdout)}")
        items = json.loads(report.read_text(encoding="utf-8")).get("install") or []
        planned = [(canonicalize_name(str(item.get("metadata", {}).get("name", ""))),
                    str(item.get("metadata", {}).get("version", ""))) for item in items]
        changes = [f"{dist} {before[dist].version} -> {v}" for dist, v in planned
                   if dist in before and dist not in ours]
        if changes:
            raise NotShipped(f"installing {package} would change what your app installed: {', '.join(changes)}")
        chosen.write_text("".join(f"{_hashed(pins, dist, v) if locked else f'{dist}=={v}'}\n" for dist, v in planned),
                          encoding="utf-8")
        if target is not None:
            return _install_into(ctx, target, chosen, locked, timeout, package)
        done = _run_pip(ctx, ["install", *_PIP_ARGS, "--no-deps", *(["--require-hashes"] if locked else []),
                              "--requirement", str(chosen)], timeout) if planned else None
    after = read_dists(ctx.site_packages)
    added = sorted(set(after) - set(before))
    if done is not None and done.returncode != 0:
        uninstall(ctx, added, timeout)
        raise NotShipped(f"pip could not install {package}:\n{apptool.tail(done.stderr + done.stdout)}")
    return Installed(added=added, version=after[name].version if name in after else "", locked=locked)


def _install_into(ctx: FinishContext, target: Path, chosen: Path, locked: bool, timeout: float,
                  package: str) -> Installed:
    """pip --target of exactly what the dry run chose; a directory that holds just that already is kept."""
    wanted = chosen.read_text(encoding="utf-8")
    stamp = target / _TARGET_STAMP
    if not (stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        done = _run_pip(ctx, ["install", *_PIP_ARGS, "--no-deps", *(["--require-hashes"] if locked else []),
                              "--target", str(target), "--requirement", str(chosen)], timeout) if wanted else None
        if done is not None and done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise NotShipped(f"pip could not install {package}:\n{apptool.tail(done.stderr + done.stdout)}")
        stamp.write_text(wanted, encoding="utf-8")
    held = read_dists(target)
    name = canonicalize_name(package)
    return Installed(added=sorted(held), version=held[name].version if name in held else "", locked=locked)


def export_tools_dir(ctx: FinishContext, scratch: Path) -> Path:
    """Where the export tools for the app's Python go: the build cache, else ``scratch`` (no cache)."""
    assert ctx.site_packages is not None
    python = ctx.site_packages.parent.name  # python3.11
    return (ctx.cache_dir / "slugslim" if ctx.cache_dir else scratch) / "onnx-export" / python


def export_tools_env(ctx: FinishContext, directory: Path) -> dict[str, str]:
    """The app's Python's environment with the export tools in front of the app's own path."""
    env = ctx.python_env()
    env["PYTHONPATH"] = f"{directory}{os.pathsep}{env['PYTHONPATH']}"
    return env


def _hashed(pins: list[Entry], dist: str, version: str) -> str:
    """``dist==version`` with every hash the lock lists for it; NotShipped when the lock does not pin it."""
    hashes = sorted({h for p in pins if p.name == dist and _version(p) == version for h in p.hashes})
    if not hashes:
        raise NotShipped(f"it needs {dist} {version}, which slugslim's lock of runtime packages does not pin "
                         "for the app's Python")
    return f"{dist}=={version} " + " ".join(f"--hash={h}" for h in hashes)


def uninstall(ctx: FinishContext, names: list[str], timeout: float) -> None:
    """Take out what ``install`` added (pip removes their files, scripts and dist-info)."""
    if names:
        _run_pip(ctx, ["uninstall", "--yes", "--quiet", *names], timeout)
