"""The emulated heroku/python installs lock files as the real one does: `uv sync --locked`, `poetry sync`
and `pipenv install --deploy` with heroku/python's versions of the tools, flags and environment, the
tools kept in its cache, and a cached rebuild that downloads nothing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import localindex, lockfiles
from tests.conftest import HerokuBuild
from tests.heroku import packagemanagers, real
from tests.heroku.build import Build
from tests.heroku.packagemanagers import Lockers
from tests.test_swap_e2e import CHECK, app_python, dists, find_links, without

pytestmark = pytest.mark.slow

# A git directory (or checkout) of heroku/heroku-buildpack-python (README, "Development").
APP_PY = "import flask_fake\n"
Make = Callable[[Path, Lockers, str], Path]


def uv(root: Path, lockers: Lockers, index: str) -> Path:
    return lockfiles.uv_app(root, lockers, index, ["flask-fake==3.0.0"], files={"app.py": APP_PY})


def poetry(root: Path, lockers: Lockers, index: str) -> Path:
    return lockfiles.poetry_app(root, lockers, index, ["flask-fake==3.0.0"], files={"app.py": APP_PY})


def pipenv(root: Path, lockers: Lockers, index: str) -> Path:
    return lockfiles.pipenv_app(root, lockers, index, {"flask-fake": '"==3.0.0"'}, files={"app.py": APP_PY})


MANAGERS: dict[str, tuple[Make, str, str]] = {  # how to make the app, the tool's name in the log, its command
    "uv": (uv, "uv", "uv sync --locked --no-default-groups"),
    "poetry": (poetry, "Poetry", "poetry sync --only main"),
    "pipenv": (pipenv, "Pipenv", "pipenv install --deploy"),
}


@pytest.mark.parametrize("tool", packagemanagers.TOOLS)
def test_the_emulation_pins_the_tools_heroku_python_pins(tool: str) -> None:
    ours = (packagemanagers.REQUIREMENTS / f"{tool}.txt").read_bytes()
    assert ours == real.read(f"requirements/{tool}.txt", "the pins are not compared with the real heroku/python's")


def site_dists(build: Build) -> set[str]:
    return {p.name.split("-")[0].lower() for p in build.site_packages().glob("*.dist-info")}


@pytest.mark.parametrize("manager", MANAGERS)
def test_a_lock_file_is_installed_by_its_tool_a_cached_rebuild_downloads_nothing_and_a_stale_lock_fails(
        tmp_path: Path, heroku_build: HerokuBuild, wheelhouse: Path, lockers: Lockers, manager: str) -> None:
    make, name, command = MANAGERS[manager]
    version = packagemanagers.versions()[manager]
    served = tmp_path / "served"
    shutil.copytree(wheelhouse, served)
    with localindex.serve(served) as index:
        app = make(tmp_path / "app", lockers, index)
        env = lockfiles.PIPENV_BUILD_ENV if manager == "pipenv" else {}
        first = heroku_build(app, env=env, slug=False)
        assert first.ok, first.log
        assert f"-----> Installing {name} {version}\n" in first.log
        assert f"-----> Installing dependencies using '{command}'\n" in first.log
        assert "flask_fake" in site_dists(first)
        # heroku/python installs pip for pip apps only; Pipenv lives in .heroku/python, uv and Poetry in the cache.
        assert "pip" not in site_dists(first)
        tool_home = {"uv": first.cache_dir / ".heroku/python-uv/uv",
                     "poetry": first.cache_dir / ".heroku/python-poetry/bin/poetry",
                     "pipenv": first.build_dir / ".heroku/python/pipenv/bin/pipenv"}[manager]
        assert os.path.lexists(tool_home), first.log  # Pipenv's is a link to its /app path
        installer = (next(first.site_packages().glob("flask_fake-*.dist-info")) / "INSTALLER").read_text().strip()
        assert installer == {"uv": "uv", "poetry": f"Poetry {version}", "pipenv": "pip"}[manager]
        # What later buildpacks get: the tool on PATH and its settings.
        export = next((tmp_path / "work").glob("buildpack_*/python-buildpack/export")).read_text()
        on_path = "/app/.heroku/python/pipenv/bin" if manager == "pipenv" else tool_home.parent
        assert f'export PATH="{on_path}:${{PATH}}"' in export
        assert {"uv": 'export UV_PROJECT_ENVIRONMENT="/app/.heroku/python"',
                "poetry": 'export POETRY_VIRTUALENVS_CREATE="false"',
                "pipenv": 'export PIPENV_SYSTEM="1"'}[manager] in export

        for wheel in served.glob("*.whl"):  # a rebuild that downloads anything fails
            wheel.unlink()
        second = heroku_build(app, env=env, slug=False)
    assert second.ok, second.log
    assert "-----> Restoring cache\n" in second.log
    assert f"-----> Using cached {name} {version}\n" in second.log
    assert "flask_fake" in site_dists(second)

    # What the project declares no longer matches its lock: the tool refuses, as heroku/python's does.
    declared = app / ("Pipfile" if manager == "pipenv" else "pyproject.toml")
    declared.write_text(declared.read_text().replace("3.0.0", "3.0.1"))
    stale = heroku_build(app, env=env, slug=False)
    assert not stale.ok
    assert f"Error: Unable to install dependencies using {name}." in stale.log


def test_a_uv_lock_of_gpu_tensorflow_is_fixed_and_the_next_sync_fetches_nothing(
        tmp_path: Path, heroku_build: HerokuBuild, wheelhouse: Path, offline_env: dict[str, str],
        lockers: Lockers) -> None:
    served = tmp_path / "served"  # the index the lock names; what it lacks, a sync cannot fetch
    shutil.copytree(wheelhouse, served)
    with localindex.serve(served) as index:
        app = lockfiles.uv_app(tmp_path / "app", lockers, index, ["tensorflow[and-cuda]==2.21.0", "flask-fake==3.0.0"])
        first = heroku_build(app, slug=False)
        assert first.ok, first.log
        assert "-----> Installing dependencies using 'uv sync --locked --no-default-groups'" in first.log
        assert "uv.lock was not re-locked for the CPU builds" in first.log
        assert "nvidia-cublas-cu12 12.5.3.2 removed" in first.log
        site = first.site_packages()
        assert not (site / "nvidia").exists()
        assert "tensorflow_cpu-2.21.0.dist-info" not in dists(first)  # uv would remove what its lock lacks
        assert (site / "tensorflow-2.21.0.dist-info" / "SLUGSLIM").is_file()
        assert app_python(first, CHECK) == "cpu 2.21.0"

        for prefix in ("tensorflow", "tensorflow_cpu", "nvidia_cublas_cu12", "nvidia_cudnn_cu12"):
            for path in served.glob(f"{prefix}-*.whl"):
                path.unlink()
        bare = without(wheelhouse, tmp_path, "tensorflow", "tensorflow_cpu", "nvidia_cublas_cu12", "nvidia_cudnn_cu12")
        second = heroku_build(app, env=find_links(offline_env, wheelhouse, bare), slug=False)
    assert second.ok, second.log
    assert "-----> Restoring cache" in second.log
    assert "GPU builds found" not in second.log
    assert app_python(second, CHECK) == "cpu 2.21.0"
    assert (second.build_dir / "uv.lock").read_bytes() == (app / "uv.lock").read_bytes()
