"""The CPU swap of a Poetry lock (prepare.swap.locks with its Poetry adapter), through the real Poetry 2.4.1.

Each app is locked first by the real ``poetry lock`` command line against the fake PyPI of
tests/locks/conftest.py (its primary source), as its developer would, then swapped with the fake
PyTorch CPU index beside it. Both indexes record every request. Each test runs Poetry two or three
times: ``make test-locks`` runs tests/locks, ``make test`` does not.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from slugslim.core.config import SwapConfig
from slugslim.deps import lockers as installer
from slugslim.deps import tomlfile
from slugslim.deps.pyversion import AppPython
from slugslim.deps.tomledit import TomlEditError
from slugslim.prepare.swap.locks import flow, poetry
from slugslim.prepare.swap.locks.model import ManifestChange, Relock, Renamed, TorchPin
from tests import lockfiles
from tests.heroku.packagemanagers import Lockers
from tests.locks.conftest import CUDA_NAMES, AppOf, Index, run_swap, snapshot, sources, versions


@pytest.fixture
def cache(build_cache: Callable[[str], Path]) -> Path:
    return build_cache("poetry")


def poetry_accepts(app: Path, lockers: Lockers) -> bool:
    """What heroku/python's ``poetry sync`` checks first: the lock is the one this pyproject.toml makes."""
    return lockfiles.tool([*lockers.poetry, "check", "--lock", "--no-interaction"], app).returncode == 0


def test_torch_is_relocked_from_the_cpu_index_and_poetry_accepts_the_pair(
        app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str],
        lockers: Lockers) -> None:
    pypi, cpu = lock_indexes
    app = app_of("poetry", ["torch==2.13.0", "flask-fake"])
    before = poetry.ADAPTER.read_lock((app / "poetry.lock").read_text())
    assert before["torch"].version == "2.13.0" and before["torch"].source == pypi.url
    assert {"triton", "nvidia-cudnn-cu13", "cuda-toolkit"} <= before["torch"].requires
    assert before["torch"].hashes == {pypi.sha256("torch", "torch-2.13.0-py3-none-any.whl")}
    original = (app / "pyproject.toml").read_text()
    pypi.requests.clear()
    cpu.requests.clear()

    done = run_swap("poetry", app, cache, cpu.url)

    assert done.relocked and done.files_changed == ["pyproject.toml", "poetry.lock"]
    assert sources("poetry", app) == {"flask-fake": ("3.0.0", pypi.url), "filelock-fake": ("3.16.1", pypi.url),
                                      "torch": ("2.13.0+cpu", cpu.url)}
    assert (app / "pyproject.toml").read_text() == original + (
        f'\n[[tool.poetry.source]]\nname = "pytorch-cpu"\nurl = "{cpu.url}"\npriority = "explicit"\n'
        '\n[tool.poetry.dependencies]\ntorch = { version = "2.13.0", source = "pytorch-cpu" }\n')
    assert poetry_accepts(app, lockers)
    assert (cache / "slugslim" / "poetry-cache").is_dir()  # for the next build's re-lock
    assert not pypi.asked_for(*CUDA_NAMES) and not cpu.asked_for(*CUDA_NAMES)
    assert not pypi.files() and not cpu.files()  # core metadata (PEP 658) was enough
    out = capsys.readouterr().out
    assert "CPU swap (poetry.lock, re-locked with poetry 2.4.1):" in out
    assert f"  torch 2.13.0 -> 2.13.0+cpu, from {cpu.url}" in out
    assert "7 CUDA packages are no longer locked: cuda-bindings, cuda-toolkit, nvidia-cublas" in out
    assert "then run 'poetry lock' and commit both files" in out


