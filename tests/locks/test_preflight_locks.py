"""The wheel preflight reads uv.lock and poetry.lock, made by the real uv and Poetry against a local index
whose fake TensorFlow 2.21.0 has wheels for Python 3.10-3.13 only (2.22.0rc0 also for 3.14), as on PyPI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slugslim.core.config import SwapConfig
from slugslim.core.errors import PreflightError
from slugslim.deps import locked, pyversion, simpleindex
from slugslim.prepare import preflight
from tests import lockfiles
from tests.conftest import HerokuBuild
from tests.heroku.packagemanagers import Lockers
from tests.localindex import serve
from tests.wheelfactory import WheelSpec, build_wheel, tensorflow_spec

NO_INDEX = simpleindex.settings({}, ["--index-url", "http://127.0.0.1:9/simple"], environ={})  # never asked
OLD_PYTHONS = ("310", "311", "312", "313")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    house = tmp_path_factory.mktemp("tagged-wheels")
    for version, pythons in (("2.21.0", OLD_PYTHONS), ("2.22.0rc0", (*OLD_PYTHONS, "314"))):
        for python in pythons:
            spec = tensorflow_spec(version)
            spec.tag = f"cp{python}-cp{python}-manylinux_2_17_x86_64.manylinux2014_x86_64"
            build_wheel(spec, house)
    build_wheel(WheelSpec(name="numpy-fake", version="1.26.4", files={"numpy_fake/__init__.py": ""}), house)
    build_wheel(WheelSpec(name="flask-fake", version="3.0.0", files={"flask_fake/__init__.py": ""}), house)
    with serve(house) as url:
        yield url


def check(app: Path) -> preflight.Preflight:
    return preflight.check(app, pyversion.app_python(app), SwapConfig(), NO_INDEX)


def test_a_uv_lock_pin_without_a_wheel_for_the_pinned_python_stops_the_build(
        tmp_path: Path, index: str, lockers: Lockers) -> None:
    app = lockfiles.uv_app(tmp_path / "app", lockers, index, ["tensorflow==2.21.0", "flask-fake==3.0.0"],
                           requires_python=">=3.10")
    (app / ".python-version").write_text("3.14\n")
    with pytest.raises(PreflightError) as raised:
        check(app)
    message = raised.value.render()
    assert ".python-version line 1 asks for Python 3.14, and uv.lock asks for\ntensorflow==2.21.0" in message
    assert "uv would find no file of it to install after installing Python" in message
    assert "The Pythons with a wheel for every framework your app requires: 3.10, 3.11, 3.12, 3.13." in message

    (app / ".python-version").write_text("3.12\n")
    result = check(app)
    assert result.status == "ok"
    assert result.builds == [{"framework": "TensorFlow", "requirement": "tensorflow==2.21.0", "where": "uv.lock",
                              "pythons": ["3.10", "3.11", "3.12", "3.13"]}]


def test_a_uv_lock_fork_by_python_is_read_per_python_and_a_dev_group_is_not(
        tmp_path: Path, index: str, lockers: Lockers) -> None:
    forked = ["tensorflow==2.21.0 ; python_version < '3.14'", "tensorflow==2.22.0rc0 ; python_version >= '3.14'"]
    app = lockfiles.uv_app(tmp_path / "forked", lockers, index, forked, requires_python=">=3.10")
    (app / ".python-version").write_text("3.14\n")
    result = check(app)
    assert result.status == "ok"
    assert result.builds[0]["requirement"] == "tensorflow==2.22.0rc0"  # what 3.14 installs
    assert result.builds[0]["pythons"] == ["3.10", "3.11", "3.12", "3.13", "3.14"]

    # heroku/python syncs with --no-default-groups: a framework only the dev group has is not installed.
    dev = lockfiles.uv_app(tmp_path / "dev", lockers, index, ["flask-fake==3.0.0"], requires_python=">=3.10",
                           tail='[dependency-groups]\ndev = ["tensorflow==2.21.0"]\n')
    assert "tensorflow" in (dev / "uv.lock").read_text()
    (dev / ".python-version").write_text("3.14\n")
    assert check(dev).status == "none"


def test_a_poetry_lock_picks_a_python_in_its_python_versions_when_the_app_names_none(
        tmp_path: Path, index: str, lockers: Lockers) -> None:
    app = lockfiles.poetry_app(tmp_path / "app", lockers, index, ["tensorflow==2.21.0"],
                               requires_python=">=3.10,<3.13")
    lock = locked.read(app)
    assert lock is not None and lock.requires_python == ">=3.10,<3.13"
    result = check(app)  # heroku/python's default, 3.14: no wheel; 3.13 has one, but the project excludes it
    assert (result.status, result.chosen) == ("chose", "3.12")
    assert (app / ".python-version").read_text() == "3.12\n"
    assert "poetry.lock (tensorflow==2.21.0) has no wheel for Python 3.14" in result.message


def test_poetry_constraints_are_read_as_poetry_reads_them() -> None:
    assert locked.allows("^3.11", "3.14") and not locked.allows("^3.11", "3.10")
    assert locked.allows("~3.11", "3.11") and not locked.allows("~3.11", "3.12")
    assert locked.allows(">=3.8,<3.9 || >=3.11", "3.12") and not locked.allows(">=3.8,<3.9 || >=3.11", "3.10")
    assert locked.allows("3.12", "3.12") and not locked.allows("3.12", "3.13")
    assert locked.allows("*", "3.10") and locked.allows("", "3.10") and locked.allows("not a range", "3.10")


def test_a_uv_app_pinned_to_a_python_its_lock_has_no_wheel_for_stops_before_the_install(
        tmp_path: Path, index: str, lockers: Lockers, heroku_build: HerokuBuild) -> None:
    app = lockfiles.uv_app(tmp_path / "app", lockers, index, ["tensorflow==2.21.0"], requires_python=">=3.10")
    (app / ".python-version").write_text("3.14\n")
    build = heroku_build(app, slug=False)
    assert not build.ok
    assert " !     Error: Your app's Python has no wheel for a framework it requires." in build.log
    assert " !     .python-version line 1 asks for Python 3.14, and uv.lock asks for" in build.log
    assert "Installing dependencies" not in build.log  # stopped before heroku/python ran
