"""The LiteRT finish step end to end on a real app interpreter, without TensorFlow.

A venv stands in for heroku/python's ``.heroku/python`` with fake TensorFlow, Keras and
ai-edge-litert distributions from the wheel factory, installed by real pip. ``litert_tool.py`` is
replaced by a script that writes ``.tflite`` files and answers as told (``FAKE_TOOL``), so what is
tested is slugslim's side: the install, the manifest, the removal through the prune engine, the
cache stash and its re-insertion, and every rollback.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import venv
from dataclasses import replace
from pathlib import Path

import pytest

from slugslim.core import stash
from slugslim.core.config import Config
from slugslim.core.context import FinishContext
from slugslim.core.installed import read_dists
from slugslim.core.runtimeconfig import RuntimeConfig
from slugslim.finish.runtime import runtime, tools
from tests.test_fixup import LEAKING, as_in_the_hook
from tests.wheelfactory import WheelSpec, build_wheel, hashed_lock

pytestmark = pytest.mark.usefixtures("isolated_pip")

FAKE_TOOL = r'''
import json, os, sys
action, request, result = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
mode = os.environ.get("FAKE_TOOL", "ok")
open(os.path.join(request["build_dir"], ".tool-ran"), "a").write(action + "\n")
models = []
for model in request["models"]:
    path = model["path"]
    if action == "convert":
        tflite = path.rsplit(".", 1)[0] + ".tflite" if model["kind"] == "keras" else path + ".tflite"
        with open(os.path.join(request["build_dir"], tflite), "wb") as handle:
            handle.write(b"TFL3" + b"\0" * 60)
        flex = mode == "flex" and path.endswith(".h5")
        models.append({"path": path, "kind": model["kind"], "ok": not flex, "reason": "flex" if flex else "",
                       "error": "needs Flex ops: Erf" if flex else "", "tflite": tflite, "original_bytes": 100,
                       "tflite_bytes": 64, "quantize": request["quantize"], "seconds": 0.5,
                       "samples": "random 16, seed 0", "reference": "/nowhere/" + path + ".npz",
                       "loader": {"tflite": tflite}})
    else:
        bad = mode == "mismatch"
        models.append({"path": path, "ok": not bad, "error": "", "max_abs": 0.3 if bad else 0.001,
                       "max_rel": 0.01, "top1": 1.0, "classifier": True, "seconds": 0.01})
json.dump({"tensorflow": "2.21.0", "litert": "2.3.0", "python": "3.11.7", "models": models}, open(result, "w"))
'''


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tensorflow_app_wheels(tmp_path_factory.mktemp("runtime-wheels"))


def tensorflow_app_wheels(out: Path) -> Path:
    """Fake TensorFlow, Keras, numpy and ai-edge-litert, in a find-links directory."""
    specs = [
        WheelSpec(name="tensorflow-cpu", version="2.21.0", requires=["numpy", "libclang"],
                  files={"tensorflow/__init__.py": "", "tensorflow/core.py": "X = 1\n" * 200},
                  entry_points={"saved_model_cli": "tensorflow.core:main"}),
        WheelSpec(name="keras", version="3.15.1", requires=["numpy"], files={"keras/__init__.py": ""}),
        WheelSpec(name="libclang", version="18.1.1", files={"clang/__init__.py": ""}),
        WheelSpec(name="numpy", version="2.4.6", files={"numpy/__init__.py": ""}),
        WheelSpec(name="ai-edge-litert", version="2.3.0", requires=["numpy", "tqdm"],
                  files={"ai_edge_litert/__init__.py": ""}),
        WheelSpec(name="tqdm", version="4.67.1", files={"tqdm/__init__.py": ""}),
    ]
    for spec in specs:
        build_wheel(spec, out)
    return out


def litert_app(tmp_path: Path, wheels: Path, app_code: str, monkeypatch: pytest.MonkeyPatch,
         mode: str = "ok") -> FinishContext:
    build = tmp_path / "build"
    (build / "models" / "export" / "variables").mkdir(parents=True)
    (build / "models" / "classifier.keras").write_bytes(b"k" * 3000)
    (build / "models" / "old.h5").write_bytes(b"h" * 2000)
    (build / "models" / "export" / "saved_model.pb").write_bytes(b"p" * 1000)
    (build / "models" / "embeddings.bin").write_bytes(b"e" * 500)
    (build / "app.py").write_text(app_code)
    (build / "requirements.txt").write_text("tensorflow-cpu==2.21.0\nkeras\n")
    venv.create(build / ".heroku" / "python", with_pip=False, symlinks=True)
    python = build / ".heroku" / "python" / "bin" / "python"
    site = next((build / ".heroku" / "python" / "lib").glob("python3.*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                    "--find-links", str(wheels), "tensorflow-cpu", "keras"], check=True, capture_output=True)
    tool = tmp_path / "litert_tool.py"
    tool.write_text(FAKE_TOOL)
    monkeypatch.setitem(tools.TOOLS, "litert", tool)
    monkeypatch.setenv("FAKE_TOOL", mode)
    # Where this test's pip finds ai-edge-litert: the build's environment, not an app config var.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    # slugslim's lock of runtime packages, with the hashes of these wheels.
    monkeypatch.setattr(tools, "LOCK", hashed_lock(tmp_path / "runtime.lock", [
        *wheels.glob("ai_edge_litert-*.whl"), *wheels.glob("tqdm-*.whl"), *wheels.glob("numpy-*.whl")]))
    config = Config(runtime=RuntimeConfig(engine="litert"))
    return FinishContext(build_dir=build, cache_dir=tmp_path / "cache", env={}, config=config, python=python,
                         site_packages=site)


def test_of_the_apps_pip_config_vars_only_the_extra_index_reaches_the_litert_install(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Config vars that would send pip elsewhere (an index that is not there) stay out of its environment."""
    ctx = litert_app(tmp_path, wheels, "import numpy\nfrom slugslim_models import load_model\n", monkeypatch)
    shutil.copytree(wheels, tmp_path / "pypi" / "wheels")
    as_in_the_hook(monkeypatch, LEAKING, tmp_path / "pypi" / "wheels")
    ctx.env.update(LEAKING)
    installed = tools.install(ctx, "ai-edge-litert", timeout=120)
    assert (installed.added, installed.version, installed.locked) == (["ai-edge-litert", "tqdm"], "2.3.0", True)