@pytest.mark.parametrize("layout", ["pep621", "classic"])
def test_torch_through_another_package_is_added_at_its_locked_version(
        layout: str, app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index], lockers: Lockers) -> None:
    pypi, cpu = lock_indexes
    if layout == "pep621":
        app = app_of("poetry", ["sentence-transformers==5.0.0"])
    else:
        app = app_of("poetry", {"sentence-transformers": '"5.0.0"'})
    original = (app / "pyproject.toml").read_text()
    assert sources("poetry", app)["torch"] == ("2.13.0", pypi.url)

    assert run_swap("poetry", app, cache, cpu.url).relocked

    assert sources("poetry", app) == {"sentence-transformers": ("5.0.0", pypi.url),
                                      "filelock-fake": ("3.16.1", pypi.url), "torch": ("2.13.0+cpu", cpu.url)}
    text = (app / "pyproject.toml").read_text()
    pinned = 'torch = { version = "2.13.0", source = "pytorch-cpu" }\n'
    if layout == "pep621":  # Poetry reads [tool.poetry.dependencies] only for what [project] lists
        assert text == original.replace('"sentence-transformers==5.0.0",\n', '"sentence-transformers==5.0.0",\n'
                                        '    "torch==2.13.0",\n') + (
            f'\n[[tool.poetry.source]]\nname = "pytorch-cpu"\nurl = "{cpu.url}"\npriority = "explicit"\n'
            f"\n[tool.poetry.dependencies]\n{pinned}")
    else:
        assert text == original.replace('sentence-transformers = "5.0.0"  # needed\n',
                                        f'sentence-transformers = "5.0.0"  # needed\n{pinned}') + (
            f'\n[[tool.poetry.source]]\nname = "pytorch-cpu"\nurl = "{cpu.url}"\npriority = "explicit"\n')
    assert poetry_accepts(app, lockers)


def test_tensorflow_gives_way_to_tensorflow_cpu_at_the_same_version(
        app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str],
        lockers: Lockers) -> None:
    pypi, cpu = lock_indexes
    app = app_of("poetry", {
        "tensorflow": '{ version = "2.21.0", extras = ["and-cuda"] }', "flask-fake": '"3.0.0"'})
    assert {"tensorflow", "nvidia-cublas-cu12", "nvidia-cudnn-cu12"} <= set(sources("poetry", app))
    original = (app / "pyproject.toml").read_text()
    pypi.requests.clear()

    done = run_swap("poetry", app, cache, cpu.url)

    assert done.relocked
    assert [s.describe() for s in done.swaps] == ["tensorflow==2.21.0 → tensorflow-cpu==2.21.0 (wheel sizes unknown)"]
    assert versions("poetry", app) == {
        "flask-fake": "3.0.0", "numpy-fake": "1.26.4", "tensorflow-cpu": "2.21.0"}
    assert (app / "pyproject.toml").read_text() == original.replace(
        'tensorflow = { version = "2.21.0", extras = ["and-cuda"] }', 'tensorflow-cpu = { version = "2.21.0" }')
    assert poetry_accepts(app, lockers)
    assert not pypi.files() and not pypi.asked_for("nvidia")
    out = capsys.readouterr().out
    assert "  tensorflow 2.21.0 -> tensorflow-cpu 2.21.0" in out
    assert ('    tensorflow-cpu = "2.21.0"  # instead of tensorflow (with [project] dependencies: '
            '"tensorflow-cpu==2.21.0" there)') in out


@pytest.mark.parametrize(("dependencies", "requirer"), [(["tfuser==1.0.0"], "tfuser"),
                                                        (["tensorflow==2.21.0", "tf-keras"], "tf-keras")])
