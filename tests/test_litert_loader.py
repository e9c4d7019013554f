"""slugslim_models.load_model without TensorFlow: the backend it picks, how it finds the .tflite; the tool's edges.

The app's code runs in a subprocess, as on a dyno: the loader copied into the app root, the app
root on PYTHONPATH, and stand-in ``keras`` and ``ai_edge_litert`` packages that record how they
were called. Real conversion and real LiteRT predictions are in bench/test_litert_real.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from slugslim.core.config import ModelsConfig
from slugslim.core.shipped import HELPER_MARKER
from slugslim.finish.models.models import Entry, render_manifest
from tests.modelservers import REPO, FileServer, sha256

HELPER = REPO / "lib" / "slugslim" / "boot" / "slugslim_models.py"
TOOL = REPO / "lib" / "slugslim" / "finish" / "runtime" / "litert_tool.py"

FAKE_KERAS = '''
import json, os
class models:
    @staticmethod
    def load_model(path, custom_objects=None, **kwargs):
        return {"keras": os.fspath(path), "custom_objects": custom_objects, "kwargs": kwargs}
'''

# An interpreter that records the file it opened and the thread that opened it.
FAKE_LITERT = '''
import threading
OPENED = []
class _Runner:
    def get_input_details(self):
        return {"in_1": {"name": "serving_default_in_1:0", "index": 0},
                "in_0": {"name": "serving_default_in_0:0", "index": 1}}
    def get_output_details(self):
        return {"out_0": {"name": "StatefulPartitionedCall:0", "index": 5}}
class Interpreter:
    def __init__(self, model_path):
        OPENED.append((model_path, threading.get_ident()))
    def get_signature_runner(self, key):
        assert key == "serving_default", key
        return _Runner()
'''

ENTRY = {"format": 1, "tflite": "models/net.tflite", "signature": "serving_default", "quantize": "dynamic",
         "inputs": [{"name": "image", "tensor": "in_0"}, {"name": "extra", "tensor": "in_1"}],
         "outputs": {"kind": "single", "names": ["0"], "tensors": ["out_0"]}}


def make_app(tmp_path: Path, runtime: dict[str, object] | None, litert: bool = True) -> Path:
    app = tmp_path / "app"
    (app / "models").mkdir(parents=True)
    (app / "models" / "net.keras").write_bytes(b"keras zip")
    (app / "models" / "net.tflite").write_bytes(b"tflite")
    shutil.copyfile(HELPER, app / "slugslim_models.py")
    if runtime is not None:
        (app / ".slugslim").mkdir()
        (app / ".slugslim" / "runtime.json").write_text(json.dumps(runtime), encoding="utf-8")
    fakes = tmp_path / "fakes"
    (fakes / "keras").mkdir(parents=True)
    (fakes / "keras" / "__init__.py").write_text(FAKE_KERAS, encoding="utf-8")
    if litert:
        (fakes / "ai_edge_litert").mkdir()
        (fakes / "ai_edge_litert" / "__init__.py").write_text("", encoding="utf-8")
        (fakes / "ai_edge_litert" / "interpreter.py").write_text(FAKE_LITERT, encoding="utf-8")
    return app


def run_app(app: Path, code: str, cwd: Path | None = None) -> list[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(app), "PYTHONPATH": f"{app}{os.pathsep}{app.parent / 'fakes'}"}
    done = subprocess.run([sys.executable, "-c", "import slugslim_models as m\n" + code], cwd=cwd or app, env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def litert_runtime() -> dict[str, object]:
    return {"engine": "litert", "models": {"models/net.keras": ENTRY}}


def test_the_helper_keeps_the_marker_the_models_step_looks_for() -> None:
    assert HELPER_MARKER in HELPER.read_text(encoding="utf-8")


def test_without_runtime_json_it_is_keras_with_the_path_and_arguments_as_given(tmp_path: Path) -> None:
    app = make_app(tmp_path, None)
    out = run_app(app, "print(m.load_model('models/net.keras', custom_objects={'Scale': 1}, compile=False))\n"
                       "import pathlib; print(m.load_model(pathlib.Path('/elsewhere/x.h5'))['keras'])\n"
                       "print(m.load_model('../up/x.h5')['keras'])\n")
    assert out == ["{'keras': 'models/net.keras', 'custom_objects': {'Scale': 1}, 'kwargs': {'compile': False}}",
                   "/elsewhere/x.h5", "../up/x.h5"]


def test_a_converted_model_runs_on_litert_by_relative_or_absolute_path(tmp_path: Path) -> None:
    app = make_app(tmp_path, litert_runtime())
    out = run_app(app, "a = m.load_model('models/net.keras', custom_objects={'x': 1})\n"
                       f"b = m.load_model({str(app / 'models' / 'net.keras')!r})\n"
                       "c = m.load_model('./models/net.keras')\n"
                       "print(a.backend, b.backend, c.backend, a.path, a.tflite)\n"
                       "print([(d['name'], d['index']) for d in a.input_details])\n"
                       "print([(d['name'], d['index']) for d in a.output_details])\n"
                       "print(m.load_model('models/other.keras')['keras'])\n")
    assert out == [f"litert litert litert models/net.keras {app / 'models' / 'net.tflite'}",
                   "[('image', 1), ('extra', 0)]", "[('0', 5)]", "models/other.keras"]


def test_engine_tensorflow_or_no_litert_package_falls_back_to_keras(tmp_path: Path) -> None:
    without_package = make_app(tmp_path / "1", litert_runtime(), litert=False)
    assert run_app(without_package, "print(m.load_model('models/net.keras')['keras'])") == ["models/net.keras"]
    tensorflow = make_app(tmp_path / "2", {"engine": "tensorflow", "models": {"models/net.keras": ENTRY}})
    assert run_app(tensorflow, "print(m.load_model('models/net.keras')['keras'])") == ["models/net.keras"]


def test_one_interpreter_per_thread(tmp_path: Path) -> None:
    app = make_app(tmp_path, litert_runtime())
    code = (
        "import threading\nfrom ai_edge_litert import interpreter\n"
        "model = m.load_model('models/net.keras')\n"
        "together = threading.Barrier(4)  # all alive at once, so no thread id is reused\n"
        "def use():\n    for _ in range(3):\n        model.input_details\n    together.wait()\n"
        "threads = [threading.Thread(target=use) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(interpreter.OPENED), len({t for _, t in interpreter.OPENED}))\n"
    )
    assert run_app(app, code) == ["5 5"], "one interpreter for load_model's thread, one for each of 4 threads"


def test_a_forked_worker_makes_its_own_interpreter(tmp_path: Path) -> None:
    app = make_app(tmp_path, litert_runtime())
    code = (
        "import os\nfrom ai_edge_litert import interpreter\n"
        "model = m.load_model('models/net.keras')\n"
        "pid = os.fork()  # gunicorn --preload: the app loaded the model in the master\n"
        "if pid == 0:\n    model.input_details; model.input_details\n    os._exit(len(interpreter.OPENED))\n"
        "model.input_details\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), len(interpreter.OPENED))\n"
    )
    assert run_app(app, code) == ["2 1"], "the child opens one of its own; the parent keeps its one"


def test_a_tflite_path_that_leaves_the_app_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(b"tflite")
    for n, tflite in enumerate(["../outside.tflite", "/etc/passwd", "models/link.tflite"]):
        runtime = {"engine": "litert", "models": {"models/net.keras": dict(ENTRY, tflite=tflite)}}
        app = make_app(tmp_path / str(n), runtime)
        (app / "models" / "link.tflite").symlink_to(outside)
        out = run_app(app, "try:\n    m.load_model('models/net.keras')\nexcept ValueError as e:\n    print('refused')\n"
                           "from ai_edge_litert import interpreter\nprint(interpreter.OPENED)\n")
        assert out == ["refused", "[]"], tflite


def test_a_tflite_taken_out_of_the_slug_is_fetched_first(tmp_path: Path, file_server: FileServer) -> None:
    app = make_app(tmp_path, litert_runtime())
    data = b"converted model bytes"
    (app / "models" / "net.tflite").unlink()
    file_server.objects["/m/net.tflite"] = data
    (app / ".profile.d").mkdir()
    shutil.copyfile(HELPER.parent / "slugslim-models.sh", app / ".profile.d" / "slugslim-models.sh")
    entry = Entry("models/net.tflite", len(data), sha256(data), file_server.url + "/m/net.tflite", "models/net.tflite")
    manifest = render_manifest([entry], ModelsConfig(boot_timeout=0))
    (app / ".slugslim" / "models.json").write_text(manifest, encoding="utf-8")
    out = run_app(app, "model = m.load_model('models/net.keras')\nprint(open(model.tflite, 'rb').read())\n")
    assert out == [repr(data)]
    assert file_server.count("GET") == 1


def test_check_on_a_python_without_litert_writes_every_model_as_failed(tmp_path: Path) -> None:
    app = make_app(tmp_path, litert_runtime(), litert=False)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"build_dir": str(app), "tolerance": {"max_abs": 0.05, "top1": 0.99},
                                   "models": [{"path": "models/net.keras", "reference": str(tmp_path / "r.npz")}]}))
    done = subprocess.run([sys.executable, str(TOOL), "check", str(request), "result.json"], cwd=tmp_path,
                          capture_output=True, text=True, check=False, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["litert"] == ""
    [model] = result["models"]
    assert model["path"] == "models/net.keras" and model["ok"] is False
    assert "ai-edge-litert" in model["error"] or "numpy" in model["error"], model["error"]
    usage = subprocess.run([sys.executable, str(TOOL), "nonsense"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage: litert_tool.py convert|check" in usage.stderr
