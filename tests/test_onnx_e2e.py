"""runtime.engine: onnx through the emulated Heroku build: a slug without PyTorch, and a cached rebuild
that gets PyTorch back from slugslim's cache instead of downloading it. ``onnx_tool.py`` is the fake of
``test_onnx_ship`` (the real one needs real torch: ``make bench-onnx``), onnxruntime, tokenizers and the
export tools are fake wheels in hashed locks; everything else is the real buildpack."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import HerokuBuild, write_app
from tests.heroku.build import PYTHON_BUILDPACK, REPO
from tests.test_onnx_ship import FAKE_TOOL, _sentence_model
from tests.wheelfactory import WheelSpec, build_wheel, hashed_lock, torch_spec


def _wheels(out: Path) -> dict[str, Path]:
    specs = [
        torch_spec("2.13.0+cpu", "cpu"),
        WheelSpec(name="sentence-transformers", version="6.3.0", requires=["torch", "transformers", "scipy"],
                  files={"sentence_transformers/__init__.py": "import torch\n"}),
        WheelSpec(name="transformers", version="5.25.0", requires=["tokenizers", "safetensors"],
                  files={"transformers/__init__.py": ""}),
        WheelSpec(name="tokenizers", version="0.23.3", files={"tokenizers/__init__.py": ""}),
        WheelSpec(name="onnxruntime", version="1.32.0", files={"onnxruntime/__init__.py": ""}),
        WheelSpec(name="onnx", version="1.23.2", files={"onnx/__init__.py": ""}),
        WheelSpec(name="onnxscript", version="0.7.2", requires=["onnx"], files={"onnxscript/__init__.py": ""}),
        WheelSpec(name="scipy", version="1.17.0", files={"scipy/__init__.py": "X = 1\n" * 300}),
        WheelSpec(name="safetensors", version="0.8.0", files={"safetensors/__init__.py": ""}),
        WheelSpec(name="filelock-fake", version="3.20.0", files={"filelock_fake/__init__.py": ""}),
    ]
    return {spec.name: build_wheel(spec, out) for spec in specs}


def test_an_onnx_slug_without_torch_and_a_rebuild_that_gets_torch_from_slugslims_cache(
        tmp_path: Path, heroku_build: HerokuBuild, offline_env: dict[str, str]) -> None:
    buildpack = tmp_path / "slugslim"
    for name in ("bin", "lib", "buildpack.toml"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, buildpack / name)
    (buildpack / "lib" / "slugslim" / "finish" / "runtime" / "onnx_tool.py").write_text(FAKE_TOOL)
    wheels = _wheels(tmp_path / "onnx-wheels")
    # The real locks have the real wheels' hashes.
    hashed_lock(buildpack / "lib" / "runtime.lock", [wheels["onnxruntime"], wheels["tokenizers"]])
    hashed_lock(buildpack / "lib" / "onnx-export.lock", [wheels["onnx"], wheels["onnxscript"]])
    app = write_app(tmp_path / "app", {
        "requirements.txt": "torch==2.13.0+cpu\nsentence-transformers==6.3.0\n",
        "slugslim.yml": "swap:\n  enabled: false\nruntime:\n  engine: onnx\n",
        "app.py": "from slugslim_models import SentenceEncoder\n",
    })
    _sentence_model(app / "models" / "encoder")
    env = {"PIP_FIND_LINKS": f"{offline_env['PIP_FIND_LINKS']} {tmp_path / 'onnx-wheels'}"}

    first = heroku_build(app, buildpacks=(buildpack, PYTHON_BUILDPACK), env=env, slug=False)
    assert first.ok, first.log
    assert "Runtime: ONNX Runtime (onnxruntime 1.32.0) instead of PyTorch" in first.log
    assert "Installed onnxruntime 1.32.0 from slugslim's lock, its hashes checked" in first.log
    site = first.site_packages()
    assert not list(site.glob("torch*")) and not list(site.glob("sentence_transformers*"))
    assert (site / "onnxruntime").is_dir() and not (site / "onnxscript").exists()
    python = first.build_dir / ".heroku" / "python" / "bin" / "python"
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, check=False)
    assert no_torch.returncode == 1 and "No module named 'torch'" in no_torch.stderr
    assert (first.build_dir / ".slugslim" / "onnx" / "models--encoder" / "model.onnx").is_file()
    assert not (first.build_dir / "models" / "encoder" / "model.safetensors").exists()
    assert list((first.cache_dir / "slugslim" / "litert-stash").glob("python/lib/python3.*/site-packages/torch"))

    second = heroku_build(app, buildpacks=(buildpack, PYTHON_BUILDPACK), env=env, slug=False)
    assert second.ok, second.log
    assert "Put back into heroku/python's cache the" in second.log
    installed = re.findall(r"Successfully installed (.*)", second.log)
    assert not any("torch" in line for line in installed), installed  # pip found it in place
    assert "Runtime: ONNX Runtime (onnxruntime 1.32.0) instead of PyTorch" in second.log
    assert not list(second.site_packages().glob("torch*"))
