"""The CPU swap of a uv lock (prepare.swap.locks with its uv adapter), through the real uv 0.12.5.

Each app is locked first by the real ``uv lock`` against a fake PyPI on 127.0.0.1 (PyPI's Linux torch
is the CUDA build: its metadata requires fake ``nvidia-*``, ``cuda-*`` and ``triton`` wheels), then
swapped with a fake PyTorch CPU index beside it. Both indexes serve core metadata (PEP 658) as PyPI
and PyTorch's index do, and record every request, so the tests see what uv fetched. Each test runs
``uv lock`` two or three times: ``make test-locks`` runs tests/locks, ``make test`` does not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from slugslim.prepare.swap.locks import uv
from slugslim.prepare.swap.locks.model import ManifestChange, Renamed, TorchPin
from tests import lockfiles
from tests.heroku.build import BASE_PYTHON
from tests.heroku.packagemanagers import Lockers
from tests.locks.conftest import CUDA_NAMES, AppOf, Index, run_swap, snapshot, versions


@pytest.fixture
def cache(build_cache: Callable[[str], Path]) -> Path:
    return build_cache("uv")


@pytest.fixture(scope="module")
def indexes(lock_indexes: tuple[Index, Index]) -> tuple[Index, Index]:
    return lock_indexes


def uv_accepts(app: Path, lockers: Lockers) -> bool:
    """What heroku/python's ``uv sync --locked`` checks first: the lock is the one this pyproject.toml makes."""
    return lockfiles.tool([*lockers.uv, "lock", "--locked", "--python", BASE_PYTHON], app).returncode == 0


def test_torch_is_relocked_from_the_cpu_index_and_uv_accepts_the_pair(
        app_of: AppOf, cache: Path, indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str],
        lockers: Lockers) -> None:
    pypi, cpu = indexes
    app = app_of("uv", ["torch==2.13.0", "flask-fake"])
    before = versions("uv", app)
    assert before["torch"] == "2.13.0" and {"triton", "nvidia-cudnn-cu13", "cuda-toolkit"} <= set(before)
    pypi.requests.clear()
    cpu.requests.clear()

    done = run_swap("uv", app, cache, cpu.url)

    assert done.relocked and done.files_changed == ["pyproject.toml", "uv.lock"]
    assert [s.describe() for s in done.swaps] == ["torch==2.13.0 → torch==2.13.0+cpu (wheel sizes unknown)"]
    after = versions("uv", app)
    assert after == {"app": "1.0.0", "flask-fake": "3.0.0", "filelock-fake": "3.16.1", "torch": "2.13.0+cpu"}
    text = (app / "pyproject.toml").read_text()
    assert text.startswith('[project]\nname = "app"\nversion = "1.0.0"\nrequires-python = ">=3.10"\n'
                           'dependencies = [\n    "torch==2.13.0",\n    "flask-fake",\n]\n')
    assert f'[[tool.uv.index]]\nname = "pytorch-cpu"\nurl = "{cpu.url}"\nexplicit = true\n' in text
    assert '[tool.uv.sources]\ntorch = { index = "pytorch-cpu" }\n' in text
    assert uv_accepts(app, lockers)
    assert (cache / "slugslim" / "uv-cache").is_dir()  # for the next build's re-lock
    # The re-lock never asked for a CUDA wheel, let alone downloaded one.
    assert not pypi.asked_for(*CUDA_NAMES) and not cpu.asked_for(*CUDA_NAMES)
    assert not pypi.files() and not cpu.files()
    out = capsys.readouterr().out
    assert "CPU swap (uv.lock, re-locked with uv 0.12.5):" in out
    assert f"  torch 2.13.0 -> 2.13.0+cpu, from {cpu.url}" in out
    assert ("7 CUDA packages are no longer locked: cuda-bindings, cuda-toolkit, nvidia-cublas, nvidia-cuda-runtime, "
            "nvidia-cudnn-cu13, nvidia-nccl-cu13, triton") in out
    assert '           torch = { index = "pytorch-cpu" }' in out and "then run 'uv lock' and commit both files" in out


