"""The one way to get a package manager's locker at build time: uv, Poetry or Pipenv, pinned.

heroku/python installs a lock file with its own pinned version of the manager (v351:
``requirements/uv.txt`` uv 0.12.5, ``poetry.txt`` Poetry 2.4.1, ``pipenv.txt`` Pipenv 2026.7.1), and
``uv sync --locked`` and friends refuse a lock that another version would have written differently.
So the re-lock runs the very same versions, installed from the hashed ``lib/lockers/<manager>.txt``
(made by ``make lock`` with hashes for every Python slugslim runs on) with ``pip --require-hashes``,
as slugslim's own tools are (``lib/bootstrap.sh``): slugslim's pip, on the stack's python3, into the
build cache, keyed by the lock's hash and the Python version, so the next build reuses it. Only the
one the app needs is installed, and only when a lock has a GPU build to swap.

The install sees the index settings slugslim's tools are installed with: the build's environment
and, of the config vars, ``PIP_INDEX_URL`` and ``PIP_EXTRA_INDEX_URL``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slugslim.core import pip
from slugslim.core.errors import RelockFailed

LOCKS = Path(__file__).resolve().parents[2] / "lockers"
# The config vars lib/bootstrap.sh hands to the pip that installs slugslim's tools.
TOOL_INDEX_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
MANAGERS = ("uv", "poetry", "pipenv")


@dataclass(frozen=True)
class Locker:
    """An installed locker: the command that runs it and what its environment needs."""

    manager: str
    version: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # PYTHONPATH for the Python ones
    python: str = ""  # the interpreter of the Python ones (Poetry, Pipenv), for their own virtualenvs and tools


def last_lines(output: str) -> str:
    """The last lines a locker printed, joined: where most say why they failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " / ".join(lines[-4:])


def run(locker: Locker, command: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float,
        why: Callable[[str], str] = last_lines) -> None:
    """Run the locker's re-lock, ``command`` (``env`` the whole environment), in ``cwd``.

    Raises ``RelockFailed`` naming the step when it cannot run, times out or fails; ``why`` picks the
    reason from what it printed.
    """
    step = f"re-locking with {locker.manager} {locker.version}"
    try:
        done = subprocess.run(list(command), cwd=cwd, env=dict(env), capture_output=True, text=True, check=False,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RelockFailed(step, str(exc)) from exc
    if done.returncode != 0:
        raise RelockFailed(step, f"{locker.manager} lock failed: {why(done.stderr + done.stdout)}")


def lock_file(manager: str) -> Path:
    return LOCKS / f"{manager}.txt"


def pinned_version(manager: str) -> str:
    """The version ``lib/lockers/<manager>.txt`` pins for the manager itself."""
    for line in lock_file(manager).read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{manager}=="):
            return line.split("==", 1)[1].split()[0].split(";")[0].strip()
    raise ValueError(f"{lock_file(manager)} pins no {manager}")


def install_dir(manager: str, cache_dir: Path) -> Path:
    lock_hash = hashlib.sha256(lock_file(manager).read_bytes()).hexdigest()[:16]
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return cache_dir / "slugslim" / "lockers" / f"{manager}-{lock_hash}-py{version}"


def ensure(manager: str, cache_dir: Path, config_vars: Mapping[str, str], timeout: float = 600) -> Locker:
    """The manager's locker, installed into the build cache unless a previous build did.

    Raises ``RelockFailed`` when it cannot be installed (pip's last lines say why).
    """
    if manager not in MANAGERS:
        raise ValueError(f"no locker for {manager}")
    target = install_dir(manager, cache_dir)
    if not (target / ".complete").is_file():
        _install(manager, target, config_vars, timeout)
    return _locker(manager, target)


def _install(manager: str, target: Path, config_vars: Mapping[str, str], timeout: float) -> None:
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    env = pip.environment({}, tools=("pip",))
    env.update({k: v.strip() for k, v in config_vars.items() if k in TOOL_INDEX_VARS})
    command = [sys.executable, "-m", "pip", "install", "--require-hashes", "--no-deps", "--only-binary=:all:",
               "--no-input", "--disable-pip-version-check", "--no-warn-script-location", "--quiet",
               "--target", str(partial), "--requirement", str(lock_file(manager))]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise RelockFailed(f"installing {manager} {pinned_version(manager)}", str(exc)) from exc
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = " / ".join([line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-3:])
        raise RelockFailed(f"installing {manager} {pinned_version(manager)}", f"pip failed: {tail}")
    (partial / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    # Lockers installed from an older lock for this Python are dead weight in the cache.
    for old in target.parent.glob(f"{manager}-*-py{sys.version_info[0]}.{sys.version_info[1]}"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def _locker(manager: str, target: Path) -> Locker:
    version = pinned_version(manager)
    if manager == "uv":
        return Locker(manager, version, (str(target / "bin" / "uv"),))
    # Poetry and Pipenv are Python packages: run by slugslim's python3 with the install on its path.
    return Locker(manager, version, (sys.executable, "-m", manager), {"PYTHONPATH": str(target)}, sys.executable)
