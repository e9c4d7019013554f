"""What the lock swap tests of uv, Poetry and Pipenv share: a fake PyPI and a fake PyTorch CPU index on
127.0.0.1, and a build cache in which a previous build installed the manager's pinned locker.

The fake PyPI holds PyPI's Linux torch, the CUDA build (its metadata requires fake ``nvidia-*``,
``cuda-*`` and ``triton`` wheels), the TensorFlow family, ``flask-fake`` and ``tfuser`` (a package
that requires ``tensorflow``); the CPU index holds the ``+cpu`` builds. Both serve core metadata
(PEP 658) as PyPI and PyTorch's index do, and record every request, so tests see what a locker fetched.

Fixtures for tests/locks, which ``make test-locks`` runs (``make test`` does not: each test runs a locker).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from slugslim.core.config import SwapConfig
from slugslim.deps import lockers
from slugslim.deps.pyversion import AppPython
from slugslim.prepare.swap.locks import flow
from slugslim.prepare.swap.locks.model import Locked
from tests import localindex, lockfiles, wheelfactory
from tests.heroku.packagemanagers import Lockers

# Wheel-file prefixes of what only a GPU build needs.
CUDA_NAMES = ("nvidia", "triton", "cuda_toolkit", "cuda_bindings")
# This process's Python, which runs the lockers that the tests call in-process (as the stack's python3 does).
HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
MANAGERS = ("uv", "poetry", "pipenv")
# The app's Python as the preflight reads it: from uv's default, .python-version, Pipfile.lock's requires.
PYTHONS = {"uv": AppPython("3.11", "default"), "poetry": AppPython("3.11", ".python-version", 1),
           "pipenv": AppPython(HERE, "Pipfile.lock")}
# The manager's own settings, which a Heroku build does not have; Pipenv's pip reads pip's too.
SETTINGS = {"uv": ("UV_",), "poetry": ("POETRY_",), "pipenv": ("PIPENV_", "PIP_", "VIRTUAL_ENV")}


@dataclass
class Index:
    url: str
    requests: list[str]

    def files(self) -> list[str]:
        """The wheels downloaded (not their metadata)."""
        return [r.rsplit("/", 1)[1] for r in self.requests if r.startswith("/files/") and r.endswith(".whl")]

    def asked_for(self, *names: str) -> list[str]:
        return [r for r in self.requests if any(f"/{n}" in r.replace("-", "_") for n in names)]

    def sha256(self, project: str, filename: str) -> str:
        """``sha256:<hex>`` of a file, as the project's page links it."""
        with urllib.request.urlopen(f"{self.url}/{project}/") as page:
            found = re.search(rf'href="[^"#]*/{re.escape(filename)}#sha256=([0-9a-f]{{64}})"', page.read().decode())
        assert found, f"{filename} is not on {self.url}/{project}/"
        return f"sha256:{found.group(1)}"


def fake_pypi(out: Path) -> Path:
    wheelfactory.torch_pypi(out)
    wheelfactory.tf_family(out)
    for spec in (wheelfactory.WheelSpec(name="flask-fake", version="3.0.0", files={"flask_fake/__init__.py": ""}),
                 wheelfactory.WheelSpec(name="tfuser", version="1.0.0", requires=["tensorflow==2.21.0"],
                                        files={"tfuser/__init__.py": "import tensorflow\n"})):
        wheelfactory.build_wheel(spec, out)
    return out


@pytest.fixture(scope="module")
def lock_indexes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Index, Index]]:
    """The fake PyPI and the fake CPU index, served for the test module."""
    pypi, cpu = fake_pypi(tmp_path_factory.mktemp("pypi")), tmp_path_factory.mktemp("cpu-index")
    wheelfactory.torch_cpu_index(cpu)
    pypi_requests: list[str] = []
    cpu_requests: list[str] = []
    with localindex.serve(pypi, metadata=True, requests=pypi_requests) as pypi_url, \
            localindex.serve(cpu, metadata=True, requests=cpu_requests) as cpu_url:
        yield Index(pypi_url, pypi_requests), Index(cpu_url, cpu_requests)


def offline(patch: pytest.MonkeyPatch, wheels: Path) -> None:
    """slugslim's pip installs the lockers from ``wheels`` only (as in the emulated builds)."""
    patch.setenv("PIP_CONFIG_FILE", os.devnull)
    patch.setenv("PIP_NO_INDEX", "1")
    patch.setenv("PIP_FIND_LINKS", str(wheels))


@pytest.fixture(scope="session")
def installed_lockers(tmp_path_factory: pytest.TempPathFactory,
                      package_manager_wheels: Path) -> Callable[[str], Path]:
    """A build cache per manager in which a previous build installed its locker, for this process's Python."""
    made: dict[str, Path] = {}

    def cache(manager: str) -> Path:
        if manager not in made:
            made[manager] = tmp_path_factory.mktemp(f"{manager}-build-cache")
            with pytest.MonkeyPatch.context() as patch:
                offline(patch, package_manager_wheels)
                lockers.ensure(manager, made[manager], {})
        return made[manager]

    return cache


