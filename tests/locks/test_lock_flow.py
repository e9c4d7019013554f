"""The CPU swap of a lock as prepare.swap.locks.flow runs it for every manager, through the real uv, Poetry
and Pipenv: a failure anywhere leaves both files as written, a re-lock that would move another package is
rolled back, a cached rebuild re-locks to the same files from the build cache, and ``analyze`` plans the
swap from the lock alone.

Each app is locked by its developer against the fake PyPI of tests/locks/conftest.py, then swapped with
the fake PyTorch CPU index beside it. What each manager writes and says is in test_uv_lock.py,
test_poetry_lock.py and test_pipenv_lock.py. ``make test-locks`` runs tests/locks, ``make test`` does not.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from slugslim.core.config import SwapConfig
from slugslim.deps import lockers as installer
from slugslim.prepare.swap import swap as requirements_swap
from slugslim.prepare.swap.locks import flow
from tests.heroku.packagemanagers import Lockers
from tests.locks.conftest import (
    MANAGERS,
    AppOf,
    Index,
    cpu_torch_needing_a_newer_filelock,
    inject_fault,
    locked_app,
    offline,
    run_swap,
    snapshot,
)

BuildCache = Callable[[str], Path]


def steps(manager: str) -> dict[str, tuple[object, str]]:
    """Each step of the swap as the warning names it, and what runs it (to make it fail)."""
    adapter, version = flow.ADAPTERS[manager], installer.pinned_version(manager)
    return {f"installing {manager} {version}": (installer, "ensure"),
            f"editing {adapter.manifest}": (type(adapter), "edit"),
            f"re-locking with {manager} {version}": (type(adapter), "relock"),
            f"checking the new {adapter.lock}": (flow, "changes_beyond")}


def as_written(app: Path, written: dict[str, bytes]) -> bool:
    """Every file byte for byte as it was, and nothing beside them (no virtualenv, no half-written file)."""
    return snapshot(app) == written and sorted(p.name for p in app.iterdir()) == sorted(written)


@pytest.mark.parametrize(("manager", "step"), [
    pytest.param(manager, step, id=f"{manager}: {step}") for manager in MANAGERS for step in steps(manager)])
def test_an_exception_in_any_step_leaves_both_files_as_written(
        manager: str, step: str, app_of: AppOf, build_cache: BuildCache, lock_indexes: tuple[Index, Index],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _, cpu = lock_indexes
    app = app_of(manager, ["torch==2.13.0"])
    written = snapshot(app)
    cache = build_cache(manager)
    lock = flow.ADAPTERS[manager].lock
    inject_fault(monkeypatch, *steps(manager)[step], app / lock)

    done = run_swap(manager, app, cache, cpu.url)

    assert as_written(app, written) and not done.relocked
    assert f"{lock} was not re-locked for the CPU builds: {step}: RuntimeError: injected." in capsys.readouterr().err


@pytest.mark.parametrize("manager", MANAGERS)
def test_an_unreachable_cpu_index_leaves_both_files_as_written(
        manager: str, app_of: AppOf, build_cache: BuildCache, capsys: pytest.CaptureFixture[str]) -> None:
    adapter = flow.ADAPTERS[manager]
    app = app_of(manager, ["torch==2.13.0"])
    written = snapshot(app)

    done = run_swap(manager, app, build_cache(manager), "http://127.0.0.1:9/simple")

    assert as_written(app, written)
    assert not done.relocked and not done.swaps and not done.files_changed
    err = capsys.readouterr().err
    assert (f" !     Warning: {adapter.lock} was not re-locked for the CPU builds: re-locking with {manager} "
            f"{installer.pinned_version(manager)}: {manager} lock failed:") in err
    assert f" !     {adapter.manifest} and {adapter.lock} are exactly as you wrote them." in err


# Pipenv's re-lock resolves everything again: test_pipenv_lock.py moves a package the Pipfile leaves open.
@pytest.mark.parametrize("manager", ["uv", "poetry"])
def test_a_relock_that_would_move_another_package_is_rolled_back_and_names_it(
        manager: str, tmp_path: Path, build_cache: BuildCache, capsys: pytest.CaptureFixture[str],
        lockers: Lockers) -> None:
    lock = flow.ADAPTERS[manager].lock
    cache = build_cache(manager)
    with cpu_torch_needing_a_newer_filelock(tmp_path) as (pypi_url, cpu_url, release):
        app = locked_app(manager, tmp_path / "app", lockers, pypi_url, ["torch==2.13.0"])
        release()
        written = snapshot(app)

        done = run_swap(manager, app, cache, cpu_url)

    assert as_written(app, written) and not done.relocked
    assert (f"Warning: {lock} was not re-locked for the CPU builds: checking the new {lock}: the re-lock would "
            "also have moved filelock-fake 3.16.1 -> 3.17.0.") in capsys.readouterr().err


@pytest.mark.parametrize("manager", MANAGERS)
def test_a_cached_rebuild_relocks_to_the_same_files_and_downloads_nothing(
        manager: str, tmp_path: Path, app_of: AppOf, build_cache: BuildCache,
        lock_indexes: tuple[Index, Index]) -> None:
    pypi, cpu = lock_indexes
    pushed = app_of(manager, ["torch==2.13.0", "flask-fake"], "pushed")
    cache = build_cache(manager)
    results = []
    for build in ("first", "second"):
        app = tmp_path / build
        shutil.copytree(pushed, app)
        pypi.requests.clear()
        cpu.requests.clear()
        assert run_swap(manager, app, cache, cpu.url).relocked
        results.append((snapshot(app), pypi.files() + cpu.files()))
    assert results[0][0] == results[1][0]
    assert results[1][1] == []  # the second build wrote the pair the first one kept in CACHE_DIR


@pytest.mark.parametrize("manager", MANAGERS)
def test_the_same_files_again_get_the_kept_pair_without_the_locker_or_an_index(
        manager: str, tmp_path: Path, app_of: AppOf, build_cache: BuildCache, lock_indexes: tuple[Index, Index],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pypi, cpu = lock_indexes
    first = app_of(manager, ["torch==2.13.0", "flask-fake"], "first")
    second = Path(shutil.copytree(first, tmp_path / "second"))
    edited = Path(shutil.copytree(first, tmp_path / "edited"))
    cache = build_cache(manager)
    assert run_swap(manager, first, cache, cpu.url).relocked
    swapped = snapshot(first)
    capsys.readouterr()
    shutil.rmtree(cache / "slugslim" / "lockers")  # no locker, and none to install: only the kept pair can swap
    (tmp_path / "no-wheels").mkdir()
    offline(monkeypatch, tmp_path / "no-wheels")
    pypi.requests.clear()
    cpu.requests.clear()

    again = run_swap(manager, second, cache, cpu.url)

    assert again.relocked and [s.describe() for s in again.swaps] == [
        "torch==2.13.0 → torch==2.13.0+cpu (wheel sizes unknown)"]
    assert snapshot(second) == swapped
    assert pypi.requests == [] and cpu.requests == []
    assert ", as in the last build):" in capsys.readouterr().out

    # Other files are another key: the re-lock runs, and with no locker to install it fails open.
    manifest = next(p for p in edited.iterdir() if p.name in ("pyproject.toml", "Pipfile"))
    manifest.write_bytes(manifest.read_bytes() + b"\n# edited\n")
    written = snapshot(edited)
    assert not run_swap(manager, edited, cache, cpu.url).relocked
    assert snapshot(edited) == written


@pytest.mark.parametrize("manager", MANAGERS)
def test_analyze_plans_the_swap_from_the_lock_without_running_the_locker(
        manager: str, app_of: AppOf, lock_indexes: tuple[Index, Index]) -> None:
    _, cpu = lock_indexes
    app = app_of(manager, ["sentence-transformers==5.0.0", "tensorflow==2.21.0"])
    written = snapshot(app)

    swaps = requirements_swap.plan_swaps(app, SwapConfig(torch_index=cpu.url))

    assert [s.describe() for s in swaps] == ["torch==2.13.0 → torch==2.13.0+cpu (wheel sizes unknown)",
                                             "tensorflow==2.21.0 → tensorflow-cpu==2.21.0 (wheel sizes unknown)"]
    assert as_written(app, written)
    assert requirements_swap.plan_swaps(app, SwapConfig(keep=("torch", "tensorflow"))) == []
