"""uv, Poetry and Pipenv at heroku/python's versions, offline: for the emulated heroku/python, which
installs lock files with them as the real one does, and for the tests that make those lock files.

The versions are the emulation's own ``python-buildpack/requirements/{uv,poetry,pipenv}.txt``, as in
heroku/python (``tests/locks/test_emulated_lockfiles.py`` compares them with a real checkout). Their wheels,
with every dependency, come from slugslim's own hashed pins of the three (``lib/lockers/``, which the
lock swap re-locks with; a test checks that both name the same versions) and are downloaded once per
machine into ``.cache/package-managers`` (`make test` does it before pytest starts:
``python -m tests.heroku.packagemanagers``); builds then install from there with no index, as the
real one installs from PyPI or its CDN.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.heroku.build import BASE_PYTHON, PYTHON_BUILDPACK, REPO, made_once

REQUIREMENTS = PYTHON_BUILDPACK / "requirements"
TOOLS = ("uv", "poetry", "pipenv")
# slugslim's own hashed pins of the three (lib/lockers/, made by `make lock`): one lock of each tool.
LOCKS = tuple(REPO / "lib" / "lockers" / f"{tool}.txt" for tool in TOOLS)
TARGET = REPO / ".cache" / "package-managers"


def versions() -> dict[str, str]:
    """Each tool's pinned version, read from ``requirements/<tool>.txt`` (``tool==X.Y.Z``)."""
    return {tool: (REQUIREMENTS / f"{tool}.txt").read_text(encoding="utf-8").strip().removeprefix(f"{tool}==")
            for tool in TOOLS}


def download(python: str = "") -> Path:
    """The wheel directory for Python ``python`` (X.Y; this Python's when empty or the same), complete;
    pytest-xdist workers and make: one downloads, the others wait.

    Another Python's wheels (a stack's python3 in `make test-pythons`) go beside, in ``package-managers-pyX.Y``.
    Keyed by the lock's bytes: a re-lock downloads again.
    """
    other = python not in ("", f"{sys.version_info[0]}.{sys.version_info[1]}")
    target = TARGET.with_name(f"{TARGET.name}-py{python}") if other else TARGET
    stamp = target / f".complete-{hashlib.sha256(b''.join(p.read_bytes() for p in LOCKS)).hexdigest()[:12]}"
    target.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.is_file():
            shutil.rmtree(target)
            for pins in LOCKS:  # one pip run each: the three may pin a shared dependency differently
                subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                                "--isolated", "--no-deps", "--only-binary", ":all:", "--require-hashes",
                                *(["--python-version", python] if other else []),
                                "-r", str(pins), "-d", str(target)], check=True)
            stamp.touch()
    return target


def extract_uv(wheels: Path, dest: Path) -> Path:
    """The ``uv`` binary of the uv wheel in ``wheels``, written to ``dest/uv``."""
    wheel = next(wheels.glob("uv-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        member = next(name for name in archive.namelist() if name.endswith(".data/scripts/uv"))
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "uv").write_bytes(archive.read(member))
    (dest / "uv").chmod(0o755)
    return dest / "uv"


@dataclass(frozen=True)
class Lockers:
    """The three tools on this machine, as commands, for tests that make lock files."""

    uv: tuple[str, ...]
    poetry: tuple[str, ...]
    pipenv: tuple[str, ...]


def lockers(wheels: Path) -> Lockers:
    """The tools, installed once per machine from ``wheels`` under BASE_PYTHON (the app's Python in builds).

    Poetry and Pipenv each get a venv of their own and are run as ``python -m``: the directory is
    made elsewhere and renamed into place, which a venv's interpreter survives and its scripts'
    shebangs would not.
    """
    pinned = versions()
    key = hashlib.sha256(b"\0".join([*(p.read_bytes() for p in LOCKS), os.fsencode(BASE_PYTHON)])).hexdigest()[:12]

    def install(dest: Path) -> None:
        extract_uv(wheels, dest / "uv")
        for tool in ("poetry", "pipenv"):
            subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(dest / tool)], check=True)
            subprocess.run([sys.executable, "-m", "pip", "--python", str(dest / tool / "bin/python"), "install",
                            "--quiet", "--disable-pip-version-check", "--isolated", "--no-index",
                            "--find-links", str(wheels), f"{tool}=={pinned[tool]}"], check=True)

    made = made_once(REPO / ".cache" / "package-managers-host" / key, install)
    return Lockers(uv=(str(made / "uv/uv"),),
                   poetry=(str(made / "poetry/bin/python"), "-m", "poetry"),
                   pipenv=(str(made / "pipenv/bin/python"), "-m", "pipenv"))


if __name__ == "__main__":
    download()
