"""PyTorch in requirements files: +cpu pins from a fake CPU index on 127.0.0.1, checked by a real pip install."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from slugslim.core.config import Config, SwapConfig
from slugslim.core.errors import CpuBuildError, RequirementsError
from slugslim.prepare.swap import rewrite, swap
from tests.localindex import serve
from tests.wheelfactory import sha256_of, tf_family, torch_cpu_index, torch_pypi

pytestmark = pytest.mark.usefixtures("isolated_pip")


@pytest.fixture(scope="module")
def pypi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pypi")
    torch_pypi(out)
    tf_family(out)
    return out


@pytest.fixture(scope="module")
def cpu_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cpu")
    torch_cpu_index(out)
    return out


@pytest.fixture(scope="module")
def pypi(pypi_dir: Path) -> Iterator[str]:
    with serve(pypi_dir) as url:
        yield url


@pytest.fixture(scope="module")
def cpu_index(cpu_dir: Path) -> Iterator[str]:
    with serve(cpu_dir) as url:
        yield url


def write(app_dir: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (app_dir / name).write_text(text, encoding="utf-8")
    return app_dir


def prepare(app_dir: Path, pypi: str, cpu_index: str, **swap_settings: object) -> rewrite.SwapResult:
    config = Config(swap=SwapConfig(torch_index=cpu_index, **swap_settings))  # type: ignore[arg-type]
    # The fake PyPI stands where the build's pip looks (a config var would not reach heroku/python's pip).
    with mock.patch.dict(os.environ, {"PIP_INDEX_URL": pypi}):
        return rewrite.prepare(app_dir, config, {})


def pip_install(app_dir: Path, pypi: str, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--index-url", pypi,
                           "--target", str(target), "-r", str(app_dir / "requirements.txt")],
                          capture_output=True, text=True, check=False)


def h(directory: Path, prefix: str) -> str:
    return sha256_of(next(directory.glob(f"{prefix}-*.whl")))


def installed(target: Path) -> set[str]:
    return {p.name.split("-")[0] + "-" + p.name.split("-")[1].removesuffix(".dist") for p in
            target.glob("*.dist-info")}


def test_pins_become_cpu_builds_with_the_index_added_once_and_pip_installs_no_cuda(
        tmp_path: Path, pypi: str, cpu_index: str) -> None:
    app_dir = write(tmp_path, {".python-version": "3.11\n", "requirements.txt": (
        "# ML\ntorch==2.13.0  # the model\ntorchvision==0.28.0 ; python_version >= \"3.9\"\n"
        "sentence-transformers>=5\nnvidia-cudnn-cu13==9.13.0.50\ntriton==3.7.1\n")})
    result = prepare(app_dir, pypi, cpu_index)
    text = (app_dir / "requirements.txt").read_text(encoding="utf-8")
    assert text.splitlines()[1:] == [
        "# ML", f"--extra-index-url {cpu_index}", "torch==2.13.0+cpu  # the model",
        'torchvision==0.28.0+cpu; python_version >= "3.9"', "sentence-transformers>=5"]
    assert "torch -> torch==2.13.0+cpu (CPU build)" in text.splitlines()[0]
    assert [(s.action, s.source, s.version) for s in result.swaps] == [
        ("swap", "torch", "2.13.0+cpu"), ("swap", "torchvision", "0.28.0+cpu"),
        ("remove", "nvidia-cudnn-cu13", None), ("remove", "triton", None)]
    # The CUDA build's size comes from the app's index, the CPU build's from PyTorch's.
    assert result.swaps[0].old_wheel is not None and result.swaps[0].new_wheel is not None
    assert (result.swaps[0].saved_bytes or 0) > 0
    target = tmp_path / "site"
    done = pip_install(app_dir, pypi, target)
    assert done.returncode == 0, done.stderr
    assert (target / "torch" / "__init__.py").read_text().count('BUILD = "cpu"') == 1
    assert not list(target.glob("nvidia*")) and not (target / "triton").exists()


def test_unpinned_torch_keeps_its_specifier_and_pip_picks_the_cpu_build(tmp_path: Path, pypi: str,
                                                                        cpu_index: str) -> None:
    app_dir = write(tmp_path, {".python-version": "3.11\n", "requirements.txt": "torch>=2.5\n"})
    result = prepare(app_dir, pypi, cpu_index)
    assert (app_dir / "requirements.txt").read_text().splitlines()[1:] == [f"--extra-index-url {cpu_index}",
                                                                           "torch>=2.5"]
    assert result.swaps[0].version == "2.13.0+cpu"
    target = tmp_path / "site"
    assert pip_install(app_dir, pypi, target).returncode == 0
    assert 'BUILD = "cpu"' in (target / "torch" / "__init__.py").read_text()


def test_hash_mode_gets_the_cpu_hashes_from_the_cpu_index_and_tensorflow_from_pypi(
        tmp_path: Path, pypi: str, cpu_index: str, pypi_dir: Path, cpu_dir: Path) -> None:
    lines = [f"tensorflow==2.21.0 --hash=sha256:{h(pypi_dir, 'tensorflow-2.21.0')}",
             f"numpy-fake==1.26.4 --hash=sha256:{h(pypi_dir, 'numpy_fake')}",
             f"torch==2.13.0 \\\n    --hash=sha256:{h(pypi_dir, 'torch-2.13.0')}",
             f"filelock-fake==3.16.1 --hash=sha256:{h(pypi_dir, 'filelock_fake')}"]
    app_dir = write(tmp_path, {".python-version": "3.11\n", "requirements.txt": "\n".join(lines) + "\n"})
    result = prepare(app_dir, pypi, cpu_index)
    assert result.hash_mode and [s.target for s in result.swaps] == ["tensorflow-cpu", "torch"]
    text = (app_dir / "requirements.txt").read_text()
    assert f"--hash=sha256:{h(cpu_dir, 'torch-2.13.0+cpu')}" in text
    assert f"--hash=sha256:{h(pypi_dir, 'tensorflow_cpu')}" in text
    assert text.count("--extra-index-url") == 1
    target = tmp_path / "site"
    done = pip_install(app_dir, pypi, target)
    assert done.returncode == 0, done.stderr
    assert {"tensorflow_cpu-2.21.0", "torch-2.13.0+cpu"} <= installed(target)


def test_cpu_and_user_chosen_cuda_builds_are_left_alone_with_a_note(tmp_path: Path, pypi: str,
                                                                    cpu_index: str) -> None:
    raw = "torch==2.13.0+cpu\ntorchvision==0.28.0+cu126\nnvidia-cudnn-cu13==9.13.0.50\n"
    app_dir = write(tmp_path, {"requirements.txt": raw})
    result = prepare(app_dir, pypi, cpu_index)
    assert (app_dir / "requirements.txt").read_text() == raw
    assert [(s.action, s.reason) for s in result.swaps] == [
        ("note", "already the CPU build"), ("note", "+cu126 is the build you chose"),
        ("warn", "torchvision may load it; add it to swap.keep to hide this note")]


def test_an_index_url_already_at_the_cpu_index_is_left_alone(tmp_path: Path, pypi: str, cpu_index: str) -> None:
    raw = f"--index-url {cpu_index}/\ntorch==2.13.0\n"
    app_dir = write(tmp_path, {"requirements.txt": raw})
    result = prepare(app_dir, pypi, cpu_index)
    assert (app_dir / "requirements.txt").read_text() == raw
    assert [s.action for s in result.swaps] == ["note"]


def test_an_unreachable_cpu_index_warns_and_leaves_the_line(tmp_path: Path, pypi: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    raw = "torch==2.13.0\nflask-fake==3.0.0\n"
    app_dir = write(tmp_path, {"requirements.txt": raw})
    result = prepare(app_dir, pypi, "http://127.0.0.1:9/simple")
    assert (app_dir / "requirements.txt").read_text() == raw
    assert [s.action for s in result.swaps] == ["warn"]
    assert "did not answer" in capsys.readouterr().err


def test_a_version_without_a_cpu_build_for_the_apps_python_names_the_line(tmp_path: Path, pypi: str,
                                                                          cpu_index: str) -> None:
    raw = "flask-fake==3.0.0\ntorch==2.12.0\n"
    app_dir = write(tmp_path, {".python-version": "3.12\n", "requirements.txt": raw})
    with pytest.raises(CpuBuildError) as failure:
        prepare(app_dir, pypi, cpu_index)
    assert (failure.value.file, failure.value.line, failure.value.python_version) == ("requirements.txt", 2, "3.12")
    assert "torch==2.12.0" in failure.value.render()
    assert (app_dir / "requirements.txt").read_text() == raw
    # The same pin is fine on the Python it was built for.
    write(tmp_path, {".python-version": "3.11\n"})
    assert prepare(app_dir, pypi, cpu_index).swaps[0].version == "2.12.0+cpu"


def test_torchvision_must_match_the_torch_pin_by_its_index_metadata(tmp_path: Path, pypi: str,
                                                                    cpu_index: str) -> None:
    app_dir = write(tmp_path, {".python-version": "3.11\n",
                               "requirements.txt": "torch==2.13.0\ntorchvision==0.27.0\n"})
    with pytest.raises(RequirementsError) as failure:
        prepare(app_dir, pypi, cpu_index)
    assert failure.value.line == 2 and "torch==2.12.0" in failure.value.problem


def test_the_dry_run_rewrites_pins_without_asking_an_index(tmp_path: Path) -> None:
    app_dir = write(tmp_path, {"requirements.txt": "jax[cuda12]==0.7.0\njax-cuda12-plugin==0.7.0\n"
                                                   "onnxruntime-gpu==1.22.0\ntorch==2.13.0\n"})
    swaps = swap.plan_swaps(app_dir, SwapConfig(torch_index="http://127.0.0.1:9/simple"))
    assert [(s.action, s.source, s.new) for s in swaps] == [
        ("swap", "jax", "jax==0.7.0"), ("swap", "onnxruntime-gpu", "onnxruntime==1.22.0"),
        ("swap", "torch", "torch==2.13.0+cpu"), ("remove", "jax-cuda12-plugin", "")]


def test_pip_tools_lock_is_relocked_for_the_cpu_build(tmp_path: Path, pypi: str, cpu_index: str,
                                                      pypi_dir: Path, cpu_dir: Path) -> None:
    pins = (("filelock-fake", "3.16.1", "filelock_fake", "torch"),
            ("nvidia-cudnn-cu13", "9.13.0.50", "nvidia_cudnn_cu13", "torch"),
            ("torch", "2.13.0", "torch-2.13.0", "-r requirements.in"), ("triton", "3.7.1", "triton", "torch"))
    lock = "".join(f"{name}=={version} \\\n    --hash=sha256:{h(pypi_dir, wheel)}\n    # via {via}\n"
                   for name, version, wheel, via in pins)
    app_dir = write(tmp_path, {".python-version": "3.11\n", "requirements.in": "torch==2.13.0\n",
                               "requirements.txt": "# This file is autogenerated by pip-compile\n" + lock})
    result = prepare(app_dir, pypi, cpu_index)
    assert result.relocked
    text = (app_dir / "requirements.txt").read_text()
    assert f"--extra-index-url {cpu_index}\n" in text and "torch==2.13.0+cpu" in text
    assert f"--hash=sha256:{h(cpu_dir, 'torch-2.13.0+cpu')}" in text
    assert "nvidia" not in text.split("\n", 1)[1] and "triton" not in text.split("\n", 1)[1]
    assert (app_dir / "requirements.in").read_text().splitlines()[1:] == [f"--extra-index-url {cpu_index}",
                                                                           "torch==2.13.0+cpu"]
    target = tmp_path / "site"
    done = pip_install(app_dir, pypi, target)
    assert done.returncode == 0, done.stderr
    assert installed(target) == {"filelock_fake-3.16.1", "torch-2.13.0+cpu"}
