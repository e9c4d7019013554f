"""Real TensorFlow 2.21.0 and LiteRT 2.3.0: convert, ship as the finish step will, check, and predict.

Run by `make bench-litert`, which builds the venv SLUGSLIM_LITERT_PYTHON names (tensorflow-cpu from
the bench wheels, ai-edge-litert from PyPI). The tool and the app code run on that Python in
subprocesses, as the build runs them on the app's Python. Measurements (times, differences, sizes,
peak RSS) are printed at the end and written to .cache/litert-bench.json; none is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "lib" / "slugslim" / "finish" / "runtime" / "litert_tool.py"
LOADER = REPO / "lib" / "slugslim" / "boot" / "slugslim_models.py"
PYTHON = os.environ.get("SLUGSLIM_LITERT_PYTHON", "")
TOLERANCE = {"max_abs": 0.05, "top1": 0.99}
CONVERTIBLE = ["models/classifier.keras", "models/classifier.h5", "models/multi.keras", "models/pair.keras",
               "models/batch1.keras", "models/custom.keras", "models/export"]
MEASURED: dict[str, Any] = {"convert": {}, "check": {}, "quantize": {}}

pytestmark = pytest.mark.skipif(not PYTHON, reason="SLUGSLIM_LITERT_PYTHON is not set (run `make bench-litert`)")


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([PYTHON, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env))
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def kind(path: str) -> str:
    return "keras" if path.endswith((".keras", ".h5")) else "savedmodel"


def tool(app: Path, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """Run litert_tool.py as the finish step will: request and result files, on the app's Python."""
    (app.parent / f"{action}.json").write_text(json.dumps(body), encoding="utf-8")
    started = time.monotonic()
    run([str(TOOL), action, f"{action}.json", f"{action}-result.json"], app.parent)
    result: dict[str, Any] = json.loads((app.parent / f"{action}-result.json").read_text(encoding="utf-8"))
    result["wall_seconds"] = round(time.monotonic() - started, 2)
    return result


def convert(app: Path, models: list[str], **request: Any) -> dict[str, Any]:
    body = {"build_dir": str(app), "work_dir": str(app.parent / "work"), "quantize": "dynamic", "samples": "",
            "sample_count": 16, "seed": 0, "custom_objects": "customlayers.CUSTOM",
            "models": [{"path": m, "kind": kind(m)} for m in models]}
    return tool(app, "convert", {**body, **request})


def ship(app: Path, converted: dict[str, Any]) -> None:
    """What the finish step does before check: runtime.json and the loader in the app root."""
    (app / ".slugslim").mkdir(exist_ok=True)
    models = {m["path"]: m["loader"] for m in converted["models"] if m["ok"]}
    (app / ".slugslim" / "runtime.json").write_text(json.dumps({"engine": "litert", "models": models}))
    shutil.copyfile(LOADER, app / "slugslim_models.py")


def check(app: Path, converted: dict[str, Any]) -> dict[str, Any]:
    return tool(app, "check", {"build_dir": str(app), "tolerance": TOLERANCE, "models": [
        {"path": m["path"], "reference": m["reference"]} for m in converted["models"] if m["ok"]]})


def by_path(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["path"]: m for m in result["models"]}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = tmp_path_factory.mktemp("made") / "app"
    run([str(REPO / "bench" / "litert_models.py"), str(app)], REPO / "bench")
    return app


def fresh(made: Path, tmp_path: Path) -> Path:
    app = tmp_path / "app"
    shutil.copytree(made, app, symlinks=True)
    return app