def test_torch_through_another_package_becomes_a_direct_dependency_at_its_locked_version(
        app_of: AppOf, cache: Path, indexes: tuple[Index, Index], lockers: Lockers) -> None:
    _, cpu = indexes
    app = app_of("uv", ["sentence-transformers==5.0.0"])
    assert versions("uv", app)["torch"] == "2.13.0"

    done = run_swap("uv", app, cache, cpu.url)

    assert done.relocked
    assert versions("uv", app) == {"app": "1.0.0", "sentence-transformers": "5.0.0", "filelock-fake": "3.16.1",
                             "torch": "2.13.0+cpu"}
    assert 'dependencies = [\n    "sentence-transformers==5.0.0",\n    "torch==2.13.0",\n]\n' in \
        (app / "pyproject.toml").read_text()
    assert uv_accepts(app, lockers)


def test_tensorflow_gives_way_to_tensorflow_cpu_at_the_same_version(
        app_of: AppOf, cache: Path, indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str],
        lockers: Lockers) -> None:
    pypi, cpu = indexes
    app = app_of("uv", ["tensorflow[and-cuda]==2.21.0", "tf-keras", "flask-fake"])
    assert {"tensorflow", "nvidia-cublas-cu12"} <= set(versions("uv", app))
    pypi.requests.clear()

    done = run_swap("uv", app, cache, cpu.url)

    assert done.relocked
    assert [s.describe() for s in done.swaps] == ["tensorflow==2.21.0 → tensorflow-cpu==2.21.0 (wheel sizes unknown)"]
    assert versions("uv", app) == {"app": "1.0.0", "flask-fake": "3.0.0", "numpy-fake": "1.26.4",
                             "tensorflow-cpu": "2.21.0", "tf-keras": "2.21.0"}
    text = (app / "pyproject.toml").read_text()
    assert '    "flask-fake",\n    "tensorflow-cpu==2.21.0",\n]\n' in text
    assert "[tool.uv]\noverride-dependencies = [\"tensorflow ; sys_platform == 'never'\"]\n" in text
    assert "pytorch-cpu" not in text  # no torch, no index
    assert uv_accepts(app, lockers)
    assert not pypi.files() and not pypi.asked_for("nvidia")
    assert "  tensorflow 2.21.0 -> tensorflow-cpu 2.21.0" in capsys.readouterr().out


