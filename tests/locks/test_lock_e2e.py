"""uv, Poetry and Pipenv apps whose lock holds PyPI's CUDA torch, through the emulated build with the real
``uv sync --locked``, ``poetry sync --only main`` and ``pipenv install --deploy``.

slugslim re-locks the app for the CPU build before heroku/python installs it, so the build installs
``torch 2.13.0+cpu`` and no ``nvidia-*``, ``cuda-*`` or ``triton`` file is ever asked for; a cached rebuild
re-locks to the same files and downloads no torch or CUDA wheel. Slow (two builds each): ``make test-locks``
runs tests/locks, ``make test`` does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slugslim.deps import lockers as installer
from tests import localindex, lockfiles, wheelfactory
from tests.conftest import HerokuBuild, write_app
from tests.heroku.packagemanagers import Lockers
from tests.locks.conftest import CUDA_NAMES, Index, offline
from tests.test_swap_e2e import app_python

TORCH_CHECK = "import importlib.metadata as m, torch; print(torch.BUILD, m.version('torch'))"
FILES = {"uv": ("pyproject.toml", "uv.lock"), "poetry": ("pyproject.toml", "poetry.lock"),
         "pipenv": ("Pipfile", "Pipfile.lock")}


def developer_app(manager: str, root: Path, lockers: Lockers, pypi: Index) -> Path:
    """The app as its developer pushes it: torch==2.13.0 and flask-fake, locked against the fake PyPI."""
    if manager == "uv":
        return lockfiles.uv_app(root, lockers, pypi.url, ["torch==2.13.0", "flask-fake"])
    if manager == "poetry":
        return lockfiles.poetry_app(root, lockers, pypi.url, ["torch==2.13.0", "flask-fake"])
    return lockfiles.pipenv_app(root, lockers, pypi.url, {"torch": '"==2.13.0"', "flask-fake": '"*"'})


@pytest.mark.parametrize("manager", list(FILES))
def test_the_build_installs_cpu_torch_and_no_cuda_file_is_ever_asked_for(
        manager: str, tmp_path: Path, heroku_build: HerokuBuild, offline_env: dict[str, str],
        lockers: Lockers, package_manager_wheels: Path, locker_wheels: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pypi_dir, cpu_dir = tmp_path / "pypi", tmp_path / "cpu"
    wheelfactory.torch_pypi(pypi_dir)
    wheelfactory.build_wheel(wheelfactory.WheelSpec(name="flask-fake", version="3.0.0",
                                                    files={"flask_fake/__init__.py": ""}), pypi_dir)
    wheelfactory.torch_cpu_index(cpu_dir)
    if manager == "pipenv":
        # Pipenv's pip would read the emulation's PIP_NO_INDEX and PIP_FIND_LINKS, which a Heroku build does
        # not have: the build goes without them, and its slugslim finds Pipenv in the build cache, installed
        # there by a previous build.
        env = {"PIP_NO_INDEX": "0", "PIP_FIND_LINKS": ""}
        offline(monkeypatch, package_manager_wheels)
        installer.ensure(manager, tmp_path / "cache", {})
    else:  # slugslim installs the locker in the build, from the locker's wheels
        env = {"PIP_FIND_LINKS": f"{offline_env['PIP_FIND_LINKS']} {locker_wheels}"}
    manifest, lock = FILES[manager]
    pypi_requests: list[str] = []
    cpu_requests: list[str] = []
    with localindex.serve(pypi_dir, metadata=True, requests=pypi_requests) as pypi_url, \
            localindex.serve(cpu_dir, metadata=True, requests=cpu_requests) as cpu_url:
        pypi, cpu = Index(pypi_url, pypi_requests), Index(cpu_url, cpu_requests)
        app = developer_app(manager, tmp_path / "app", lockers, pypi)
        assert "triton" in (app / lock).read_text() and "nvidia-cudnn-cu13" in (app / lock).read_text()
        write_app(app, {".python-version": f"{sys.version_info[0]}.{sys.version_info[1]}\n",
                        "slugslim.yml": f"swap:\n  torch_index: {cpu_url}\n"})
        pypi.requests.clear()

        first = heroku_build(app, env=env, slug=False)

        assert first.ok, first.log
        assert f"CPU swap ({lock}, re-locked with {manager} " in first.log
        assert (first.build_dir / lock).read_bytes() != (app / lock).read_bytes()
        site = first.site_packages()
        assert (site / "torch-2.13.0+cpu.dist-info").is_dir() and (site / "torch/lib/libtorch_cpu.so").is_file()
        assert not (site / "nvidia").exists() and not (site / "triton").exists()
        assert app_python(first, TORCH_CHECK) == "cpu 2.13.0+cpu"
        assert pypi.asked_for(*CUDA_NAMES) == [] and cpu.asked_for(*CUDA_NAMES) == []
        assert "GPU builds found after the install" not in first.log  # nothing left for the fix-up

        pypi.requests.clear()
        cpu.requests.clear()
        second = heroku_build(app, env=env, slug=False)

        assert second.ok, second.log
        assert (second.build_dir / lock).read_bytes() == (first.build_dir / lock).read_bytes()
        assert (second.build_dir / manifest).read_bytes() == (first.build_dir / manifest).read_bytes()
        assert pypi.files() == [] and cpu.files() == []  # the re-lock and the install read their caches
