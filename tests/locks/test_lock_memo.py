"""A passed re-lock is kept in the build cache: the next build of the same files writes the same pair
without running the locker or asking an index (prepare.swap.locks.flow), through the real uv 0.12.5."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.heroku.packagemanagers import Lockers
from tests.locks.conftest import Index, offline, snapshot
from tests.locks.test_uv_lock import locked_app, run_swap


@pytest.fixture
def cache(build_cache: Callable[[str], Path]) -> Path:
    return build_cache("uv")


def test_the_same_files_again_get_the_kept_pair_without_the_locker_or_an_index(
        tmp_path: Path, cache: Path, lock_indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str],
        lockers: Lockers, monkeypatch: pytest.MonkeyPatch) -> None:
    pypi, cpu = lock_indexes
    pushed = locked_app(tmp_path / "pushed", lockers, pypi, ["torch==2.13.0", "flask-fake"])
    first, second, edited = (tmp_path / name for name in ("first", "second", "edited"))
    for app in (first, second, edited):
        shutil.copytree(pushed, app)
    assert run_swap(first, cache, cpu.url).relocked
    swapped = snapshot(first)
    capsys.readouterr()
    shutil.rmtree(cache / "slugslim" / "lockers")  # no uv, and none to install: only the kept pair can swap
    (tmp_path / "no-wheels").mkdir()
    offline(monkeypatch, tmp_path / "no-wheels")
    pypi.requests.clear()
    cpu.requests.clear()

    again = run_swap(second, cache, cpu.url)

    assert again.relocked and again.files_changed == ["pyproject.toml", "uv.lock"]
    assert [s.describe() for s in again.swaps] == ["torch==2.13.0 → torch==2.13.0+cpu (wheel sizes unknown)"]
    assert snapshot(second) == swapped
    assert pypi.requests == [] and cpu.requests == []
    assert "CPU swap (uv.lock, re-locked with uv 0.12.5, as in the last build):" in capsys.readouterr().out

    # Other files (here one more dependency) are another key: the re-lock runs, and without uv's wheels
    # and with the index down it fails open, both files as pushed.
    (edited / "pyproject.toml").write_text((edited / "pyproject.toml").read_text().replace(
        '"flask-fake"', '"flask-fake",\n    "filelock-fake"'))
    written = snapshot(edited)
    other = run_swap(edited, cache, "http://127.0.0.1:9/simple")
    assert not other.relocked and snapshot(edited) == written
