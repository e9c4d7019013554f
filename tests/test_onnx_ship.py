"""runtime.engine: onnx, the finish step on a real app interpreter, without PyTorch.

A venv stands in for heroku/python's ``.heroku/python`` with fake torch, sentence-transformers,
transformers and the distributions they need, from the wheel factory, installed by real pip;
onnxruntime and tokenizers come from a hashed lock of fake wheels, and the export tools (onnx,
onnxscript) from another into a build-only directory. ``onnx_tool.py`` is replaced by a script that
writes ``.onnx`` files and answers as told (``FAKE_TOOL``): the real one needs real torch
(``make bench-onnx``). What is tested is slugslim's side: the plan, the installs, the manifest, the
removal of PyTorch through the prune engine, the original weights, the cache, every rollback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from slugslim.analyze import command as analyze
from slugslim.analyze import view
from slugslim.core import engines, stash
from slugslim.core.config import Config
from slugslim.core.context import FinishContext
from slugslim.core.installed import read_dists
from slugslim.core.results import HubModelResult, HubResult
from slugslim.core.runtimeconfig import RuntimeConfig
from slugslim.finish.runtime import plan, runtime, tools
from tests.wheelfactory import WheelSpec, build_wheel, hashed_lock

pytestmark = pytest.mark.usefixtures("isolated_pip")

FAKE_TOOL = r'''
import json, os, sys
action, request, result = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
mode = os.environ.get("FAKE_TOOL", "ok")
build = request["build_dir"]
with open(os.path.join(build, ".tool-ran"), "a") as seen:
    seen.write(action + "\n")
models = []
for model in request["models"]:
    key = model["key"]
    if action == "convert":
        import onnxscript  # the export tools are on the path for the conversion, and only there
        refused = mode == "refuse" and model["kind"] == "torchscript"
        name = key.replace("/", "--")
        folder = os.path.join(build, request["out_dir"], name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "model.onnx"), "wb") as handle:
            handle.write(b"ONNX" + b"\0" * 60)
        onnx = request["out_dir"] + "/" + name + "/model.onnx"
        task = "tensor" if model["kind"] in ("torchscript", "export") else "sentence-embedding"
        models.append({"key": key, "ok": not refused, "reason": "unsupported operator aten::foo" if refused else "",
                       "error": "", "onnx": onnx, "onnx_bytes": 64, "original_bytes": 100, "seconds": 0.5,
                       "entry": {"task": task, "onnx": onnx, "quantize": request["quantize"]},
                       "reference": os.path.join(request["work_dir"], name + ".npz")})
    else:
        bad = mode == "mismatch"
        models.append({"key": key, "ok": not bad, "error": "", "cosine": 0.93 if bad else 0.99999,
                       "max_abs": 0.2 if bad else 0.0001, "max_rel": 0.001, "seconds": 0.01})
json.dump({"python": "3.11.7", "torch": "2.13.0", "onnxruntime": "1.32.0", "models": models}, open(result, "w"))
'''


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fake PyTorch, sentence-transformers and transformers with their dependency shapes; the runtime and
    the export tools."""
    out = tmp_path_factory.mktemp("onnx-wheels")
    specs = [
        WheelSpec(name="torch", version="2.13.0", requires=["numpy", "sympy", "filelock"],
                  files={"torch/__init__.py": "", "torch/lib.py": "X = 1\n" * 400},
                  entry_points={"torchrun": "torch.lib:main"}),
        WheelSpec(name="sentence-transformers", version="6.3.0",
                  requires=["torch", "transformers", "numpy", "scikit-learn", "tqdm"],
                  files={"sentence_transformers/__init__.py": ""}),
        WheelSpec(name="transformers", version="5.25.0",
                  requires=["huggingface-hub", "tokenizers", "numpy", "safetensors", "regex"],
                  files={"transformers/__init__.py": ""}),
        WheelSpec(name="huggingface-hub", version="2.4.0", requires=["tqdm", "filelock"],
                  files={"huggingface_hub/__init__.py": ""}),
        WheelSpec(name="tokenizers", version="0.23.3", requires=["huggingface-hub"],
                  files={"tokenizers/__init__.py": ""}),
        WheelSpec(name="onnxruntime", version="1.32.0", requires=["numpy", "protobuf"],
                  files={"onnxruntime/__init__.py": ""}),
        WheelSpec(name="scikit-learn", requires=["scipy"], files={"sklearn/__init__.py": ""}),
        WheelSpec(name="onnx", version="1.23.2", requires=["numpy", "protobuf"], files={"onnx/__init__.py": ""}),
        WheelSpec(name="onnxscript", version="0.7.2", requires=["onnx", "numpy", "ml-dtypes"],
                  files={"onnxscript/__init__.py": ""}),
        *(WheelSpec(name=name, files={f"{module}/__init__.py": ""}) for name, module in (
            ("numpy", "numpy"), ("sympy", "sympy"), ("filelock", "filelock"), ("tqdm", "tqdm"), ("scipy", "scipy"),
            ("safetensors", "safetensors"), ("regex", "regex"), ("protobuf", "google/protobuf"),
            ("ml-dtypes", "ml_dtypes"))),
    ]
    for spec in specs:
        build_wheel(spec, out)
    return out


