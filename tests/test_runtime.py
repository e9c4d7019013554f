"""runtime.engine: litert without an interpreter to run: the settings, the plan, the cache, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slugslim.analyze import command as analyze
from slugslim.analyze import view
from slugslim.core import buildcache, config, installed, stash
from slugslim.core.errors import ConfigError
from slugslim.core.plan import Removal
from slugslim.core.results import Results, RuntimeResult
from slugslim.core.runtimeconfig import Tolerance
from slugslim.core.state import PrepareState
from slugslim.finish.report import fit
from slugslim.finish.runtime import plan
from tests.sitefactory import pip_install
from tests.wheelfactory import WheelSpec, build_wheel


def _load(tmp_path: Path, text: str = "", env: dict[str, str] | None = None) -> config.Config:
    if text:
        (tmp_path / "slugslim.yml").write_text(text)
    return config.load(tmp_path, env or {}).config


def test_runtime_defaults_to_tensorflow_with_documented_tolerances(tmp_path: Path) -> None:
    runtime = _load(tmp_path).runtime
    assert (runtime.engine, runtime.quantize_mode, runtime.tolerance, runtime.litert) == (
        "tensorflow", "dynamic", Tolerance(0.05, 0.99, 0.999), False)


def test_runtime_from_the_file_and_config_vars_which_win(tmp_path: Path) -> None:
    text = "runtime:\n  engine: litert\n  quantize: float16\n  tolerance: {max_abs: 0.01}\n" \
           "  samples: models/samples.npz\n  custom_objects: myapp.layers:CUSTOM\n"
    runtime = _load(tmp_path, text).runtime
    assert runtime.litert and runtime.quantize == "float16" and runtime.tolerance == Tolerance(0.01, 0.99)
    assert (runtime.samples, runtime.custom_objects) == ("models/samples.npz", "myapp.layers:CUSTOM")
    assert runtime.litert_version == ""  # the version slugslim's lock pins
    env = {"SLUGSLIM_RUNTIME_ENGINE": "tensorflow", "SLUGSLIM_RUNTIME_TOLERANCE": "max_abs=0.2,top1=0.9",
           "SLUGSLIM_RUNTIME_LITERT_VERSION": "2.2.0"}
    runtime = _load(tmp_path, text + "  litert_version: '2.1.6'\n", env).runtime
    assert runtime.engine == "tensorflow" and runtime.tolerance == Tolerance(0.2, 0.9)
    assert runtime.litert_version == "2.2.0"
    assert _load(tmp_path, text + "  litert_version: 2.1.6\n").runtime.litert_version == "2.1.6"
    assert _load(tmp_path, "runtime: false\n", {"SLUGSLIM_RUNTIME_ENGINE": "litert"}).runtime.litert is False


def test_onnx_settings_quantize_none_by_default_and_a_cosine_bound(tmp_path: Path) -> None:
    runtime = _load(tmp_path, "runtime:\n  engine: onnx\n  samples: models/texts.json\n",
                    {"SLUGSLIM_RUNTIME_TOLERANCE": "cosine=0.995",
                     "SLUGSLIM_RUNTIME_ONNXRUNTIME_VERSION": "1.31.0"}).runtime
    assert (runtime.onnx, runtime.converts, runtime.litert, runtime.quantize_mode) == (True, True, False, "none")
    assert runtime.tolerance == Tolerance(0.05, 0.99, 0.995) and runtime.onnxruntime_version == "1.31.0"
    assert _load(tmp_path, "runtime:\n  engine: onnx\n  quantize: dynamic\n").runtime.quantize_mode == "dynamic"


@pytest.mark.parametrize(("text", "env", "named"), [
    ("runtime:\n  engine: tflite\n", {}, "'runtime.engine' must be one of tensorflow, litert, onnx"),
    ("runtime:\n  engine: onnx\n  quantize: float16\n", {},
     "'runtime.quantize: float16' is for runtime.engine: litert"),
    ("runtime:\n  samples: models/texts.txt\n", {}, "'runtime.samples' must be a .npy or .npz file inside"),
    ("runtime:\n  engine: onnx\n  samples: texts.csv\n", {}, "must be a .npy, .npz, .txt or .json file inside"),
    ("runtime:\n  tolerance: {cosine: 2}\n", {}, "'runtime.tolerance.cosine' must be a number between 0 and 1"),
    ("", {"SLUGSLIM_RUNTIME_ONNXRUNTIME_VERSION": "newest"}, "'runtime.onnxruntime_version' must be one version"),
    ("", {"SLUGSLIM_RUNTIME_QUANTIZE": "int8"}, "'runtime.quantize' must be one of dynamic, float16, none"),
    ("runtime:\n  tolerance: {max_abs: 0.1, top5: 1}\n", {}, "Unknown key 'runtime.tolerance.top5'"),
    ("runtime:\n  tolerance: {top1: 1.5}\n", {}, "'runtime.tolerance.top1' must be a number between 0 and 1"),
    ("", {"SLUGSLIM_RUNTIME_TOLERANCE": "loose"}, "'runtime.tolerance' must be a mapping"),
    ("runtime:\n  samples: ../outside.npz\n", {}, "'runtime.samples' must be a .npy or .npz file inside"),
    ("runtime:\n  custom_objects: 'my app'\n", {}, "'runtime.custom_objects' must be a dotted path"),
    ("runtime:\n  litert_version: '>=2.3'\n", {}, "'runtime.litert_version' must be one version of ai-edge-litert"),
    ("", {"SLUGSLIM_RUNTIME_LITERT_VERSION": "latest"}, "Set runtime.litert_version to one exact version"),
    ("runtime:\n  litert_version: 2.3\n", {}, "'runtime.litert_version' to a string in quotes (YAML reads 2.10"),
])
def test_bad_runtime_values_name_the_key_and_the_fix(tmp_path: Path, text: str, env: dict[str, str],
                                                     named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, env)
    rendered = caught.value.render()
    assert named in rendered
    assert "slugslim.yml line" in rendered or "config var" in rendered


def _models_app(app: Path) -> None:
    (app / "models" / "export" / "variables").mkdir(parents=True)
    (app / "models" / "export" / "saved_model.pb").write_bytes(b"p" * 100)
    (app / "models" / "classifier.keras").write_bytes(b"k" * 100)
    (app / "models" / "weights.h5").write_bytes(b"h" * 100)
    (app / "models" / "already.tflite").write_bytes(b"t" * 100)
    (app / "models" / "embeddings.bin").write_bytes(b"e" * 100)
    (app / "models" / "torch.pt").write_bytes(b"t" * 100)


def test_the_plan_takes_keras_and_savedmodel_models_of_any_size_and_nothing_else(tmp_path: Path) -> None:
    _models_app(tmp_path)
    settings = _load(tmp_path, "models:\n  exclude: ['weights.h5']\n")
    models, unsafe = plan.keras_models(tmp_path, settings)
    assert [(m.path, m.kind) for m in models] == [
        ("models/classifier.keras", "keras"), ("models/export", "savedmodel"), ("models/weights.h5", "keras")]
    assert unsafe == []
    assert plan.plan(tmp_path / "models" / "export" / "variables", None, settings).verdict == \
        "no Keras or SavedModel model was found in the app"


def test_the_import_gate_names_files_that_import_tensorflow_or_keras(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "app.py").write_text("from slugslim_models import load_model\nimport numpy\n")
    (tmp_path / "pkg" / "train.py").write_text("from tensorflow import keras\nimport keras.layers\n")
    (tmp_path / "pkg" / "optional.py").write_text("try:\n    import tensorflow\nexcept ImportError:\n    pass\n")
    (tmp_path / "slugslim_models.py").write_text("import keras\n")  # the loader may
    assert plan.gate(tmp_path) == {"pkg/train.py": ["keras.layers", "tensorflow"]}


@pytest.fixture(scope="module")
def tf_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tensorflow-cpu and keras with the dependency shapes that decide the closure."""
    wheels = tmp_path_factory.mktemp("closure-wheels")
    specs = [
        WheelSpec(name="tensorflow-cpu", version="2.21.0",
                  requires=["numpy", "protobuf", "absl-py", "libclang", "h5py", "setuptools"],
                  files={"tensorflow/__init__.py": "x = 1\n" * 1000}, entry_points={"tensorboard": "tensorflow:x"}),
        WheelSpec(name="keras", version="3.15.1", requires=["numpy", "h5py", "rich"],
                  files={"keras/__init__.py": ""}),
        WheelSpec(name="rich", requires=["pygments"], files={"rich/__init__.py": ""}),
        WheelSpec(name="flask", requires=["pygments"], files={"flask/__init__.py": ""}),
        *(WheelSpec(name=name, files={f"{module}/__init__.py": ""}) for name, module in (
            ("numpy", "numpy"), ("protobuf", "google/protobuf"), ("absl-py", "absl"), ("libclang", "clang"),
            ("h5py", "h5py"), ("pygments", "pygments"), ("setuptools", "setuptools"))),
    ]
    for spec in specs:
        build_wheel(spec, wheels)
    return pip_install(wheels, tmp_path_factory.mktemp("closure-prefix"), ["tensorflow-cpu", "keras", "flask"])