@pytest.fixture
def build_cache(tmp_path: Path, installed_lockers: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
                package_manager_wheels: Path) -> Callable[[str], Path]:
    """This test's build cache, with the manager's locker installed (the installation itself is shared)."""

    def cache(manager: str) -> Path:
        offline(monkeypatch, package_manager_wheels)
        installed = lockers.install_dir(manager, installed_lockers(manager))
        mine = lockers.install_dir(manager, tmp_path / "cache")
        mine.parent.mkdir(parents=True, exist_ok=True)
        mine.symlink_to(installed, target_is_directory=True)
        for name in [n for n in os.environ if n.startswith(SETTINGS[manager])]:
            monkeypatch.delenv(name)
        if manager == "pipenv":  # nor any pip configuration
            monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
        return tmp_path / "cache"

    return cache


def locked_app(manager: str, root: Path, lockers: Lockers, index: str,
               dependencies: Sequence[str] | Mapping[str, str]) -> Path:
    """An app as its developer pushes it, locked against ``index``: ``dependencies`` as requirements (each
    manager's spelling of them), or a mapping of name to TOML value (Poetry 1's [tool.poetry.dependencies],
    a Pipfile's [packages])."""
    if manager == "uv":
        assert not isinstance(dependencies, Mapping)
        return lockfiles.uv_app(root, lockers, index, dependencies, requires_python=">=3.10")
    if manager == "poetry":
        return lockfiles.poetry_app(root, lockers, index, dependencies)
    if not isinstance(dependencies, Mapping):
        dependencies = {(r := Requirement(d)).name: f'"{r.specifier or "*"}"' for d in dependencies}
    return lockfiles.pipenv_app(root, lockers, index, dependencies)


@pytest.fixture(scope="module")
def developer_locks(tmp_path_factory: pytest.TempPathFactory, lock_indexes: tuple[Index, Index],
                    lockers: Lockers) -> Callable[..., Path]:
    """Apps locked by their developer against the module's fake PyPI, once each (tests take copies)."""
    made: dict[str, Path] = {}

    def locked(manager: str, dependencies: Sequence[str] | Mapping[str, str]) -> Path:
        key = repr((manager, dependencies))
        if key not in made:
            made[key] = locked_app(manager, tmp_path_factory.mktemp("developer") / "app", lockers,
                                   lock_indexes[0].url, dependencies)
        return made[key]

    return locked


AppOf = Callable[..., Path]


@pytest.fixture
def app_of(developer_locks: Callable[..., Path], tmp_path: Path) -> AppOf:
    """``app_of(manager, dependencies, name="app")``: a copy of the app as its developer locked it
    (``locked_app``), at ``tmp_path/name``."""

    def copy(manager: str, dependencies: Sequence[str] | Mapping[str, str], name: str = "app") -> Path:
        return Path(shutil.copytree(developer_locks(manager, dependencies), tmp_path / name))

    return copy


def run_swap(manager: str, app: Path, cache: Path, torch_index: str,
             env: dict[str, str] | None = None) -> flow.LockSwap:
    """The prepare phase's swap of the app's lock, as a build runs it (``env``: the app's config vars)."""
    return flow.swap(app, manager, SwapConfig(torch_index=torch_index), env or {}, cache, PYTHONS[manager])


def read_lock(manager: str, app: Path) -> dict[str, Locked]:
    adapter = flow.ADAPTERS[manager]
    return adapter.read_lock((app / adapter.lock).read_text())


def versions(manager: str, app: Path) -> dict[str, str]:
    """name -> version, as the app's lock holds them."""
    return {name: locked.version for name, locked in read_lock(manager, app).items()}


def sources(manager: str, app: Path) -> dict[str, tuple[str, str]]:
    """name -> (version, its index: Poetry's URL or "" for PyPI, the Pipfile's source name)."""
    return {name: (locked.version, locked.source) for name, locked in read_lock(manager, app).items()}


def snapshot(app: Path) -> dict[str, bytes]:
    """Every file of the app, by name."""
    return {p.name: p.read_bytes() for p in sorted(app.iterdir()) if p.is_file()}


@contextmanager
def cpu_torch_needing_a_newer_filelock(root: Path) -> Iterator[tuple[str, str, Callable[[], None]]]:
    """A fake PyPI and CPU index where the CPU build requires ``filelock-fake>=3.17`` while PyPI's CUDA
    build locks 3.16.1: yields both URLs and ``release``, which puts 3.17.0 on PyPI (after the app is locked),
    so that a re-lock for the CPU build would move filelock-fake."""
    pypi_dir, cpu_dir = root / "pypi", root / "cpu"
    wheelfactory.torch_pypi(pypi_dir)
    cpu_torch = wheelfactory.torch_spec("2.13.0+cpu", "cpu")
    cpu_torch.requires = ["filelock-fake>=3.17"]
    wheelfactory.build_wheel(cpu_torch, cpu_dir)

    def release() -> None:
        wheelfactory.build_wheel(wheelfactory.WheelSpec(name="filelock-fake", version="3.17.0",
                                                        files={"filelock_fake/__init__.py": ""}), pypi_dir)

    with localindex.serve(pypi_dir, metadata=True) as pypi_url, localindex.serve(cpu_dir, metadata=True) as cpu_url:
        yield pypi_url, cpu_url, release


def inject_fault(patch: pytest.MonkeyPatch, owner: object, name: str, lock: Path) -> None:
    """``owner.name`` does its work, files and all, then leaves a half-written lock and a virtualenv in the
    app and raises."""
    real = getattr(owner, name)

    def fault(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)
        lock.write_text("half written")
        (lock.parent / ".venv").mkdir(exist_ok=True)
        raise RuntimeError("injected")

    patch.setattr(owner, name, fault)
