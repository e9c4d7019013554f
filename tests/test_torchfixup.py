"""The fix-up for PyTorch on real installs: a CUDA torch from a fake PyPI, the +cpu build from a fake CPU index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from slugslim.core.config import Config, SwapConfig
from slugslim.core.context import FinishContext
from slugslim.core.errors import FixupError
from slugslim.core.state import PrepareState, SwapState
from slugslim.deps import locksnippets
from slugslim.finish.fixup import fixup
from tests.localindex import serve
from tests.test_fixup import App
from tests.wheelfactory import torch_cpu_index, torch_pypi

pytestmark = pytest.mark.usefixtures("isolated_pip")

CUDA_RUNTIME = {"cuda-bindings", "cuda-toolkit", "nvidia-cublas", "nvidia-cuda-runtime", "nvidia-cudnn-cu13",
                "nvidia-nccl-cu13", "triton"}
CHECK = ("import importlib.metadata as m, json, torch; "
         "print(json.dumps([torch.BUILD, m.version('torch'), sorted(d.metadata['Name'] for d in m.distributions())]))")


@pytest.fixture(scope="module")
def pypi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pypi")
    torch_pypi(out)
    return out


@pytest.fixture(scope="module")
def indexes(pypi_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    cpu_dir = tmp_path_factory.mktemp("cpu")
    torch_cpu_index(cpu_dir)
    with serve(pypi_dir) as pypi, serve(cpu_dir) as cpu:
        yield pypi, cpu


@pytest.fixture(autouse=True)
def build_pip_finds(isolated_pip: None, monkeypatch: pytest.MonkeyPatch, indexes: tuple[str, str]) -> None:
    """The build's pip looks at the stand-in for PyPI, as a Heroku build's looks at PyPI."""
    monkeypatch.setenv("PIP_INDEX_URL", indexes[0])


def context(app: App, indexes: tuple[str, str], manager: str = "pip", keep: tuple[str, ...] = ()) -> FinishContext:
    _pypi, cpu = indexes
    config = Config(swap=SwapConfig(torch_index=cpu, keep=keep))
    return FinishContext(build_dir=app.build, cache_dir=None, config=config, python=app.python,
                         site_packages=app.site, state=PrepareState(swap=SwapState(manager=manager)), env={})


def check(app: App) -> tuple[str, str, set[str]]:
    build, version, names = json.loads(app.run(CHECK))
    return build, version, set(names)


def test_torch_pulled_in_by_another_package_becomes_the_cpu_build_and_its_cuda_wheels_go(
        tmp_path: Path, pypi_dir: Path, indexes: tuple[str, str]) -> None:
    app = App(tmp_path, pypi_dir)
    app.install("sentence-transformers==5.0.0")  # requires torch: PyPI's CUDA build comes in, with its CUDA wheels
    assert check(app)[0] == "cuda" and {n.lower() for n in check(app)[2]} >= CUDA_RUNTIME
    result = fixup.run(context(app, indexes))
    assert result.actions[0]["action"] == "installed" and "required by sentence-transformers" in result.actions[0][
        "detail"]
    assert sorted(a["package"] for a in result.actions if a["action"] == "removed") == sorted(CUDA_RUNTIME)
    build, version, names = check(app)
    assert (build, version) == ("cpu", "2.13.0+cpu")
    assert not CUDA_RUNTIME & {n.lower() for n in names}
    assert not (app.site / "torch" / "lib" / "libtorch_cuda.so").exists() and not (app.site / "nvidia").exists()
    assert app.pip("check").returncode == 0
    assert result.bytes_removed > 0 and result.lock_snippet == []
    # The next install from the same requirements is satisfied (nothing to download) and the fix-up has nothing to do.
    done = app.pip("install", "--no-index", "--find-links", str(tmp_path / "empty"), "sentence-transformers==5.0.0",
                   "torch==2.13.0")
    assert done.returncode == 0, done.stderr
    assert fixup.run(context(app, indexes)).actions == []


def test_uv_style_install_keeps_the_locked_version_with_cpu_files_and_prints_the_snippet(
        tmp_path: Path, pypi_dir: Path, indexes: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    app = App(tmp_path, pypi_dir, with_pip=False)  # heroku/python's uv leaves no pip
    app.install("torch==2.13.0", "torchvision==0.28.0")
    result = fixup.run(context(app, indexes, manager="uv"))
    assert result.layout == "merged"
    assert [a["package"] for a in result.actions if a["action"] == "installed"] == ["torch", "torchvision"]
    build, version, names = check(app)
    # What uv.lock says is installed stays installed, so `uv sync` on the cached rebuild fetches nothing.
    assert (build, version) == ("cpu", "2.13.0")
    assert {n.lower() for n in names} >= CUDA_RUNTIME
    assert app.run("import torchvision; print(torchvision.BUILD)") == "cpu"
    dists = app.dists()
    stub = dists["nvidia-cudnn-cu13"]
    assert dists["torch"].marked and stub.marked and all(p.startswith(stub.info.name) for p, _ in stub.files)
    assert not (app.site / "torch" / "lib" / "libtorch_cuda.so").exists()
    assert '[[tool.uv.index]]' in result.lock_snippet[1] and '    explicit = true' in result.lock_snippet
    assert '    torch = { index = "pytorch-cpu" }' in result.lock_snippet
    assert "uv lock" in capsys.readouterr().out
    assert fixup.run(context(app, indexes, manager="uv")).actions == []


def test_poetry_keeps_the_locked_version_and_gets_its_snippet(tmp_path: Path, pypi_dir: Path,
                                                               indexes: tuple[str, str]) -> None:
    app = App(tmp_path, pypi_dir)
    app.install("torch==2.13.0")
    result = fixup.run(context(app, indexes, manager="poetry"))
    assert result.layout == "merged" and check(app)[:2] == ("cpu", "2.13.0")
    assert {'    priority = "explicit"', '    torch = { version = "2.13.0", source = "pytorch-cpu" }'} <= set(
        result.lock_snippet)
    assert app.pip("check").returncode == 0


def test_pipenv_keeps_the_cuda_wheels_metadata_so_the_next_install_of_its_lock_downloads_nothing(
        tmp_path: Path, pypi_dir: Path, indexes: tuple[str, str]) -> None:
    # `pipenv install --deploy` on a cached build installs every package Pipfile.lock pins that is missing:
    # with the CUDA wheels gone whole, each later build downloaded them again and shipped them (2.2 GB for
    # PyPI's torch 2.13.0, seen with the real heroku/python).
    app = App(tmp_path, pypi_dir)
    app.install("torch==2.13.0")
    pins = [f"{name}=={version}" for name, version in json.loads(app.run(
        "import importlib.metadata as m, json; print(json.dumps([(d.metadata['Name'], d.version) "
        "for d in m.distributions()]))")) if name in CUDA_RUNTIME | {"torch"}]
    result = fixup.run(context(app, indexes, manager="pipenv"))
    assert result.layout == "stand-in" and check(app)[:2] == ("cpu", "2.13.0+cpu")
    assert not (app.site / "nvidia").exists() and not (app.site / "triton").exists()

    again = app.pip("install", "--no-deps", *pins)  # what Pipenv's pip is asked for on the next build

    assert again.returncode == 0, again.stdout + again.stderr
    assert "Successfully installed" not in again.stdout, again.stdout
    assert not (app.site / "nvidia").exists() and not (app.site / "triton").exists()
    assert check(app)[:2] == ("cpu", "2.13.0+cpu")


def test_the_pipenv_snippet_names_the_index_per_package() -> None:
    lines = locksnippets.advice("pipenv", "https://download.pytorch.org/whl/cpu", {"torch": "2.13.0",
                                                                                  "torchvision": "0.28.0"})
    assert lines[0].endswith("add to Pipfile:") and "'pipenv lock'" in lines[-1]
    assert lines[1:8] == ["    [[source]]", '    name = "pytorch-cpu"', '    url = "https://download.pytorch.org/whl/cpu"',
                          "    verify_ssl = true", "", "    [packages]",
                          '    torch = { version = "==2.13.0", index = "pytorch-cpu" }']
    assert locksnippets.advice("pip", "https://download.pytorch.org/whl/cpu", {"torch": "2.13.0"}) == []


def test_kept_torch_and_user_chosen_builds_stay(tmp_path: Path, pypi_dir: Path, indexes: tuple[str, str]) -> None:
    app = App(tmp_path, pypi_dir)
    app.install("torch==2.13.0")
    result = fixup.run(context(app, indexes, keep=("torch", "nvidia-*", "cuda-*", "triton")))
    assert [a["action"] for a in result.actions] == ["kept"]
    assert check(app)[0] == "cuda"


def test_an_unreachable_cpu_index_leaves_the_cuda_build_with_a_warning(tmp_path: Path, pypi_dir: Path,
                                                                       indexes: tuple[str, str],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    app = App(tmp_path, pypi_dir)
    app.install("torch==2.13.0")
    before = sorted(p.relative_to(app.site).as_posix() for p in app.site.rglob("*"))
    result = fixup.run(context(app, (indexes[0], "http://127.0.0.1:9/simple")))
    assert [a["action"] for a in result.actions] == ["skipped"]
    assert "did not answer" in capsys.readouterr().err
    assert sorted(p.relative_to(app.site).as_posix() for p in app.site.rglob("*")) == before
    assert check(app)[:2] == ("cuda", "2.13.0")


def test_a_failed_cpu_install_puts_the_cuda_build_back_and_names_pytorch(tmp_path: Path, pypi_dir: Path,
                                                                         indexes: tuple[str, str]) -> None:
    app = App(tmp_path, pypi_dir)
    app.install("torch==2.13.0")
    (app.site / "torch" / "lib" / "libtorch_cuda.so").write_bytes(b"changed")  # restored as it was, too
    before = {p.relative_to(app.site).as_posix(): p.read_bytes() for p in app.site.rglob("*") if p.is_file()}
    with pytest.raises(FixupError) as failure:  # the index answers but has no torch 2.13.0+cpu
        fixup.run(context(app, (indexes[0], indexes[0])))
    assert "GPU build of PyTorch" in failure.value.render() and "keep: [torch]" in failure.value.render()
    assert {p.relative_to(app.site).as_posix(): p.read_bytes() for p in app.site.rglob("*") if p.is_file()} == before
