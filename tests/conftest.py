"""Shared fixtures: offline pip, a wheelhouse of fake distributions, and the emulated Heroku build."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import webwheels, wheelfactory
from tests.heroku import appdir, packagemanagers
from tests.heroku.build import BASE_PYTHON, REPO, STACK_PATH, Build, made_once, pip_for, python_runtime, run_build

# Model stores on 127.0.0.1 (moto S3, an HTTP server with PUT) as fixtures for every test module.
pytest_plugins = ["tests.modelservers"]


def pytest_configure(config: pytest.Config) -> None:
    """Stop at once, with one line, on a machine where the emulated build cannot have its own /app."""
    if hasattr(config, "workerinput"):
        return
    if missing := appdir.problem():
        pytest.exit(missing, returncode=pytest.ExitCode.USAGE_ERROR)
    config.stash[HOST_APP] = appdir.host_app()


HOST_APP = pytest.StashKey[list[tuple[str, str]]]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The host's /app (none, on most machines) is as it was: every build and dyno had its own."""
    before = session.config.stash.get(HOST_APP, None)
    if before is not None and appdir.host_app() != before:
        session.config.get_terminal_writer().line(
            f"The tests changed this machine's /app: it was {before or 'absent'}, now {appdir.host_app()}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _tools_wheels(tmp_factory: pytest.TempPathFactory) -> Path:
    """pyyaml, packaging, pip-tools and pip as wheels (the Makefile downloads them once)."""
    configured = os.environ.get("SLUGSLIM_TEST_TOOLS_WHEELS")
    if configured and Path(configured, ".complete").is_file():
        return Path(configured)
    target = tmp_factory.mktemp("tools-wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         "--require-hashes", "-r", str(REPO / "lib/tools.lock"), "-d", str(target)],
        check=True,
    )
    return target


@pytest.fixture(scope="session")
def tools_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tools_wheels(tmp_path_factory)


@pytest.fixture(scope="session")
def locker_wheels(stack_python: tuple[str, dict[str, str]]) -> Path:
    """uv, Poetry and Pipenv with their dependencies as wheels, from lib/lockers/, for the stack's python3
    (which installs them in builds): the package managers' own wheels when it is this Python's version,
    else a download of their own for it (tests/heroku/packagemanagers.py)."""
    stack = subprocess.run([stack_python[0], "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return packagemanagers.download(stack)


@pytest.fixture(scope="session")
def web_wheels() -> Path:
    """gunicorn, uvicorn and huggingface_hub with their dependencies as wheels (tests/webwheels.py)."""
    return webwheels.download()


@pytest.fixture(scope="session")
def package_manager_wheels() -> Path:
    """uv, Poetry and Pipenv at heroku/python's versions, with their dependencies, as wheels
    (tests/heroku/packagemanagers.py)."""
    return packagemanagers.download()


@pytest.fixture(scope="session")
def lockers(package_manager_wheels: Path) -> packagemanagers.Lockers:
    """uv, Poetry and Pipenv installed on this machine (once), to make the lock files of test apps."""
    return packagemanagers.lockers(package_manager_wheels)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links dir with the fake TensorFlow family and a couple of ordinary packages."""
    house = tmp_path_factory.mktemp("wheelhouse")
    wheelfactory.tf_family(house)
    wheelfactory.build_wheel(
        wheelfactory.WheelSpec(name="flask-fake", version="3.0.0", files={"flask_fake/__init__.py": "APP = 1\n"}),
        house,
    )
    return house


@pytest.fixture(scope="session")
def python_template(tmp_path_factory: pytest.TempPathFactory, tools_wheels: Path) -> Path:
    """A Python runtime with pip, which the emulated heroku/python copies into each build: made once per
    machine in .cache/, copied here so that builds can hard-link it (the same filesystem)."""
    made = python_runtime(REPO / ".cache" / "python-runtimes", tools_wheels)
    copy = tmp_path_factory.mktemp("python-template") / made.name
    shutil.copytree(made, copy, symlinks=True)
    return copy


@pytest.fixture(scope="session")
def stack_python(tmp_path_factory: pytest.TempPathFactory, tools_wheels: Path) -> tuple[str, dict[str, str]]:
    """The stack's python3 that runs slugslim in builds, and the environment that puts it first on PATH.

    SLUGSLIM_TEST_SYSTEM_PYTHON names another one (`make test-pythons`: heroku-22's 3.10,
    heroku-24's 3.12, ...); the app's own Python stays BASE_PYTHON either way. With
    SLUGSLIM_TEST_SYSTEM_PYTHON_NO_PIP=1 it is made to have no pip, as on heroku-24. A python3
    without pip (that one, or a machine's own, such as Debian's) gets pip from the local pip wheel
    (SLUGSLIM_PIP): the bootstrap would download pip's zipapp from the internet otherwise.

    Builds get a stack's PATH, this python3 first: not this machine's own PATH, whose extra tools
    (a rustc that pip asks for its version, a pyenv shim that starts bash for each python3) a
    Heroku build does not have.
    """
    chosen = os.environ.get("SLUGSLIM_TEST_SYSTEM_PYTHON")
    root = tmp_path_factory.mktemp("stack-python")
    if chosen and os.environ.get("SLUGSLIM_TEST_SYSTEM_PYTHON_NO_PIP") == "1":
        subprocess.run([chosen, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
        chosen = str(root / "venv/bin/python3")
    if not chosen:  # the interpreter behind python3 on PATH, past any shim
        chosen = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"], capture_output=True,
                                text=True, check=True).stdout.strip()
    (root / "bin").mkdir()
    (root / "bin/python3").symlink_to(chosen)
    return str(root / "bin/python3"), {**pip_for(chosen, tools_wheels),
                                       "PATH": os.pathsep.join([str(root / "bin"), *STACK_PATH])}


@pytest.fixture(scope="session")
def offline_env(tools_wheels: Path, wheelhouse: Path, python_template: Path, package_manager_wheels: Path,
                stack_python: tuple[str, dict[str, str]]) -> dict[str, str]:
    """Environment for builds: pip never reaches an index, only our local wheels; uv, Poetry and Pipenv
    install from theirs, and a lock file names its own index."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{wheelhouse} {tools_wheels}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "EMULATED_PYTHON": BASE_PYTHON,
        "EMULATED_PYTHON_TEMPLATE": str(python_template),
        "EMULATED_PACKAGE_MANAGER_WHEELS": str(package_manager_wheels),
        **stack_python[1],
    }


@pytest.fixture(scope="session")
def primed_cache(tmp_path_factory: pytest.TempPathFactory, offline_env: dict[str, str],
                 stack_python: tuple[str, dict[str, str]]) -> Path:
    """A CACHE_DIR in which slugslim's tools are already bootstrapped, copied by builds that don't test it.

    Made once per machine in .cache/ (keyed by the lock, the bootstrap and the stack Python), copied here.
    """
    key = hashlib.sha256(b"\0".join([(REPO / "lib/tools.lock").read_bytes(), (REPO / "lib/bootstrap.sh").read_bytes(),
                                      os.fsencode(os.path.realpath(stack_python[0])),
                                      os.fsencode(offline_env.get("SLUGSLIM_PIP", ""))]))

    def bootstrap(cache: Path) -> None:
        script = (
            f'BUILDPACK_DIR="{REPO}"; source "$BUILDPACK_DIR/lib/output.sh"; source "$BUILDPACK_DIR/lib/env.sh"; '
            f'source "$BUILDPACK_DIR/lib/bootstrap.sh"; '
            f'bootstrap::tools "$(bootstrap::system_python)" "{cache}" ""'
        )
        subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True, env={**os.environ, **offline_env},
                       stdout=subprocess.DEVNULL)

    made = made_once(REPO / ".cache" / "primed-caches" / key.hexdigest()[:12], bootstrap)
    copy = tmp_path_factory.mktemp("primed-cache")
    shutil.copytree(made, copy, symlinks=True, dirs_exist_ok=True)
    return copy


@pytest.fixture
def isolated_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the test's own wheels: no pip config files or PIP_* settings of the machine running the tests."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in [n for n in os.environ if n.startswith("PIP_") and n != "PIP_CONFIG_FILE"]:
        monkeypatch.delenv(name)


HerokuBuild = Callable[..., Build]


@pytest.fixture
def heroku_build(tmp_path: Path, offline_env: dict[str, str], primed_cache: Path) -> Iterator[HerokuBuild]:
    """Run an app through the emulated build. Builds share one CACHE_DIR per test, primed with the tools."""
    cache = tmp_path / "cache"
    shutil.copytree(primed_cache, cache, symlinks=True)

    def build(app: Path, **kwargs: Any) -> Build:
        env = {**offline_env, **kwargs.pop("env", {})}
        kwargs.setdefault("cache_dir", cache)
        kwargs.setdefault("slug_level", 1)  # tests that measure the slug pass Heroku's level
        return run_build(app, tmp_path / "work", env=env, **kwargs)

    yield build


def write_app(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write an app source tree; values are file contents."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root