def test_the_warning_names_a_cpu_index_that_does_not_answer(
        app_of: AppOf, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = app_of("uv", ["torch==2.13.0"])
    assert not run_swap("uv", app, cache, "http://127.0.0.1:9/simple").relocked
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_the_relock_sees_no_config_var(app_of: AppOf, cache: Path, indexes: tuple[Index, Index]) -> None:
    """heroku/python v351 hands none of the app's config vars to uv (lib/uv.sh), so neither does the re-lock."""
    _, cpu = indexes
    app = app_of("uv", ["torch==2.13.0"])
    nowhere = "http://127.0.0.1:9/simple"
    config_vars = {"UV_DEFAULT_INDEX": nowhere, "UV_INDEX": nowhere, "UV_INDEX_URL": nowhere, "UV_OFFLINE": "1",
                   "UV_EXTRA_INDEX_URL": nowhere}
    assert run_swap("uv", app, cache, cpu.url, config_vars).relocked
    assert versions("uv", app)["torch"] == "2.13.0+cpu"


def test_without_an_interpreter_for_requires_python_the_files_stay(
        app_of: AppOf, cache: Path, indexes: tuple[Index, Index], capsys: pytest.CaptureFixture[str]) -> None:
    _, cpu = indexes
    app = app_of("uv", ["torch==2.13.0"])
    pyproject = (app / "pyproject.toml").read_text().replace('requires-python = ">=3.10"', 'requires-python = ">=3.99"')
    (app / "pyproject.toml").write_text(pyproject)
    written = snapshot(app)

    assert not run_swap("uv", app, cache, cpu.url).relocked

    assert snapshot(app) == written
    assert "No interpreter found for Python >=3.99" in capsys.readouterr().err


# --- the edit, on text alone -----------------------------------------------------------------

TORCH = ManifestChange("pytorch-cpu", "https://download.pytorch.org/whl/cpu",
                       torch=(TorchPin("torch", "2.13.0", True), TorchPin("torchvision", "0.28.0", False)))
TF = ManifestChange("pytorch-cpu", "https://download.pytorch.org/whl/cpu",
                    renamed=(Renamed("tensorflow", "tensorflow-cpu", "2.21.0", True),))


def test_the_edit_keeps_the_users_layout_and_comments() -> None:
    text = ('[project]  # the app\r\nname = "app"\r\ndependencies = ["torch>=2", "pillow[avif]>=10"]  # ours\r\n\r\n'
            "[tool.uv]\r\n# keep this\r\noverride-dependencies = [\r\n    \"numpy<3\"  # pinned\r\n]\r\n"
            '\r\n[tool.uv.sources]\r\nmylib = { path = "lib" }\r\n')
    edited = uv.ADAPTER.edit(text, TORCH)
    assert edited == ('[project]  # the app\r\nname = "app"\r\n'
                      'dependencies = ["torch>=2", "pillow[avif]>=10", "torchvision==0.28.0"]  # ours\r\n\r\n'
                      "[tool.uv]\r\n# keep this\r\noverride-dependencies = [\r\n    \"numpy<3\"  # pinned\r\n]\r\n"
                      '\r\n[tool.uv.sources]\r\ntorch = { index = "pytorch-cpu" }\r\n'
                      'torchvision = { index = "pytorch-cpu" }\r\nmylib = { path = "lib" }\r\n'
                      '\r\n[[tool.uv.index]]\r\nname = "pytorch-cpu"\r\nurl = "https://download.pytorch.org/whl/cpu"\r\n'
                      "explicit = true\r\n")
    edited = uv.ADAPTER.edit(text, TF)
    assert 'dependencies = ["torch>=2", "pillow[avif]>=10", "tensorflow-cpu==2.21.0"]  # ours\r\n' in edited
    assert ("override-dependencies = [\r\n    \"numpy<3\",  # pinned\r\n"
            "    \"tensorflow ; sys_platform == 'never'\"\r\n]\r\n") in edited


def test_the_edit_reuses_an_index_at_the_same_url_and_refuses_layouts_it_cannot_add_to() -> None:
    own = ('[project]\nname = "app"\ndependencies = [\n  "torch==2.13.0",\n]\n'
           '[[tool.uv.index]]\nname = "torch-cpu"\nurl = "https://download.pytorch.org/whl/cpu/"\n')
    edited = uv.ADAPTER.edit(own, TORCH)
    assert edited.count("[[tool.uv.index]]") == 1 and 'torch = { index = "torch-cpu" }' in edited
    assert '  "torch==2.13.0",\n  "torchvision==0.28.0",\n]' in edited
    refused = {
        "inline sources": '[project]\nname = "a"\ndependencies = []\n[tool.uv]\nsources = { x = { path = "x" } }\n',
        "dynamic": '[project]\nname = "a"\ndynamic = ["dependencies"]\n',
        "name taken": ('[project]\nname = "a"\ndependencies = []\n'
                       '[[tool.uv.index]]\nname = "pytorch-cpu"\nurl = "https://example.com/simple"\n'),
        "other source": '[project]\nname = "a"\ndependencies = []\n[tool.uv.sources]\ntorch = { path = "t.whl" }\n',
    }
    for why, text in refused.items():
        with pytest.raises(ValueError):
            uv.ADAPTER.edit(text, TORCH)
            pytest.fail(why)