def test_the_closure_keeps_what_litert_the_app_and_remaining_packages_need(tmp_path: Path, tf_site: Path) -> None:
    (tmp_path / "requirements.txt").write_text("tensorflow-cpu==2.21.0\nkeras\nflask\nh5py\n")
    (tmp_path / "app.py").write_text("import absl.flags\nfrom flask import Flask\n")
    scanned = installed.scan(tf_site)
    # numpy and protobuf: ai-edge-litert needs them; h5py: declared; absl: imported; pygments: flask's.
    assert plan.closure(scanned, tmp_path) == {"tensorflow-cpu", "keras", "libclang", "rich"}
    removals = plan.removals(scanned, {"tensorflow-cpu", "rich"})
    paths = {r.path for r in removals}
    assert {"tensorflow", "rich", "../../../bin/tensorboard"} <= paths
    assert any(p.startswith("tensorflow_cpu-2.21.0.dist-info") for p in paths)  # pip and importlib agree
    assert {r.package for r in removals} == {"tensorflow-cpu", "rich"} and all(r.rule == "runtime" for r in removals)


def test_analyze_shows_what_engine_litert_would_remove(tmp_path: Path, tf_site: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _models_app(tmp_path)
    (tmp_path / "requirements.txt").write_text("tensorflow-cpu==2.21.0\nflask\n")
    (tmp_path / "app.py").write_text("from slugslim_models import load_model\nimport flask\n")
    target = analyze.Target("app and site-packages", tmp_path, tf_site)
    analysis = analyze.analyze(target, config.Config())
    assert analysis.runtime is not None and analysis.runtime.verdict == ""
    data = analysis.to_json()["runtime"]
    assert data["removed"] == ["absl-py", "h5py", "keras", "libclang", "rich", "tensorflow-cpu"]
    assert data["removed_bytes"] > 6000
    view.render(analysis, 100)
    out = capsys.readouterr().out
    assert "LiteRT instead of TensorFlow (runtime.engine: litert; now tensorflow)" in out
    assert "Would convert models/export" in out and "6 distributions" in out

    (tmp_path / "app.py").write_text("import tensorflow\n")
    view.render(analyze.analyze(target, config.Config()), 100)
    assert "Blocks it: app.py imports tensorflow" in capsys.readouterr().out


def _cache_with(cache: Path, version: str) -> Path:
    site = cache / ".heroku" / "python" / "lib" / "python3.11" / "site-packages"
    (site / "numpy").mkdir(parents=True)
    (cache / ".heroku" / "python-version").write_text(f"python-{version}\n")
    return site


def _stash(tmp_path: Path, cache: Path) -> None:
    prefix = tmp_path / "build" / ".heroku" / "python"
    site = prefix / "lib" / "python3.11" / "site-packages"
    (site / "tensorflow").mkdir(parents=True)
    (site / "tensorflow" / "__init__.py").write_text("tf = 1\n")
    (site / "numpy").mkdir()
    (site / "numpy" / "extra.py").write_text("mine\n")
    (prefix / "bin").mkdir()
    (prefix / "bin" / "tensorboard").write_text("#!python\n")
    removals = [Removal("tensorflow", 7, "runtime", ""), Removal("numpy/extra.py", 5, "runtime", ""),
                Removal("../../../bin/tensorboard", 10, "runtime", "")]
    record = {"python": "3.11.7", "distributions": ["tensorflow-cpu"], "site_packages": "lib/python3.11/site-packages"}
    assert stash.stash(cache, prefix, site, removals, record) == 22


def test_the_stash_goes_back_into_a_cache_for_the_same_python_never_over_its_files(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _stash(tmp_path, cache)
    site = _cache_with(cache, "3.11.16")  # another patch release: the same extension modules
    (site / "numpy" / "extra.py").write_text("the cache's\n")
    assert "Put back into heroku/python's cache the 1 distributions" in stash.reinsert(cache)
    assert (site / "tensorflow" / "__init__.py").read_text() == "tf = 1\n"
    assert (site / "numpy" / "extra.py").read_text() == "the cache's\n"
    assert (cache / ".heroku" / "python" / "bin" / "tensorboard").is_file()
    assert not (cache / stash.STASH).exists()


@pytest.mark.parametrize("cached_python", ["3.12.1", None])
def test_the_stash_is_dropped_without_a_cache_for_the_same_python(tmp_path: Path, cached_python: str | None) -> None:
    cache = tmp_path / "cache"
    _stash(tmp_path, cache)
    if cached_python:
        _cache_with(cache, cached_python)
    said = stash.reinsert(cache)
    assert said.startswith("Dropped the TensorFlow kept by the last build")
    assert ("3.12.1" in said) if cached_python else ("no cache" in said)
    assert not (cache / stash.STASH).exists()
    assert not (cache / ".heroku" / "python" / "lib" / "python3.11" / "site-packages" / "tensorflow").exists()


def test_switching_the_engine_clears_heroku_pythons_cache_but_tensorflow_builds_keep_theirs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert buildcache.follow_settings(cache, config.Config()) is None  # nothing cached yet
    (cache / ".heroku" / "python").mkdir(parents=True)
    assert buildcache.follow_settings(cache, config.Config()) is None  # the same settings: kept
    litert = _load(tmp_path, "runtime:\n  engine: litert\n")
    (cache / ".heroku" / "python").mkdir(parents=True, exist_ok=True)
    assert buildcache.follow_settings(cache, litert) == "the setting runtime.engine changed"
    assert not (cache / ".heroku" / "python").exists()


RECORDED = RuntimeResult(**{
    "status": "litert", "version": "2.3.0",
    "models": [{"path": "models/classifier.keras", "original_bytes": 83435, "converted_bytes": 24120,
                "quantize": "dynamic", "max_abs": 0.0012, "top1": 1.0, "convert_seconds": 2.1, "check_seconds": 0.05}],
    "memory": {"litert": 61_000_000, "tensorflow": 560_000_000, "measured_by": "the booted web process"},
    "removed": {"tensorflow": 600_000_000, "models": 83435},
})


def test_the_report_shows_each_model_and_the_memory_on_both_runtimes(capsys: pytest.CaptureFixture[str]) -> None:
    sections = fit.sections(PrepareState(), Results(runtime=RECORDED))
    assert json.loads(json.dumps(sections))["runtime"]["models"][0]["converted_bytes"] == 24120
    fit.render(sections)
    out = capsys.readouterr().out
    assert "Runtime: LiteRT (ai-edge-litert 2.3.0) instead of TensorFlow" in out
    assert "models/classifier.keras: 83.4 KB → 24.1 KB (dynamic), max abs difference 0.0012, top-1 100.0%" in out
    assert "One web process: 61.0 MB on LiteRT, 560.0 MB on TensorFlow (the booted web process)" in out
    kept = RuntimeResult(engine="litert", status="tensorflow",
                         reason="these models did not convert:\n  models/a.h5: flex")
    fit.render(fit.sections(PrepareState(), Results(runtime=kept)))
    assert "Runtime: TensorFlow (runtime.engine: litert did not apply: these models did not convert)" in \
        capsys.readouterr().out
