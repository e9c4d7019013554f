"""Apps with lock files made by the real uv, Poetry and Pipenv (heroku/python's versions) against a
package index on 127.0.0.1 (tests/localindex.py), for builds that the emulated heroku/python installs
with ``uv sync --locked``, ``poetry sync`` and ``pipenv install --deploy``.

A lock records its index's URL, port included, so an app is locked in the test (or session) that
serves the index, and the build runs while it still serves. The index stands in for PyPI: each app
names it as its only index (uv: the default index; Poetry: the primary source; Pipenv: the one
``[[source]]``). The tools run with the machine's package settings taken away and a HOME of their own.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.heroku.build import BASE_PYTHON
from tests.heroku.packagemanagers import Lockers

# What a build of a Pipenv app needs besides conftest.offline_env: there, PIP_NO_INDEX and PIP_FIND_LINKS
# stand in for PyPI for pip apps, and Pipenv's pip would read them too; a Pipfile.lock names its own index,
# and a Heroku build has no PIP_* settings.
PIPENV_BUILD_ENV = {"PIP_NO_INDEX": "0", "PIP_FIND_LINKS": ""}


@functools.cache
def python_major() -> str:
    """The app's Python as X.Y: the emulated heroku/python installs BASE_PYTHON whatever the app asks."""
    return subprocess.run([BASE_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def tool_env(home: Path) -> dict[str, str]:
    """This machine's environment without its package settings (pip's, uv's, Poetry's, Pipenv's), with
    caches, configuration and temporary files under ``home`` (``pipenv lock`` leaves some behind), no
    keyring, and no Python downloads."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PIP_", "UV_", "POETRY_", "PIPENV_", "XDG_")) and name != "VIRTUAL_ENV"}
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return {**env, "HOME": str(home), "TMPDIR": str(home / "tmp"), "PIP_CONFIG_FILE": os.devnull,
            "UV_PYTHON_DOWNLOADS": "never", "UV_NO_MANAGED_PYTHON": "1",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "POETRY_VIRTUALENVS_CREATE": "false",
            "PIPENV_VERBOSITY": "-1", "PIPENV_NOSPIN": "1", "PIPENV_YES": "1"}


def tool(command: Sequence[str], app: Path) -> subprocess.CompletedProcess[str]:
    """Run a tool in ``app`` as its developer would on their machine (HOME beside it), whatever it exits with."""
    home = app.parent / f".{app.name}-home"
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(command, cwd=app, env=tool_env(home), capture_output=True, text=True, check=False,
                          timeout=300)


def run_tool(command: Sequence[str], app: Path) -> str:
    """Run a tool in ``app`` (HOME beside it); its output, or an AssertionError that shows it."""
    done = tool(command, app)
    assert done.returncode == 0, f"{' '.join(command)} failed in {app}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _project(dependencies: Sequence[str], tail: str, requires_python: str) -> str:
    listed = "".join(f'    "{dependency}",\n' for dependency in dependencies)
    return (f'[project]\nname = "app"\nversion = "1.0.0"\n'
            f'requires-python = "{requires_python or ">=" + python_major()}"\n'
            f"dependencies = [\n{listed}]\n\n{tail}")


def uv_app(root: Path, lockers: Lockers, index: str, dependencies: Sequence[str], *,
           files: Mapping[str, str] | None = None, requires_python: str = "", tail: str = "") -> Path:
    """pyproject.toml with ``dependencies`` (``requires-python`` from the app's Python on, and ``tail``
    appended), .python-version (heroku/python requires it with uv), and ``uv lock``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(_project(
        dependencies, f'[[tool.uv.index]]\nname = "local"\nurl = "{index}"\ndefault = true\n\n{tail}', requires_python))
    (root / ".python-version").write_text(f"{python_major()}\n")
    _write(root, files)
    run_tool([*lockers.uv, "lock", "--python", BASE_PYTHON], root)
    return root


def poetry_app(root: Path, lockers: Lockers, index: str, dependencies: Sequence[str] | Mapping[str, str], *,
               files: Mapping[str, str] | None = None, requires_python: str = "") -> Path:
    """pyproject.toml with ``dependencies`` (no package of its own to install), and ``poetry lock``: a list
    is ``[project] dependencies``, a mapping (name: TOML value) Poetry 1's ``[tool.poetry.dependencies]``,
    which Poetry 2 still reads."""
    root.mkdir(parents=True, exist_ok=True)
    source = f'[[tool.poetry.source]]\nname = "local"\nurl = "{index}"\npriority = "primary"\n'
    if isinstance(dependencies, Mapping):
        listed = "".join(f"{name} = {value}  # needed\n" for name, value in dependencies.items())
        python = requires_python or f">={python_major()}"
        pyproject = ('[tool.poetry]\nname = "app"\nversion = "1.0.0"\ndescription = ""\npackage-mode = false\n\n'
                     f'[tool.poetry.dependencies]\npython = "{python}"\n{listed}\n{source}')
    else:
        pyproject = _project(dependencies, f"[tool.poetry]\npackage-mode = false\n\n{source}", requires_python)
    (root / "pyproject.toml").write_text(pyproject)
    _write(root, files)
    run_tool([*lockers.poetry, "lock", "--no-interaction"], root)
    return root


def pipenv_app(root: Path, lockers: Lockers, index: str, packages: Mapping[str, str], *,
               files: Mapping[str, str] | None = None) -> Path:
    """A Pipfile with ``packages`` (name: TOML value) and the app's Python, and ``pipenv lock``."""
    root.mkdir(parents=True, exist_ok=True)
    listed = "".join(f"{name} = {value}\n" for name, value in packages.items())
    (root / "Pipfile").write_text(f'[[source]]\nurl = "{index}"\nverify_ssl = false\nname = "local"\n\n'
                                  f'[packages]\n{listed}\n[requires]\npython_version = "{python_major()}"\n')
    _write(root, files)
    run_tool([*lockers.pipenv, "lock", "--python", BASE_PYTHON], root)
    return root


def _write(root: Path, files: Mapping[str, str] | None) -> None:
    for name, content in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content, encoding="utf-8")
