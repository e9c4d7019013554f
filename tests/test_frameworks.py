"""The catalogue of framework builds, and what reads it: ONNX Runtime and JAX fix-ups, analyze on a CUDA torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slugslim import cli
from slugslim.core import frameworks
from slugslim.core.config import Config
from slugslim.core.context import FinishContext
from slugslim.core.state import PrepareState, SwapState
from slugslim.finish.fixup import fixup
from slugslim.finish.report import report
from tests.test_fixup import App
from tests.wheelfactory import WheelSpec, build_wheel, nvidia_spec, torch_pypi

pytestmark = pytest.mark.usefixtures("isolated_pip")


@pytest.fixture(autouse=True)
def build_pip_finds(isolated_pip: None, monkeypatch: pytest.MonkeyPatch, wheelhouse: Path) -> None:
    """Where the build's pip finds packages: the build's environment, never an app config var."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    torch_pypi(out)
    for spec in (
        WheelSpec(name="onnxruntime-gpu", version="1.22.0", requires=["numpy-fake"],
                  files={"onnxruntime/__init__.py": 'BUILD = "gpu"\n',
                         "onnxruntime/capi/libonnxruntime_providers_cuda.so": b"\x7fELF" + b"g" * 2048}),
        WheelSpec(name="onnxruntime", version="1.22.0", requires=["numpy-fake"],
                  files={"onnxruntime/__init__.py": 'BUILD = "cpu"\n'}),
        WheelSpec(name="numpy-fake", version="1.26.4", files={"numpy_fake/__init__.py": ""}),
        WheelSpec(name="jax", version="0.7.0", requires=["jaxlib==0.7.0"], files={"jax/__init__.py": "import jaxlib\n"},
                  extras={"cuda12": ["jax-cuda12-plugin[with-cuda]==0.7.0"]}),
        WheelSpec(name="jaxlib", version="0.7.0", files={"jaxlib/__init__.py": ""}),
        WheelSpec(name="jax-cuda12-plugin", version="0.7.0", requires=["jax-cuda12-pjrt==0.7.0"],
                  extras={"with-cuda": ["nvidia-cublas-cu12==12.9.1.4"]},
                  files={"jax_cuda12_plugin/__init__.py": ""}),
        WheelSpec(name="jax-cuda12-pjrt", version="0.7.0", files={"jax_plugins/xla_cuda12/libpjrt.so": b"\x7fELF"}),
        nvidia_spec("nvidia-cublas-cu12", "12.9.1.4"),
        WheelSpec(name="cupy-cuda12x", version="13.3.0", files={"cupy/__init__.py": ""}),
    ):
        build_wheel(spec, out)
    return out


def context(app: App, manager: str = "pip") -> FinishContext:
    return FinishContext(build_dir=app.build, cache_dir=None, config=Config(), python=app.python,
                         site_packages=app.site, state=PrepareState(swap=SwapState(manager=manager)), env={})


@pytest.mark.parametrize(("name", "cuda"), [
    ("nvidia-cublas-cu12", True), ("nvidia-cudnn-cu13", True), ("nvidia-cublas", True), ("nvidia-cuda-runtime", True),
    ("cuda-toolkit", True), ("cuda-bindings", True), ("cuda_python", True), ("triton", True), ("tensorrt-cu12", True),
    ("jax-cuda13-plugin", True), ("jax-cuda12-pjrt", True),
    ("nvidia-ml-py", False), ("torch", False), ("cupy-cuda12x", False), ("jax", False), ("tensorflow-cpu", False),
])
def test_the_cuda_runtime_names(name: str, cuda: bool) -> None:
    assert frameworks.is_cuda_runtime(name) is cuda


def test_which_installed_builds_are_gpu_builds() -> None:
    cuda_torch = ['cuda-toolkit[cublas]==13.0.3 ; platform_system == "Linux"', "filelock"]
    assert frameworks.is_gpu_build("torch", "2.13.0", cuda_torch)
    assert not frameworks.is_gpu_build("torch", "2.13.0+cpu", [])
    assert not frameworks.is_gpu_build("torch", "2.13.0+cu126", cuda_torch)  # the user chose it
    assert frameworks.is_gpu_build("torchvision", "0.28.0") and not frameworks.is_gpu_build("torchvision", "0.28.0+cpu")
    assert frameworks.is_gpu_build("TensorFlow_GPU", "2.11.0") and frameworks.is_gpu_build("onnxruntime-gpu", "1.22")
    assert not frameworks.is_gpu_build("jax", "0.7.0") and not frameworks.is_gpu_build("tensorflow-cpu", "2.21.0")
    assert frameworks.framework_of("torchaudio") is frameworks.framework_of("torch")
    assert "tensorflow-cpu" in report.advice("tensorflow") and "no CPU build" in report.advice("cupy-cuda12x")


def test_onnxruntime_gpu_pulled_in_becomes_onnxruntime(tmp_path: Path, wheelhouse: Path) -> None:
    app = App(tmp_path, wheelhouse)
    app.install("onnxruntime-gpu==1.22.0")
    result = fixup.run(context(app))
    assert [a["action"] for a in result.actions] == ["installed"]
    assert app.run("import onnxruntime, importlib.metadata as m; print(onnxruntime.BUILD, m.version('onnxruntime-gpu'))"
                   ) == "cpu 1.22.0"
    assert not (app.site / "onnxruntime" / "capi" / "libonnxruntime_providers_cuda.so").exists()
    assert app.pip("check").returncode == 0


def test_jax_cuda_plugins_go_and_plain_jax_stays(tmp_path: Path, wheelhouse: Path) -> None:
    app = App(tmp_path, wheelhouse)
    app.install("jax[cuda12]==0.7.0")
    result = fixup.run(context(app))
    assert sorted(a["package"] for a in result.actions if a["action"] == "removed") == [
        "jax-cuda12-pjrt", "jax-cuda12-plugin", "nvidia-cublas-cu12"]
    assert set(app.dists()) >= {"jax", "jaxlib"} and not {"jax-cuda12-plugin", "jax-cuda12-pjrt"} & set(app.dists())
    assert app.run("import jax; print('ok')") == "ok"
    assert app.pip("check").returncode == 0


def test_analyze_shows_what_the_cpu_builds_would_save(tmp_path: Path, wheelhouse: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next((env / "lib").glob("python3.*/site-packages"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                           str(wheelhouse), "--target", str(site), "sentence-transformers==5.0.0", "cupy-cuda12x"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert cli.main(["analyze", str(env), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any("GPU build of PyTorch (torch 2.13.0" in n and "torch 2.13.0+cpu" in n for n in data["notes"])
    assert any("cupy-cuda12x" in n and "no CPU build" in n for n in data["notes"])
    fixed = {r["package"] for r in data["removals"] if r["rule"] == "fixup"}
    assert fixed == {"cuda-bindings", "cuda-toolkit", "nvidia-cublas", "nvidia-cuda-runtime", "nvidia-cudnn-cu13",
                     "nvidia-nccl-cu13", "triton"}