def test_litert_ships_removes_tensorflow_keeps_it_in_the_cache_and_the_next_build_gets_it_back(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = litert_app(tmp_path, wheels, "import numpy\nfrom slugslim_models import load_model\n", monkeypatch)
    assert ctx.site_packages is not None and ctx.cache_dir is not None
    result = runtime.run(ctx)
    assert result.status == "litert", result.reason
    assert re.search(r"Planned \d+ removals, .*:\n\s+runtime\s+\S+ \S+\s+\(\d+ paths\)", capsys.readouterr().out)
    build = ctx.build_dir
    dists = read_dists(ctx.site_packages)
    assert {"ai-edge-litert", "tqdm", "numpy"} <= set(dists)
    assert not {"tensorflow-cpu", "keras", "libclang"} & set(dists)  # dist-info gone too: pip agrees
    assert not (ctx.site_packages / "tensorflow").exists()
    assert not (build / ".heroku" / "python" / "bin" / "saved_model_cli").exists()
    assert sorted(result.installed) == ["ai-edge-litert", "tqdm"]
    manifest = json.loads((build / ".slugslim" / "runtime.json").read_text())
    assert manifest == {"engine": "litert", "models": {
        "models/classifier.keras": {"tflite": "models/classifier.tflite"},
        "models/export": {"tflite": "models/export.tflite"},
        "models/old.h5": {"tflite": "models/old.tflite"}}}
    assert "slugslim-models-helper" in (build / "slugslim_models.py").read_text()
    # The originals left the slug; the .tflite files and the raw weights stay.
    assert not (build / "models" / "classifier.keras").exists() and not (build / "models" / "export").exists()
    assert (build / "models" / "classifier.tflite").is_file() and (build / "models" / "embeddings.bin").is_file()
    assert result.removed["models"] == 6000 and result.removed["tensorflow"] > 0
    assert [m["max_abs"] for m in result.models] == [0.001] * 3
    assert not any("reference" in m for m in result.models)  # the build's scratch paths stay out of the report
    assert result.cache["bytes"] > 0

    # The next build: heroku/python's cache holds site-packages as the hook left it, without TF.
    cached = ctx.cache_dir / ".heroku" / "python"
    shutil.copytree(build / ".heroku" / "python", cached, symlinks=True)
    (ctx.cache_dir / ".heroku" / "python-version").write_text("python-3.11.7\n")
    said = stash.reinsert(ctx.cache_dir)
    assert "Put back" in said and "tensorflow-cpu" in said
    cached_site = cached / ctx.site_packages.relative_to(build / ".heroku" / "python")
    assert {"tensorflow-cpu", "keras", "libclang", "ai-edge-litert"} <= set(read_dists(cached_site))
    assert (cached / "bin" / "saved_model_cli").is_file()
    assert not (ctx.cache_dir / stash.STASH).exists()


def test_a_model_that_needs_flex_ops_keeps_tensorflow_and_removes_what_the_converter_wrote(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = litert_app(tmp_path, wheels, "import numpy\n", monkeypatch, mode="flex")
    result = runtime.run(ctx)
    assert result.status == "tensorflow"
    err = capsys.readouterr().err
    assert "models/old.h5: flex: needs Flex ops: Erf" in err and "kept TensorFlow" in err
    assert not list((ctx.build_dir / "models").glob("*.tflite"))  # export.tflite too
    assert (ctx.build_dir / "models" / "classifier.keras").is_file()
    assert ctx.site_packages is not None and "ai-edge-litert" not in read_dists(ctx.site_packages)


def test_a_converted_model_that_differs_too_much_rolls_back_the_install_and_the_manifest(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = litert_app(tmp_path, wheels, "import numpy\n", monkeypatch, mode="mismatch")
    # An earlier LiteRT build installed them, and heroku/python's cache brought them back.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(ctx.python), "install", "--quiet", "--no-index",
                    "--find-links", str(wheels), "ai-edge-litert"], check=True, capture_output=True)
    assert ctx.cache_dir is not None
    stash.remember_installs(ctx.cache_dir, ["ai-edge-litert", "numpy", "tqdm"])  # numpy: keras needs it
    result = runtime.run(ctx)
    assert result.status == "tensorflow" and "do not match" in result.reason
    assert "max_abs 0.05, top1 0.99" in capsys.readouterr().err
    assert ctx.site_packages is not None
    dists = read_dists(ctx.site_packages)
    assert {"tensorflow-cpu", "keras", "numpy"} <= set(dists) and not {"ai-edge-litert", "tqdm"} & set(dists)
    assert not (ctx.build_dir / ".slugslim" / "runtime.json").exists()
    assert not list((ctx.build_dir / "models").glob("*.tflite"))
    assert ctx.cache_dir is not None and not (ctx.cache_dir / stash.STASH).exists()


def test_app_code_that_imports_tensorflow_keeps_it_without_converting(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = litert_app(tmp_path, wheels, "import tensorflow as tf\n", monkeypatch)
    result = runtime.run(ctx)
    assert result.status == "tensorflow"
    assert "app.py: import tensorflow" in capsys.readouterr().err
    assert not (ctx.build_dir / ".tool-ran").exists()


def test_a_removal_the_app_still_needs_is_found_by_bisection_and_stays(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = litert_app(tmp_path, wheels, "import numpy\n", monkeypatch)
    # Loaded by name at run time, which the static import scan cannot see; verify.imports says so.
    ctx.config = replace(ctx.config, verify=replace(ctx.config.verify, imports=("clang",)))
    result = runtime.run(ctx)
    assert result.status == "litert" and result.removal["status"] == "partial"
    assert [c["package"] for c in result.removal["culprits"]] == ["libclang"]
    assert ctx.site_packages is not None
    dists = read_dists(ctx.site_packages)
    assert "libclang" in dists and not {"tensorflow-cpu", "keras"} & set(dists)


def test_a_converter_that_cannot_run_keeps_tensorflow_with_its_last_words(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = litert_app(tmp_path, wheels, "import numpy\n", monkeypatch)
    broken = tmp_path / "broken_tool.py"
    broken.write_text("raise SystemExit('litert_tool: no module named tensorflow')\n")
    monkeypatch.setitem(tools.TOOLS, "litert", broken)
    result = runtime.run(ctx)
    assert result.status == "tensorflow" and result.reason.startswith("the convert step failed (exit status 1)")
    assert "litert_tool: no module named tensorflow" in capsys.readouterr().err
    assert (ctx.build_dir / "models" / "classifier.keras").is_file()