@pytest.fixture(scope="module")
def shipped(made: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every convertible model converted (dynamic), shipped and checked: the app as the slug will have it."""
    app = fresh(made, tmp_path_factory.mktemp("shipped"))
    converted = convert(app, CONVERTIBLE)
    for model in converted["models"]:
        assert model["ok"], model
        assert (app / model["tflite"]).is_file()
        MEASURED["convert"][model["path"]] = {k: model[k] for k in ("seconds", "original_bytes", "tflite_bytes")}
    MEASURED["convert"]["wall_seconds (one run, TF import included)"] = converted["wall_seconds"]
    assert converted["tensorflow"] == "2.21.0"
    ship(app, converted)
    checked = check(app, converted)
    assert checked["litert"] == "2.3.0"
    for model in checked["models"]:
        assert model["ok"], model
        MEASURED["check"][model["path"]] = {k: model[k] for k in ("max_abs", "max_rel", "top1", "top1_exact",
                                                                   "seconds")}
    MEASURED["check"]["wall_seconds"] = checked["wall_seconds"]
    (app / "converted.json").write_text(json.dumps(converted))
    return app


def test_every_kind_converts_and_checks(shipped: Path) -> None:
    converted = by_path(json.loads((shipped / "converted.json").read_text()))
    assert converted["models/classifier.keras"]["tflite"] == "models/classifier.tflite"
    assert converted["models/classifier.h5"]["tflite"] == "models/classifier.slugslim.tflite", "two models, one stem"
    assert converted["models/export"]["tflite"] == "models/export.tflite"
    assert converted["models/multi.keras"]["samples"] == (
        "random 16, seed 0; dynamic dimensions set to 8 for input(s) b")
    assert converted["models/classifier.keras"]["tflite_bytes"] < converted["models/classifier.keras"]["original_bytes"]


PREDICT = """
import json, sys, numpy as np, slugslim_models as m
rng = np.random.default_rng(3)
out = {}
def show(y):
    if isinstance(y, dict):
        return {k: show(v) for k, v in sorted(y.items())}
    if isinstance(y, list):
        return [show(v) for v in y]
    return np.asarray(y, dtype=np.float64).round(4).tolist()
for rows in (1, 5, 33):
    x = rng.standard_normal((rows, 256)).astype(np.float32)
    out[f"classifier {rows}"] = show(m.load_model("models/classifier.keras").predict(x, verbose=0))
    out[f"h5 {rows}"] = show(m.load_model("models/classifier.h5").predict([x]))
    out[f"batch1 {rows}"] = show(m.load_model("models/batch1.keras").predict(x[:, :8]))
    a, b = rng.standard_normal((rows, 4)), rng.standard_normal((rows, 11, 3))
    out[f"multi {rows}"] = show(m.load_model("models/multi.keras").predict({"a": a, "b": b}))
    left, right = rng.standard_normal((rows, 5)), rng.standard_normal((rows, 2))
    out[f"pair {rows}"] = show(m.load_model("models/pair.keras").predict([left, right]))
    out[f"export {rows}"] = show(m.load_model("models/export").predict(x[:, :5]))
out["backends"] = sorted({type(m.load_model(p)).__name__ for p in ("models/classifier.keras", "models/export")})
out["tensorflow imported"] = "tensorflow" in sys.modules or "keras" in sys.modules
# The fallback needs the app's custom layers (importing them imports keras); LiteRT does not.
custom = None if out["backends"] == ["LiteRTModel"] else __import__("customlayers").CUSTOM
out["custom"] = show(m.load_model("models/custom.keras", custom_objects=custom).predict(np.ones((2, 6))))
print(json.dumps(out))
"""


def test_the_same_app_code_gives_the_same_answers_on_litert_and_on_keras(shipped: Path, tmp_path: Path) -> None:
    """Batches of 1, 5 and 33 rows (a fixed-batch model runs them in chunks), dict and list inputs and outputs."""
    # The last line: Keras prints progress bars before it.
    litert = json.loads(run(["-c", PREDICT], shipped, PYTHONPATH=str(shipped)).stdout.splitlines()[-1])
    local = tmp_path / "local"
    shutil.copytree(shipped, local, symlinks=True)
    (local / ".slugslim" / "runtime.json").unlink()
    keras = json.loads(run(["-c", PREDICT], local, PYTHONPATH=str(local)).stdout.splitlines()[-1])
    assert litert.pop("backends") == ["LiteRTModel"]
    assert "_SavedModel" in keras.pop("backends")
    assert litert.pop("tensorflow imported") is False, "a LiteRT slug never imports TensorFlow"
    assert keras.pop("tensorflow imported") is True
    assert litert.keys() == keras.keys()

    def close(a: Any, b: Any) -> bool:
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        if isinstance(a, list) and a and isinstance(a[0], (list, dict)):
            return isinstance(b, list) and len(a) == len(b) and all(map(close, a, b))
        return isinstance(b, list) and len(a) == len(b) and all(abs(x - y) <= 0.05 for x, y in zip(a, b, strict=True))

    for key in litert:
        assert close(litert[key], keras[key]), key


def test_threads_share_the_model(shipped: Path) -> None:
    code = (
        "import numpy as np, threading, slugslim_models as m\n"
        "model = m.load_model('models/classifier.keras')\n"
        "xs = [np.random.default_rng(i).standard_normal((i + 1, 256)).astype(np.float32) for i in range(16)]\n"
        "alone = [model.predict(x) for x in xs]\n"
        "together, barrier = [None] * 16, threading.Barrier(8)\n"
        "def work(k):\n    barrier.wait()\n"
        "    for _ in range(20):\n        for i in range(k, 16, 8):\n            together[i] = model.predict(xs[i])\n"
        "threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(all(np.array_equal(a, b) for a, b in zip(alone, together)))\n"
        "import os\npid = os.fork()  # as gunicorn --preload forks its workers after the app loaded the model\n"
        "if pid == 0:\n    os._exit(0 if np.array_equal(model.predict(xs[3]), alone[3]) else 1)\n"
        "print(os.waitpid(pid, 0)[1] == 0)\n"
    )
    assert run(["-c", code], shipped, PYTHONPATH=str(shipped)).stdout.split() == ["True", "True"]


@pytest.mark.parametrize("quantize", ["none", "float16", "dynamic"])
def test_each_quantize_mode(made: Path, tmp_path: Path, quantize: str) -> None:
    app = fresh(made, tmp_path)
    models = ["models/classifier.keras", "models/multi.keras", "models/export"]
    converted = convert(app, models, quantize=quantize)
    ship(app, converted)
    checked = by_path(check(app, converted))
    for model in converted["models"]:
        assert model["ok"] and model["quantize"] == quantize, model
        result = checked[model["path"]]
        assert result["ok"], result
        MEASURED["quantize"].setdefault(quantize, {})[model["path"]] = {
            "tflite_bytes": model["tflite_bytes"], "max_abs": result["max_abs"], "max_rel": result["max_rel"],
            "top1": result["top1"], "top1_exact": result["top1_exact"], "convert_seconds": model["seconds"]}
        if quantize == "none":
            assert result["max_abs"] < 1e-4, result


def test_models_that_cannot_ship(made: Path, tmp_path: Path) -> None:
    app = fresh(made, tmp_path)
    converted = by_path(convert(app, ["models/flex", "models/broken.keras", "models/custom.keras"],
                                custom_objects=""))
    assert converted["models/flex"]["reason"] == "flex"
    assert "MatrixInverse" in converted["models/flex"]["error"]
    assert converted["models/broken.keras"]["reason"] == "load"
    assert converted["models/custom.keras"]["reason"] == "load"
    assert "Scale" in converted["models/custom.keras"]["error"]
    assert not any(m["ok"] or m["loader"] for m in converted.values())
    assert not list((app / "models").glob("*.tflite")), "nothing is written for a model that failed"
    missing = by_path(convert(app, ["models/custom.keras"], custom_objects="customlayers.NOPE"))
    assert missing["models/custom.keras"]["reason"] == "load"
    assert "runtime.custom_objects 'customlayers.NOPE'" in missing["models/custom.keras"]["error"]


def test_samples_from_the_app(made: Path, tmp_path: Path) -> None:
    app = fresh(made, tmp_path)
    good = convert(app, ["models/classifier.keras"], samples="samples.npz")
    [model] = good["models"]
    assert model["ok"] and model["samples"] == "samples.npz", model
    ship(app, good)
    [checked] = check(app, good)["models"]
    assert checked["ok"], checked
    [bad] = convert(app, ["models/classifier.keras"], samples="bad-samples.npz")["models"]
    assert bad["reason"] == "samples"
    assert bad["error"] == ("bad-samples.npz: array 'arr_0' has shape (12, 255), but models/classifier.keras "
                            "takes (None, 256) for input 'input_layer'")
    npy = by_path(convert(app, ["models/classifier.keras", "models/multi.keras"], samples="samples.npy"))
    assert npy["models/classifier.keras"]["ok"], npy
    assert npy["models/multi.keras"]["error"] == ("samples.npy: one array, but models/multi.keras takes 2 inputs "
                                                  "(a, b); give a .npz with one array per input")
    [outside] = convert(app, ["models/classifier.keras"], samples="../samples.npz")["models"]
    assert outside["reason"] == "samples" and "not a path inside the app" in outside["error"]


RSS = """
import resource, sys, time
started = time.monotonic()
import numpy as np
if sys.argv[1] == "litert":
    import slugslim_models
    model = slugslim_models.load_model(sys.argv[2])
else:
    import keras
    model = keras.models.load_model(sys.argv[2])
model.predict(np.zeros((1, 256), np.float32), verbose=0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, round(time.monotonic() - started, 2))
"""


def test_peak_rss_of_one_prediction(shipped: Path) -> None:
    """The bench classifier (bench/work/models-*/classifier.keras when the bench made one) on each runtime."""
    bench = sorted((REPO / "bench" / "work").glob("models-*/classifier.keras"))
    if bench:
        shutil.copyfile(bench[0], shipped / "models" / "classifier.keras")
        converted = convert(shipped, ["models/classifier.keras"])
        ship(shipped, converted)
        MEASURED["rss_model"] = str(bench[0].relative_to(REPO))
    for runtime in ("litert", "tensorflow"):
        done = run(["-c", RSS, runtime, "models/classifier.keras"], shipped, PYTHONPATH=str(shipped))
        kb, seconds = done.stdout.split()
        MEASURED.setdefault("rss", {})[runtime] = {"peak_rss_mb": round(int(kb) / 1024, 1),
                                                   "import_load_predict_seconds": float(seconds)}
    rss = MEASURED["rss"]
    rss["ratio"] = round(rss["litert"]["peak_rss_mb"] / rss["tensorflow"]["peak_rss_mb"], 3)
    target = REPO / ".cache" / "litert-bench.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(MEASURED, indent=1) + "\n")
    sys.stdout.write("\n" + json.dumps(MEASURED, indent=1) + "\n")
