"""A uv app whose uv.lock holds PyPI's CUDA torch, through the emulated build with the real `uv sync --locked`.

slugslim re-locks the app for the CPU build before heroku/python installs it, so the build installs
``torch 2.13.0+cpu`` and no ``nvidia-*``, ``cuda-*`` or ``triton`` file is ever asked for; a cached rebuild
downloads nothing. Slow (two builds): ``make test-locks`` runs tests/locks, ``make test`` does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import localindex, wheelfactory
from tests.conftest import HerokuBuild, LockerWheels, write_app
from tests.locks.conftest import CUDA_NAMES, Index, offline
from tests.locks.test_uv_lock import locked_app, packages
from tests.test_swap_e2e import app_python

TORCH_CHECK = "import importlib.metadata as m, torch; print(torch.BUILD, m.version('torch'))"


def test_the_build_installs_cpu_torch_and_no_cuda_file_is_ever_asked_for(
        tmp_path: Path, heroku_build: HerokuBuild, offline_env: dict[str, str], locker_wheels: LockerWheels,
        monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch, locker_wheels("uv"))  # the developer's uv, which makes the lock
    pypi_dir, cpu_dir = tmp_path / "pypi", tmp_path / "cpu"
    wheelfactory.torch_pypi(pypi_dir)
    wheelfactory.build_wheel(wheelfactory.WheelSpec(name="flask-fake", version="3.0.0",
                                                    files={"flask_fake/__init__.py": ""}), pypi_dir)
    wheelfactory.torch_cpu_index(cpu_dir)
    pypi_requests: list[str] = []
    cpu_requests: list[str] = []
    with localindex.serve(pypi_dir, metadata=True, requests=pypi_requests) as pypi_url, \
            localindex.serve(cpu_dir, metadata=True, requests=cpu_requests) as cpu_url:
        pypi, cpu = Index(pypi_url, pypi_requests), Index(cpu_url, cpu_requests)
        developer_cache = tmp_path / "developer"
        app = locked_app(tmp_path / "app", developer_cache, pypi, ["torch==2.13.0", "flask-fake"])
        assert {"triton", "nvidia-cudnn-cu13"} <= set(packages(app))
        write_app(app, {".python-version": f"{sys.version_info[0]}.{sys.version_info[1]}\n",
                        "slugslim.yml": f"swap:\n  torch_index: {cpu_url}\n"})
        env = {"PIP_FIND_LINKS": f"{offline_env['PIP_FIND_LINKS']} {locker_wheels('uv')}"}
        pypi.requests.clear()

        first = heroku_build(app, env=env, slug=False)

        assert first.ok, first.log
        assert "CPU swap (uv.lock, re-locked with uv 0.12.5):" in first.log
        assert (first.build_dir / "uv.lock").read_bytes() != (app / "uv.lock").read_bytes()
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
        assert (second.build_dir / "uv.lock").read_bytes() == (first.build_dir / "uv.lock").read_bytes()
        assert (second.build_dir / "pyproject.toml").read_bytes() == (first.build_dir / "pyproject.toml").read_bytes()
        assert pypi.files() == [] and cpu.files() == []  # the re-lock and `uv sync` both read their caches
