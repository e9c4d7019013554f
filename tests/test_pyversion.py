"""The app's Python, decided from the same sources and in the same order as heroku/python v351."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slugslim.core.config import SwapConfig
from slugslim.core.errors import PythonVersionError
from slugslim.deps.pyversion import AppPython, app_python
from slugslim.prepare.swap import swap
from tests.conftest import write_app


def cache_with(tmp_path: Path, content: str) -> Path:
    cache = tmp_path / "cache"
    (cache / ".heroku").mkdir(parents=True)
    (cache / ".heroku" / "python-version").write_text(content)
    return cache


def test_nothing_named_is_heroku_pythons_default(tmp_path: Path) -> None:
    decided = app_python(tmp_path, tmp_path / "no-cache")
    assert decided == AppPython("3.14", "default")
    assert not decided.named_by_app
    assert decided.where == "heroku/python's default"


def test_python_version_file_with_comments_blank_lines_and_a_full_version(tmp_path: Path) -> None:
    write_app(tmp_path, {".python-version": "# our Python\n\n   3.12.7  \n# end\n"})
    decided = app_python(tmp_path)
    assert (decided.version, decided.minor, decided.origin, decided.line) == ("3.12.7", "3.12", ".python-version", 3)
    assert decided.where == ".python-version line 3"
    assert decided.named_by_app


def test_python_version_file_major_minor(tmp_path: Path) -> None:
    write_app(tmp_path, {".python-version": "3.13\n"})
    assert app_python(tmp_path) == AppPython("3.13", ".python-version", 1)


def test_runtime_txt_wins_over_everything(tmp_path: Path) -> None:
    write_app(tmp_path, {"runtime.txt": "python-3.10.4\n", ".python-version": "3.12\n",
                         "Pipfile.lock": json.dumps({"_meta": {"requires": {"python_version": "3.11"}}})})
    assert app_python(tmp_path, cache_with(tmp_path, "python-3.13.1")) == AppPython("3.10.4", "runtime.txt", 1)


def test_python_version_file_wins_over_pipfile_lock_and_cache(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {".python-version": "3.12\n", "Pipfile.lock": json.dumps(
        {"_meta": {"requires": {"python_full_version": "3.11.4"}}})})
    assert app_python(app, cache_with(tmp_path, "python-3.13.1")).origin == ".python-version"


def test_pipfile_lock_full_version_before_version_and_before_cache(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"Pipfile.lock": json.dumps(
        {"_meta": {"requires": {"python_version": "3.12", "python_full_version": "3.11.4"}}})})
    assert app_python(app, cache_with(tmp_path, "python-3.13.1")) == AppPython("3.11.4", "Pipfile.lock")
    (app / "Pipfile.lock").write_text(json.dumps({"_meta": {"requires": {"python_version": "3.12"}}}))
    assert app_python(app) == AppPython("3.12", "Pipfile.lock")


def test_pipfile_lock_without_a_version_falls_through_to_the_cache(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"Pipfile.lock": json.dumps({"_meta": {"requires": {}}, "default": {}})})
    assert app_python(app, cache_with(tmp_path, "python-3.13.1\n")) == AppPython("3.13", "cached")


def test_cached_version_keeps_major_minor_and_ignores_junk(tmp_path: Path) -> None:
    assert app_python(tmp_path / "app", cache_with(tmp_path, "python-3.12.9\n")).version == "3.12"
    (tmp_path / "cache/.heroku/python-version").write_text("pypy-7.3\n")
    assert app_python(tmp_path / "app", tmp_path / "cache").origin == "default"


@pytest.mark.parametrize(("files", "file", "line"), [
    ({".python-version": "# none\n\n"}, ".python-version", 1),
    ({".python-version": "3.12\n3.13\n"}, ".python-version", 2),
    ({".python-version": "python-3.12\n"}, ".python-version", 1),
    ({".python-version": "3.12 # ours\n"}, ".python-version", 1),
    ({"runtime.txt": "\npython 3.12\n"}, "runtime.txt", 2),
    ({"Pipfile.lock": json.dumps({"_meta": {"requires": {"python_version": "3.*"}}})}, "Pipfile.lock", 0),
])
def test_what_heroku_python_rejects_is_an_error_naming_file_and_line(tmp_path: Path, files: dict[str, str],
                                                                      file: str, line: int) -> None:
    write_app(tmp_path, dict(files))
    with pytest.raises(PythonVersionError) as raised:
        app_python(tmp_path)
    assert (raised.value.file, raised.value.line) == (file, line)
    assert "3.14" in raised.value.render()


def test_the_swap_judges_markers_with_the_same_answer(tmp_path: Path) -> None:
    write_app(tmp_path, {"requirements.txt": 'tensorflow==2.21.0 ; python_version < "3.14"\n',
                         "Pipfile.lock": "{}"})
    assert swap.build_plan(tmp_path, SwapConfig()).swaps == []  # 3.14, heroku/python's default
    (tmp_path / ".python-version").write_text("3.13\n")
    plan = swap.build_plan(tmp_path, SwapConfig())
    assert (plan.python_version, plan.python_origin) == ("3.13", ".python-version line 1")
    assert [s.action for s in plan.swaps] == ["swap"]