def test_tensorflow_that_another_package_requires_is_left_to_the_fixup(
        dependencies: list[str], requirer: str, app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Poetry has no override: swapping a tensorflow that another package requires would lock both builds."""
    _, cpu = lock_indexes
    app = app_of("poetry", dependencies)
    written = snapshot(app)

    done = run_swap("poetry", app, cache, cpu.url)

    assert snapshot(app) == written and not done.relocked and not done.swaps
    assert done.notes == [f"tensorflow 2.21.0 is required by {requirer}, and pyproject.toml cannot replace a "
                          "package that another one requires; it is replaced by tensorflow-cpu after the install"]
    assert f"CPU swap: {done.notes[0]}" in capsys.readouterr().out


def test_the_warning_names_a_cpu_index_that_does_not_answer(
        app_of: AppOf, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = app_of("poetry", ["torch==2.13.0"])
    assert not run_swap("poetry", app, cache, "http://127.0.0.1:9/simple").relocked
    assert "poetry lock failed: All attempts to connect to 127.0.0.1:9 failed." in capsys.readouterr().err


def test_the_relock_is_the_lock_poetrys_command_line_writes(
        tmp_path: Path, app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index], lockers: Lockers) -> None:
    """poetry_lock_tool.py runs Poetry's own lock command: where an interpreter fits the project, the
    command line writes the very same poetry.lock."""
    _, cpu = lock_indexes
    app = app_of("poetry", ["sentence-transformers==5.0.0", "flask-fake"])
    assert run_swap("poetry", app, cache, cpu.url).relocked
    by_hand = tmp_path / "by-hand"
    shutil.copytree(app, by_hand)
    (by_hand / "poetry.lock").unlink()
    shutil.copy(app.parent / "app" / "poetry.lock", tmp_path / "ours.lock")
    lockfiles.run_tool([*lockers.poetry, "lock", "--no-interaction"], by_hand)
    assert (by_hand / "poetry.lock").read_text() == (tmp_path / "ours.lock").read_text()


def test_the_relock_needs_no_interpreter_of_the_apps_python(
        tmp_path: Path, cache: Path, lock_indexes: tuple[Index, Index], lockers: Lockers) -> None:
    """A project for Python 3.14 only, on a machine without one: Poetry's command line refuses to lock it,
    the re-lock does not need to."""
    pypi, cpu = lock_indexes
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = "~=3.14.0"\ndependencies = ["torch==2.13.0"]\n\n'
        '[tool.poetry]\npackage-mode = false\n\n'
        f'[[tool.poetry.source]]\nname = "local"\nurl = "{pypi.url}"\npriority = "primary"\n')
    refused = lockfiles.tool([*lockers.poetry, "lock", "--no-interaction"], app)
    assert refused.returncode != 0 and "3.14" in refused.stdout + refused.stderr
    locker = installer.ensure("poetry", cache, {})
    poetry.ADAPTER.relock(Relock(app, locker, tmp_path / "poetry-cache", {}, AppPython("3.14", "default")))
    assert sources("poetry", app)["torch"] == ("2.13.0", pypi.url)  # the developer's lock, made for 3.14

    assert flow.swap(app, "poetry", SwapConfig(torch_index=cpu.url), {}, cache, AppPython("3.14", "default")).relocked
    assert sources("poetry", app)["torch"] == ("2.13.0+cpu", cpu.url)
    assert 'python-versions = "~=3.14.0"' in (app / "poetry.lock").read_text()


def test_the_relock_sees_no_config_var(app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index]) -> None:
    """heroku/python v351 hands none of the app's config vars to Poetry (lib/poetry.sh), so neither does the re-lock."""
    _, cpu = lock_indexes
    app = app_of("poetry", ["torch==2.13.0"])
    nowhere = "http://127.0.0.1:9/simple"
    config_vars = {"POETRY_REPOSITORIES_FAKE_PYPI_URL": nowhere, "POETRY_SOURCES": nowhere, "POETRY_OFFLINE": "1",
                   "PIP_INDEX_URL": nowhere, "PIP_EXTRA_INDEX_URL": nowhere}
    assert run_swap("poetry", app, cache, cpu.url, config_vars).relocked
    assert sources("poetry", app)["torch"] == ("2.13.0+cpu", cpu.url)


# --- the edit, on text alone -----------------------------------------------------------------

URL = "https://download.pytorch.org/whl/cpu"
TORCH = ManifestChange("pytorch-cpu", URL, torch=(TorchPin("torch", "2.13.0", True),
                                                  TorchPin("torchvision", "0.28.0", False)))
TF = ManifestChange("pytorch-cpu", URL, renamed=(Renamed("tensorflow", "tensorflow-cpu", "2.21.0", True),))


def test_the_edit_keeps_the_users_layout_and_comments() -> None:
    text = ('[tool.poetry]  # the app\r\nname = "app"\r\n\r\n[tool.poetry.dependencies]\r\npython = "^3.11"\r\n'
            "Torch = { version = \">=2\", markers = \"sys_platform == 'linux'\" }  # ours\r\n"
            'TensorFlow = { version = "^2.21", extras = ["and-cuda"], optional = true }\r\n\r\n'
            '[[tool.poetry.source]]\r\nname = "mirror"\r\nurl = "https://example.org/simple"\r\n')
    assert poetry.ADAPTER.edit(text, TORCH) == (
        '[tool.poetry]  # the app\r\nname = "app"\r\n\r\n[tool.poetry.dependencies]\r\npython = "^3.11"\r\n'
        "Torch = { version = \"2.13.0\", markers = \"sys_platform == 'linux'\", source = \"pytorch-cpu\" }  # ours\r\n"
        'TensorFlow = { version = "^2.21", extras = ["and-cuda"], optional = true }\r\n'
        'torchvision = { version = "0.28.0", source = "pytorch-cpu" }\r\n\r\n'
        '[[tool.poetry.source]]\r\nname = "mirror"\r\nurl = "https://example.org/simple"\r\n'
        f'\r\n[[tool.poetry.source]]\r\nname = "pytorch-cpu"\r\nurl = "{URL}"\r\npriority = "explicit"\r\n')
    assert 'tensorflow-cpu = { version = "2.21.0", optional = true }\r\n' in poetry.ADAPTER.edit(text, TF)
    pep621 = '[project]\nname = "app"\ndependencies = ["tensorflow[and-cuda] >= 2.20 ; python_version < \'3.13\'"]\n'
    assert poetry.ADAPTER.edit(pep621, TF) == pep621.replace(
        "\"tensorflow[and-cuda] >= 2.20 ; python_version < '3.13'\"",
        "\"tensorflow-cpu==2.21.0; python_version < \\\"3.13\\\"\"")


@pytest.mark.parametrize(("why", "text"), [
    ("another source of that name", '[tool.poetry.dependencies]\ntorch = "*"\n'
                                    '[[tool.poetry.source]]\nname = "pytorch-cpu"\nurl = "https://example.com/s"\n'),
    ("several constraints", '[tool.poetry.dependencies]\ntorch = [{ version = "2.13.0", python = ">=3.11" }, '
                            '{ version = "2.12.0", python = "<3.11" }]\n'),
    ("a table of its own", '[tool.poetry.dependencies]\n[tool.poetry.dependencies.torch]\nversion = "2.13.0"\n'),
    ("from a path", '[tool.poetry.dependencies]\ntorch = { path = "wheels/torch.whl" }\n'),
])
def test_the_edit_refuses_what_it_cannot_change_safely(why: str, text: str) -> None:
    with pytest.raises(TomlEditError):
        poetry.ADAPTER.edit(text, TORCH)
    assert tomlfile.loads(text)  # the input itself is valid TOML


def test_direct_dependencies_are_the_main_ones_of_either_layout() -> None:
    assert poetry.ADAPTER.direct('[project]\ndependencies = ["Torch>=2", "flask"]\n[tool.poetry.dependencies]\n'
                                 'numpy = { source = "x" }\n') == {"torch", "flask"}
    assert poetry.ADAPTER.direct('[tool.poetry.dependencies]\npython = "^3.11"\nSentence_Transformers = "*"\n'
                                 '[tool.poetry.group.dev.dependencies]\npytest = "*"\n') == {"sentence-transformers"}
