"""The CPU swap of a Pipenv lock (prepare.swap.locks with its Pipenv adapter), through the real Pipenv 2026.7.1.

Each app is locked first by the real ``pipenv lock`` against the fake PyPI of tests/locks/conftest.py
(its only ``[[source]]``), as its developer would, then swapped with the fake PyTorch CPU index beside
it. Both indexes record every request. Each test runs Pipenv two or three times: ``make test-locks``
runs tests/locks, ``make test`` does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from slugslim.deps.tomledit import TomlEditError
from slugslim.prepare.swap.locks import pipenv
from slugslim.prepare.swap.locks.model import ManifestChange, Renamed, TorchPin
from tests import localindex, lockfiles, wheelfactory
from tests.heroku.packagemanagers import Lockers
from tests.locks.conftest import CUDA_NAMES, AppOf, Index, run_swap, snapshot, sources, versions


@pytest.fixture
def cache(build_cache: Callable[[str], Path]) -> Path:
    return build_cache("pipenv")


def deploys(app: Path, lockers: Lockers) -> bool:
    """What ``pipenv install --deploy`` checks first: Pipfile.lock's _meta hash is the Pipfile's."""
    return lockfiles.tool([*lockers.pipenv, "verify"], app).returncode == 0


def test_torch_is_relocked_from_the_cpu_index_and_pipenv_accepts_the_pair(
        app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str],
        lockers: Lockers) -> None:
    pypi, cpu = lock_indexes
    app = app_of("pipenv", {"torch": '"==2.13.0"', "flask-fake": '"==3.0.0"'})
    before = pipenv.ADAPTER.read_lock((app / "Pipfile.lock").read_text())
    assert before["torch"].version == "2.13.0" and before["torch"].source == "local"
    assert before["torch"].hashes == {pypi.sha256("torch", "torch-2.13.0-py3-none-any.whl")}
    assert {"triton", "nvidia-cudnn-cu13", "cuda-toolkit"} <= set(before) and deploys(app, lockers)
    original = (app / "Pipfile").read_text()
    pypi.requests.clear()
    cpu.requests.clear()

    done = run_swap("pipenv", app, cache, cpu.url)

    assert done.relocked and done.files_changed == ["Pipfile", "Pipfile.lock"]
    assert sources("pipenv", app) == {"flask-fake": ("3.0.0", "local"), "filelock-fake": ("3.16.1", ""),
                             "torch": ("2.13.0+cpu", "pytorch-cpu")}
    assert (app / "Pipfile").read_text() == original.replace(
        'torch = "==2.13.0"', 'torch = { version = "==2.13.0", index = "pytorch-cpu" }') + (
        f'\n[[source]]\nname = "pytorch-cpu"\nurl = "{cpu.url}"\nverify_ssl = false\n')
    lock = json.loads((app / "Pipfile.lock").read_text())
    assert lock["_meta"]["sources"][1] == {"name": "pytorch-cpu", "url": cpu.url, "verify_ssl": False}
    assert lock["default"]["torch"]["hashes"] == [cpu.sha256("torch", "torch-2.13.0+cpu-py3-none-any.whl")]
    assert deploys(app, lockers)
    assert not pypi.asked_for(*CUDA_NAMES) and not cpu.asked_for(*CUDA_NAMES)
    assert not [f for f in pypi.files() + cpu.files() if f.startswith(CUDA_NAMES)]
    out = capsys.readouterr().out
    assert "CPU swap (Pipfile.lock, re-locked with pipenv 2026.7.1):" in out
    assert f"  torch 2.13.0 -> 2.13.0+cpu, from {cpu.url}" in out
    assert "then run 'pipenv lock' and commit both files" in out


def test_torch_through_another_package_is_added_at_its_locked_version(
        app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index], lockers: Lockers) -> None:
    _, cpu = lock_indexes
    app = app_of("pipenv", {"sentence-transformers": '"==5.0.0"'})
    original = (app / "Pipfile").read_text()

    assert run_swap("pipenv", app, cache, cpu.url).relocked

    assert sources("pipenv", app) == {"sentence-transformers": ("5.0.0", "local"), "filelock-fake": ("3.16.1", ""),
                             "torch": ("2.13.0+cpu", "pytorch-cpu")}
    assert (app / "Pipfile").read_text() == original.replace(
        'sentence-transformers = "==5.0.0"\n',
        'sentence-transformers = "==5.0.0"\ntorch = { version = "==2.13.0", index = "pytorch-cpu" }\n') + (
        f'\n[[source]]\nname = "pytorch-cpu"\nurl = "{cpu.url}"\nverify_ssl = false\n')
    assert deploys(app, lockers)


def test_tensorflow_gives_way_to_tensorflow_cpu_at_the_same_version(
        app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str],
        lockers: Lockers) -> None:
    pypi, cpu = lock_indexes
    app = app_of("pipenv", {
        "tensorflow": '{extras = ["and-cuda"], version = "==2.21.0"}', "flask-fake": '"*"'})
    assert {"tensorflow", "nvidia-cublas-cu12", "nvidia-cudnn-cu12"} <= set(sources("pipenv", app))
    original = (app / "Pipfile").read_text()
    pypi.requests.clear()

    done = run_swap("pipenv", app, cache, cpu.url)

    assert done.relocked
    assert [s.describe() for s in done.swaps] == ["tensorflow==2.21.0 → tensorflow-cpu==2.21.0 (wheel sizes unknown)"]
    assert versions("pipenv", app) == {
        "flask-fake": "3.0.0", "numpy-fake": "1.26.4", "tensorflow-cpu": "2.21.0"}
    assert (app / "Pipfile").read_text() == original.replace(
        'tensorflow = {extras = ["and-cuda"], version = "==2.21.0"}', 'tensorflow-cpu = {version = "==2.21.0"}')
    assert deploys(app, lockers)
    assert not pypi.asked_for("nvidia")
    out = capsys.readouterr().out
    assert "  tensorflow 2.21.0 -> tensorflow-cpu 2.21.0" in out
    assert '           [packages]\n           tensorflow-cpu = "==2.21.0"  # instead of tensorflow\n' in out


def test_tensorflow_through_another_package_is_left_to_the_fixup(
        app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str]) -> None:
    _, cpu = lock_indexes
    app = app_of("pipenv", {"tfuser": '"==1.0.0"'})
    written = snapshot(app)

    done = run_swap("pipenv", app, cache, cpu.url)

    assert snapshot(app) == written and not done.relocked and not done.swaps
    assert done.notes == ["tensorflow 2.21.0 is required by another package, and Pipfile cannot replace a package "
                          "that another one requires; it is replaced by tensorflow-cpu after the install"]
    assert f"CPU swap: {done.notes[0]}" in capsys.readouterr().out


def test_a_relock_that_would_move_a_package_the_pipfile_leaves_open_is_rolled_back(
        tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str], lockers: Lockers) -> None:
    """pipenv lock resolves everything again: a package the Pipfile leaves open moves to its newest release."""
    pypi_dir, cpu_dir = tmp_path / "pypi", tmp_path / "cpu"
    wheelfactory.torch_pypi(pypi_dir)
    wheelfactory.torch_cpu_index(cpu_dir)
    flask = wheelfactory.WheelSpec(name="flask-fake", version="3.0.0", files={"flask_fake/__init__.py": ""})
    wheelfactory.build_wheel(flask, pypi_dir)
    with localindex.serve(pypi_dir, metadata=True) as pypi_url, localindex.serve(cpu_dir, metadata=True) as cpu_url:
        app = lockfiles.pipenv_app(tmp_path / "app", lockers, pypi_url, {"torch": '"==2.13.0"', "flask-fake": '"*"'})
        flask.version = "3.1.0"  # released since the app was locked
        wheelfactory.build_wheel(flask, pypi_dir)
        written = snapshot(app)

        done = run_swap("pipenv", app, cache, cpu_url)

    assert snapshot(app) == written and not done.relocked
    err = capsys.readouterr().err
    assert ("Warning: Pipfile.lock was not re-locked for the CPU builds: checking the new Pipfile.lock: the re-lock "
            "would also have moved flask-fake 3.0.0 -> 3.1.0.") in err


def test_the_relock_sees_only_the_config_var_heroku_pythons_pipenv_sees(
        app_of: AppOf, cache: Path, lock_indexes: tuple[Index, Index]) -> None:
    """heroku/python v351 hands PIP_EXTRA_INDEX_URL to `pipenv install` (lib/pipenv.sh), and no other config var."""
    _, cpu = lock_indexes
    app = app_of("pipenv", {"torch": '"==2.13.0"'})
    nowhere = "http://127.0.0.1:9/simple"
    config_vars = {"PIPENV_PYPI_MIRROR": nowhere, "PIP_INDEX_URL": nowhere, "PIPENV_VENV_IN_PROJECT": "1",
                   "PIP_NO_INDEX": "1", "PIPENV_PIPFILE": "elsewhere/Pipfile"}
    assert run_swap("pipenv", app, cache, cpu.url, config_vars).relocked
    assert sources("pipenv", app)["torch"] == ("2.13.0+cpu", "pytorch-cpu")
    assert sorted(p.name for p in app.iterdir()) == ["Pipfile", "Pipfile.lock"]


# --- the edit, on text alone -----------------------------------------------------------------

URL = "https://download.pytorch.org/whl/cpu"
TORCH = ManifestChange("pytorch-cpu", URL, torch=(TorchPin("torch", "2.13.0", True),
                                                  TorchPin("torchvision", "0.28.0", False)))
TF = ManifestChange("pytorch-cpu", URL, renamed=(Renamed("tensorflow", "tensorflow-cpu", "2.21.0", True),))


def test_the_edit_keeps_the_users_layout_and_comments() -> None:
    text = ('[[source]]\r\nurl = "https://pypi.org/simple"\r\nverify_ssl = true\r\nname = "pypi"\r\n\r\n'
            '[packages]\r\nTorch = "*"  # ours\r\nTensorFlow = {version = ">=2.20", extras = ["and-cuda"]}\r\n'
            '\r\n[dev-packages]\r\npytest = "*"\r\n')
    assert pipenv.ADAPTER.edit(text, TORCH) == (
        '[[source]]\r\nurl = "https://pypi.org/simple"\r\nverify_ssl = true\r\nname = "pypi"\r\n\r\n'
        '[packages]\r\nTorch = { version = "==2.13.0", index = "pytorch-cpu" }  # ours\r\n'
        'TensorFlow = {version = ">=2.20", extras = ["and-cuda"]}\r\n'
        'torchvision = { version = "==0.28.0", index = "pytorch-cpu" }\r\n'
        '\r\n[dev-packages]\r\npytest = "*"\r\n'
        f'\r\n[[source]]\r\nname = "pytorch-cpu"\r\nurl = "{URL}"\r\nverify_ssl = true\r\n')
    assert '[packages]\r\nTorch = "*"  # ours\r\ntensorflow-cpu = {version = "==2.21.0"}\r\n' in \
        pipenv.ADAPTER.edit(text, TF)


def test_the_edit_refuses_what_it_cannot_change_safely() -> None:
    with pytest.raises(TomlEditError, match="another URL"):
        pipenv.ADAPTER.edit('[[source]]\nname = "pytorch-cpu"\nurl = "https://example.com/s"\nverify_ssl = true\n'
                            '[packages]\ntorch = "*"\n', TORCH)
    with pytest.raises(TomlEditError, match="URL, path or repository"):
        pipenv.ADAPTER.edit('[packages]\ntorch = {file = "https://example.com/torch.whl"}\n', TORCH)
    with pytest.raises(TomlEditError, match="another package"):
        pipenv.ADAPTER.edit('[packages]\nflask = "*"\n', ManifestChange(
            "pytorch-cpu", URL, renamed=(Renamed("tensorflow", "tensorflow-cpu", "2.21.0", False),)))