def _sentence_model(folder: Path, model_type: str = "bert") -> None:
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, "architectures": ["BertModel"]}))
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w" * 5000)


def _torchscript(path: Path, script: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("net/data.pkl", b"pickle")
        if script:
            archive.writestr("net/code/__torch__.py", "def forward(self, x): return x\n")


def onnx_app(tmp_path: Path, wheels: Path, app_code: str, monkeypatch: pytest.MonkeyPatch,
             mode: str = "ok") -> FinishContext:
    build = tmp_path / "build"
    _sentence_model(build / "models" / "encoder")
    _torchscript(build / "models" / "net.pt")
    (build / "app.py").write_text(app_code)
    (build / "requirements.txt").write_text("torch==2.13.0\nsentence-transformers\n")
    venv.create(build / ".heroku" / "python", with_pip=False, symlinks=True)
    python = build / ".heroku" / "python" / "bin" / "python"
    site = next((build / ".heroku" / "python" / "lib").glob("python3.*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                    "--find-links", str(wheels), "torch", "sentence-transformers"], check=True, capture_output=True)
    tool = tmp_path / "onnx_tool.py"
    tool.write_text(FAKE_TOOL)
    monkeypatch.setitem(tools.TOOLS, "onnx", tool)
    monkeypatch.setenv("FAKE_TOOL", mode)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setattr(tools, "LOCK", hashed_lock(tmp_path / "runtime.lock", [
        *(w for name in ("onnxruntime", "tokenizers", "numpy", "protobuf", "huggingface_hub", "tqdm", "filelock")
          for w in wheels.glob(f"{name}-*.whl"))]))
    monkeypatch.setattr(tools, "EXPORT_LOCK", hashed_lock(tmp_path / "onnx-export.lock", [
        *(w for name in ("onnx", "onnxscript", "numpy", "protobuf", "ml_dtypes")
          for w in wheels.glob(f"{name}-*.whl"))]))
    config = Config(runtime=RuntimeConfig(engine="onnx"))
    return FinishContext(build_dir=build, cache_dir=tmp_path / "cache", env={}, config=config, python=python,
                         site_packages=site)


def test_the_plan_finds_sentence_models_torchscript_and_hub_snapshots_and_names_what_it_cannot_convert(
        tmp_path: Path) -> None:
    app = tmp_path / "app"
    _sentence_model(app / "models" / "encoder")
    _sentence_model(app / "models" / "gpt", model_type="gpt2")
    _torchscript(app / "models" / "net.pt")
    _torchscript(app / "weights" / "state.pth", script=False)
    snapshot = app / ".slugslim" / "hf" / "hub" / "models--org--minilm" / "snapshots" / "abc123"
    _sentence_model(snapshot)
    blob = snapshot.parents[1] / "blobs" / "f00"
    blob.parent.mkdir()
    (snapshot / "model.safetensors").rename(blob)
    (snapshot / "model.safetensors").symlink_to("../../blobs/f00")
    hub = HubResult(status="baked", models=[HubModelResult(id="org/minilm", commit="abc123",
                                                           folder=".slugslim/hf/hub/models--org--minilm")])
    planned = plan.plan(app, None, Config(runtime=RuntimeConfig(engine="onnx")), engines.ONNX, hub)
    assert [(m.key, m.kind, m.bytes) for m in planned.models] == [
        ("models/encoder", "sentence-transformers", 5000), ("models/net.pt", "torchscript", planned.models[1].bytes),
        ("org/minilm", "sentence-transformers", 5000)]
    assert planned.models[2].weights == (f"{snapshot.relative_to(app)}/model.safetensors",
                                         ".slugslim/hf/hub/models--org--minilm/blobs/f00")
    unsafe = {m.key: why for m, why in planned.unsafe}
    assert "architecture BertModel is not one slugslim converts" in unsafe["models/gpt"]
    assert "a state_dict or pickled module" in unsafe["weights/state.pth"]
    assert "torch.jit.save" in unsafe["weights/state.pth"]
    assert planned.verdict.startswith("models/gpt cannot be converted safely")


def test_onnx_ships_removes_pytorch_keeps_it_in_the_cache_and_the_next_build_gets_it_back(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # The fallback of ``except ImportError:`` runs only where the loader is missing, which it is not here.
    code = ("import numpy\ntry:\n    from slugslim_models import SentenceEncoder, load_model\nexcept ImportError:\n"
            "    from sentence_transformers import SentenceTransformer as SentenceEncoder\n")
    ctx = onnx_app(tmp_path, wheels, code, monkeypatch)
    assert ctx.site_packages is not None and ctx.cache_dir is not None
    result = runtime.run(ctx)
    assert result.status == "onnx", result.reason
    out = capsys.readouterr().out
    assert "Serving the models with ONNX Runtime instead of PyTorch (runtime.engine: onnx)" in out
    assert "Installed onnxruntime 1.32.0 from slugslim's lock, its hashes checked" in out
    assert "Installed tokenizers 0.23.3 from slugslim's lock, its hashes checked" in out
    build, site = ctx.build_dir, ctx.site_packages
    dists = read_dists(site)
    # What the app's loader needs stays: onnxruntime, tokenizers and the Hub client tokenizers needs.
    assert {"onnxruntime", "tokenizers", "huggingface-hub", "numpy", "tqdm", "filelock"} <= set(dists)
    # PyTorch, sentence-transformers, transformers (no app file imports it) and what only they needed.
    gone = {"torch", "sentence-transformers", "transformers", "sympy", "scikit-learn", "scipy", "safetensors", "regex"}
    assert not gone & set(dists), gone & set(dists)
    assert not (build / ".heroku" / "python" / "bin" / "torchrun").exists()
    # The export tools were importable for the conversion, and are not in site-packages nor in the slug.
    assert not {"onnx", "onnxscript", "ml-dtypes"} & set(dists)
    assert not [p for p in build.rglob("onnxscript") if ".heroku" not in p.parts]
    manifest = json.loads((build / ".slugslim" / "runtime.json").read_text())
    assert manifest["engine"] == "onnx" and sorted(manifest["models"]) == ["models/encoder", "models/net.pt"]
    assert manifest["models"]["models/encoder"] == {"onnx": ".slugslim/onnx/models--encoder/model.onnx",
                                                    "quantize": "none", "task": "sentence-embedding"}
    assert (build / ".slugslim" / "onnx" / "models--encoder" / "model.onnx").is_file()
    assert {"slugslim_models.py", "slugslim_onnx.py"} <= {p.name for p in build.glob("slugslim_*.py")}
    # The weights left the slug; the tokenizer and configs stay with the app.
    assert not (build / "models" / "encoder" / "model.safetensors").exists()
    assert not (build / "models" / "net.pt").exists()
    assert (build / "models" / "encoder" / "tokenizer.json").is_file()
    assert result.removed["torch"] > 0 and result.removed["models"] > 5000
    assert [m["cosine"] for m in result.models] == [0.99999, 0.99999]

    # The next build: heroku/python's cache holds site-packages as the hook left it, without PyTorch.
    cached = ctx.cache_dir / ".heroku" / "python"
    shutil.copytree(build / ".heroku" / "python", cached, symlinks=True)
    (ctx.cache_dir / ".heroku" / "python-version").write_text("python-3.11.7\n")
    said = stash.reinsert(ctx.cache_dir)
    assert "the 8 distributions the last build removed for ONNX Runtime" in said
    cached_site = cached / site.relative_to(build / ".heroku" / "python")
    assert {"torch", "sentence-transformers", "transformers", "onnxruntime"} <= set(read_dists(cached_site))


def test_transformers_stays_when_the_app_imports_it(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = onnx_app(tmp_path, wheels, "import numpy\nfrom transformers import AutoTokenizer\n", monkeypatch)
    result = runtime.run(ctx)
    assert result.status == "onnx", result.reason
    assert ctx.site_packages is not None
    dists = read_dists(ctx.site_packages)
    assert {"transformers", "safetensors", "regex"} <= set(dists)
    assert not {"torch", "sentence-transformers"} & set(dists)


def test_a_model_that_does_not_convert_keeps_pytorch_and_everything_as_it_was(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = onnx_app(tmp_path, wheels, "import numpy\n", monkeypatch, mode="refuse")
    result = runtime.run(ctx)
    assert result.status == "torch"
    err = capsys.readouterr().err
    assert "models/net.pt: unsupported operator aten::foo" in err and "slugslim kept PyTorch" in err
    build = ctx.build_dir
    assert not (build / ".slugslim" / "onnx").exists() and not (build / ".slugslim" / "runtime.json").exists()
    assert (build / "models" / "net.pt").is_file() and (build / "models" / "encoder" / "model.safetensors").is_file()
    assert ctx.site_packages is not None
    dists = read_dists(ctx.site_packages)
    assert {"torch", "sentence-transformers", "tokenizers"} <= set(dists) and "onnxruntime" not in dists


def test_a_verification_failure_rolls_back_the_installs_the_files_and_the_manifest(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = onnx_app(tmp_path, wheels, "import numpy\n", monkeypatch, mode="mismatch")
    result = runtime.run(ctx)
    assert result.status == "torch" and "do not match" in result.reason
    assert "cosine 0.93" in capsys.readouterr().err and "cosine 0.999" in result.reason
    build = ctx.build_dir
    assert not (build / ".slugslim" / "onnx").exists() and not (build / ".slugslim" / "runtime.json").exists()
    assert ctx.site_packages is not None and "onnxruntime" not in read_dists(ctx.site_packages)
    assert ctx.cache_dir is not None and not (ctx.cache_dir / stash.STASH).exists()


def test_app_code_that_imports_torch_keeps_it_without_converting(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = onnx_app(tmp_path, wheels, "import torch\nfrom sentence_transformers import SentenceTransformer\n",
                   monkeypatch)
    result = runtime.run(ctx)
    assert result.status == "torch"
    err = capsys.readouterr().err
    assert "app.py: import sentence_transformers, torch" in err and "SentenceEncoder, pipeline, load_model" in err
    assert not (ctx.build_dir / ".tool-ran").exists()


def test_runtime_onnxruntime_version_installs_that_version_from_the_index_unchecked(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    build_wheel(WheelSpec(name="onnxruntime", version="1.31.0", requires=["numpy"],
                          files={"onnxruntime/__init__.py": ""}), tmp_path / "older")
    # The check fails (mismatch), so that the test stops before the removal: the install is what it is about.
    ctx = onnx_app(tmp_path, wheels, "import numpy\n", monkeypatch, mode="mismatch")
    monkeypatch.setenv("PIP_FIND_LINKS", f"{wheels} {tmp_path / 'older'}")
    ctx.config = Config(runtime=RuntimeConfig(engine="onnx", onnxruntime_version="1.31.0"))
    result = runtime.run(ctx)
    assert result.version == "1.31.0" and "do not match" in result.reason
    out = capsys.readouterr().out
    assert "runtime.onnxruntime_version asks for onnxruntime 1.31.0: it comes from the package index" in out
    assert "Installed onnxruntime 1.31.0 (" in out and "Installed tokenizers 0.23.3 from slugslim's lock" in out


def test_analyze_shows_what_engine_onnx_would_do_for_a_pytorch_app(
        tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a runtime setting, an app with PyTorch models and no Keras ones gets the ONNX plan."""
    ctx = onnx_app(tmp_path, wheels, "from slugslim_models import SentenceEncoder\n", monkeypatch)
    target = analyze.Target("app and site-packages", ctx.build_dir, ctx.site_packages)
    analysis = analyze.analyze(target, Config())
    assert analysis.runtime is not None and analysis.runtime.engine is engines.ONNX and analysis.runtime.verdict == ""
    assert {"torch", "sentence-transformers", "transformers", "sympy"} <= set(analysis.to_json()["runtime"]["removed"])
    view.render(analysis, 100)
    out = capsys.readouterr().out
    assert "ONNX Runtime instead of PyTorch (runtime.engine: onnx; now tensorflow)" in out
    assert "Would convert models/encoder" in out and "onnxruntime and tokenizers would come in" in out
