"""slugslim_models on ONNX Runtime: SentenceEncoder, pipeline and load_model against numpy by hand.

Real onnxruntime and tokenizers run tiny models built here with ``onnx``: an "encoder" that looks
token ids up in a random embedding table and zeroes the padding (so every pooling gives a
different answer), a classifier that multiplies that encoder's mean by a matrix, and two tensor
models. The app's code runs in a subprocess, as on a dyno: the two loader files copied into the
app root, the app root on PYTHONPATH. Stand-in ``sentence_transformers``, ``transformers`` and
``torch`` modules that record their calls only show which library the fallback picks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers

from slugslim.core import shipped
from tests.modelservers import REPO

BOOT = REPO / "lib" / "slugslim" / "boot"
WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away", "slowly"]
VOCAB = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
HIDDEN, LABELS, MAX_LENGTH = 5, ["negative", "neutral", "positive"], 6
TEXTS = ["the cat sat on a mat", "dog", "a dog ran far far away slowly and more", "cat unknownword sat"]
RNG = np.random.default_rng(7)
TABLE = RNG.normal(size=(len(VOCAB), HIDDEN)).astype(np.float32)
HEAD = RNG.normal(size=(HIDDEN, len(LABELS))).astype(np.float32)
WEIGHT = RNG.normal(size=(4, 3)).astype(np.float32)
TEXT = {"tokenizer": ".slugslim/onnx/enc/tokenizer.json", "max_length": MAX_LENGTH, "pad_id": 0,
        "pad_token": "[PAD]", "inputs": ["input_ids", "attention_mask", "token_type_ids"], "quantize": "none"}
POOLINGS = ["mean", "cls", "max", "mean_sqrt_len", "lasttoken"]

# Records how the fallback was called; the "models" return a fixed float64 answer.
STANDINS = {
    "sentence_transformers": "CALLS = []\nclass SentenceTransformer:\n"
                             "    def __init__(self, name, **kw):\n        CALLS.append(('init', name, kw))\n"
                             "    def encode(self, texts, **kw):\n        CALLS.append(('encode', texts, kw))\n"
                             "        return [[0.5, 1.5]]\n",
    "transformers": "CALLS = []\ndef pipeline(task, model=None, **kw):\n    CALLS.append((task, model, kw))\n"
                    "    return 'transformers pipeline'\n",
    "torch": "CALLS = []\nclass jit:\n    @staticmethod\n    def load(path, map_location=None):\n"
             "        CALLS.append(('jit', path, map_location))\n"
             "class export:\n    @staticmethod\n    def load(path):\n        CALLS.append(('export', path))\n"
             "        class Program:\n            def module(self):\n                return None\n"
             "        return Program()\n",
}


def _graph_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], initializers: list[Any]) -> Any:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _text_inputs() -> list[Any]:
    return [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in TEXT["inputs"]]


def _masked_lookup() -> list[Any]:
    """hidden = table[input_ids] * attention_mask: padding tokens are zeros."""
    return [helper.make_node("Gather", ["table", "input_ids"], ["looked"]),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
            helper.make_node("Mul", ["looked", "mask3"], ["hidden"])]


def encoder_model() -> Any:
    out = helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", HIDDEN])
    # token_type_ids is an input the loader must feed, though this graph leaves it unused.
    return _graph_model(_masked_lookup(), _text_inputs(), [out],
                        [numpy_helper.from_array(TABLE, "table"), numpy_helper.from_array(np.array([-1]), "last")])


def classifier_model() -> Any:
    nodes = [*_masked_lookup(),
             helper.make_node("ReduceSum", ["hidden", "one"], ["total"], keepdims=0),
             helper.make_node("ReduceSum", ["mask3", "one"], ["count"], keepdims=0),
             helper.make_node("Div", ["total", "count"], ["mean"]),
             helper.make_node("MatMul", ["mean", "head"], ["logits"])]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((TABLE, "table"), (HEAD, "head"), (np.array([-1]), "last"), (np.array([1]), "one"))]
    return _graph_model(nodes, _text_inputs(), [out], inits)


def tensor_models() -> tuple[Any, Any]:
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in ("x", "y"))
    one = _graph_model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["out"])],
                       [x], [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])],
                       [numpy_helper.from_array(WEIGHT, "w")])
    two = _graph_model([helper.make_node("Add", ["x", "y"], ["sum"]), helper.make_node("Mul", ["x", "y"], ["prod"])],
                       [x, y], [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4])
                                for n in ("sum", "prod")], [])
    return one, two


def runtime_models() -> dict[str, dict[str, Any]]:
    enc = dict(TEXT, task="sentence-embedding", onnx=".slugslim/onnx/enc/model.onnx", normalize=False,
               onnx_data=".slugslim/onnx/enc/model.onnx.data")  # its weights in a file beside it
    entries = {f"enc/{p}": dict(enc, pooling=p) for p in POOLINGS}
    entries["sentence-transformers/tiny"] = dict(enc, pooling="mean", normalize=True)
    clf = dict(TEXT, task="text-classification", onnx=".slugslim/onnx/clf/model.onnx", labels=LABELS)
    for problem in ("single_label_classification", "multi_label_classification", "regression"):
        entries[f"clf/{problem}"] = dict(clf, problem_type=problem)
    tensor = {"task": "tensor", "quantize": "none"}
    entries["models/one.pt"] = dict(tensor, onnx=".slugslim/onnx/one/model.onnx", inputs=["x"], outputs=["out"],
                                    dtypes={"x": "float32"})
    entries["models/two.pt2"] = dict(tensor, onnx=".slugslim/onnx/two/model.onnx", inputs=["x", "y"],
                                     outputs=["sum", "prod"], dtypes={"x": "float32", "y": "float32"})
    return entries


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted files of every model, as .slugslim/onnx of an app."""
    root = tmp_path_factory.mktemp("built") / ".slugslim" / "onnx"
    one, two = tensor_models()
    for name, model in (("enc", encoder_model()), ("clf", classifier_model()), ("one", one), ("two", two)):
        (root / name).mkdir(parents=True)
        weights = {"save_as_external_data": True, "location": "model.onnx.data", "size_threshold": 64}
        onnx.save(model, str(root / name / "model.onnx"), **(weights if name == "enc" else {}))
    assert (root / "enc" / "model.onnx.data").stat().st_size > 0
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(root / "enc" / "tokenizer.json"))
    return root.parent.parent


def make_app(tmp_path: Path, built: Path, entries: dict[str, Any] | None = None) -> Path:
    app = tmp_path / "app"
    shutil.copytree(built / ".slugslim", app / ".slugslim")
    for name in shipped.HELPERS:
        shutil.copyfile(BOOT / name, app / name)
    runtime = {"engine": "onnx", "models": runtime_models() if entries is None else entries}
    (app / ".slugslim" / "runtime.json").write_text(json.dumps(runtime), encoding="utf-8")
    for name, code in STANDINS.items():
        (tmp_path / "standins" / name).mkdir(parents=True)
        (tmp_path / "standins" / name / "__init__.py").write_text(code, encoding="utf-8")
    return app


def run_app(app: Path, code: str, **env: str) -> Any:
    """What the app's code prints as JSON on its last line; ``m`` is slugslim_models, ``np`` numpy."""
    path = os.pathsep.join([str(app), str(app.parent / "standins")])
    done = subprocess.run([sys.executable, "-c", "import json, os, sys\nimport numpy as np\n"
                           "import slugslim_models as m\n" + code],
                          cwd=app, env={"PATH": os.environ["PATH"], "HOME": str(app), "PYTHONPATH": path, **env},
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def by_hand(texts: list[str], pooling: str, normalize: bool = False) -> Any:
    """The sentence embedding the tiny encoder should give, from the vocabulary, in numpy."""
    out = []
    for text in texts:
        ids = [VOCAB.get(w, VOCAB["[UNK]"]) for w in text.split()][:MAX_LENGTH]
        hidden = TABLE[ids]
        pooled = {"mean": hidden.mean(axis=0), "cls": hidden[0], "max": hidden.max(axis=0),
                  "mean_sqrt_len": hidden.sum(axis=0) / np.sqrt(len(ids)), "lasttoken": hidden[-1]}[pooling]
        out.append(pooled / np.linalg.norm(pooled) if normalize else pooled)
    return np.array(out, dtype=np.float32)


def test_importing_the_loader_imports_neither_slugslim_onnx_nor_onnxruntime(tmp_path: Path, built: Path) -> None:
    app = make_app(tmp_path, built)
    assert run_app(app, "print(json.dumps(sorted({'slugslim_onnx', 'onnxruntime', 'tokenizers'} & set(sys.modules))))"
                   ) == []
    assert all(shipped.HELPER_MARKER in (BOOT / name).read_text(encoding="utf-8") for name in shipped.HELPERS)


def test_every_pooling_and_normalization_matches_numpy_by_hand_with_the_shapes_of_sentence_transformers(
        tmp_path: Path, built: Path) -> None:
    app = make_app(tmp_path, built)
    got = run_app(app, "from slugslim_models import SentenceEncoder\nout = {}\n"
                       f"for p in {POOLINGS!r}:\n"
                       f"    e = SentenceEncoder('enc/' + p)\n"
                       f"    out[p] = e.encode({TEXTS!r}, batch_size=3).tolist()\n"
                       f"    out[p + '/normalized'] = e.encode({TEXTS!r}, normalize_embeddings=True).tolist()\n"
                       "tiny = SentenceEncoder('./sentence-transformers/tiny/')\n"
                       "one, many = tiny.encode('dog'), tiny.encode(['dog', 'cat sat'])\n"
                       "out['shapes'] = [tiny.backend, one.shape, str(one.dtype), many.shape, str(many.dtype),\n"
                       "                 tiny.encode([]).shape]\n"
                       "out['tiny'] = many.tolist()\nprint(json.dumps(out))\n")
    for pooling in POOLINGS:
        np.testing.assert_allclose(got[pooling], by_hand(TEXTS, pooling), rtol=1e-5, atol=1e-6, err_msg=pooling)
        np.testing.assert_allclose(got[pooling + "/normalized"], by_hand(TEXTS, pooling, normalize=True),
                                   rtol=1e-5, atol=1e-6, err_msg=pooling)
    assert got["shapes"] == ["onnxruntime", [HIDDEN], "float32", [2, HIDDEN], "float32", [0]]
    np.testing.assert_allclose(got["tiny"], by_hand(["dog", "cat sat"], "mean", normalize=True), rtol=1e-5)


def test_runs_hold_at_most_tokens_per_run_padded_tokens_and_give_what_one_text_at_a_time_gives(
        tmp_path: Path, built: Path) -> None:
    """Longest first, each run padded to its own longest, so a long text does not make 31 short ones
    as long as itself (ONNX Runtime keeps a run's peak memory for the process)."""
    app = make_app(tmp_path, built)
    texts = [" ".join(["cat"] * n) for n in (1, 9, 2, 30, 5, 3, 17, 1)]
    got = run_app(app, "import slugslim_onnx\nslugslim_onnx.TOKENS_PER_RUN = 40\nshapes = []\n"
                       "run = slugslim_onnx._Session.run\n"
                       "def recorded(self, outputs, feed):\n"
                       "    shapes.append(list(feed['input_ids'].shape))\n"
                       "    return run(self, outputs, feed)\n"
                       "slugslim_onnx._Session.run = recorded\n"
                       "from slugslim_models import SentenceEncoder\ne = SentenceEncoder('enc/mean')\n"
                       f"together = e.encode({texts!r}).tolist()\nruns = list(shapes)\n"
                       f"alone = [e.encode([t])[0].tolist() for t in {texts!r}]\n"
                       "print(json.dumps({'runs': runs, 'together': together, 'alone': alone}))\n")
    assert all(rows * length <= 40 or rows == 1 for rows, length in got["runs"]), got["runs"]
    assert [length for _rows, length in got["runs"]] == sorted((length for _rows, length in got["runs"]), reverse=True)
    assert sum(rows for rows, _length in got["runs"]) == len(texts) and len(got["runs"]) > 1
    np.testing.assert_allclose(got["together"], got["alone"], rtol=1e-5, atol=1e-6)


def test_the_classifier_gives_the_top_label_and_softmax_sigmoid_or_raw_scores(tmp_path: Path, built: Path) -> None:
    app = make_app(tmp_path, built)
    got = run_app(app, f"from slugslim_models import pipeline\ntexts = {TEXTS!r}\n"
                       "out = {p: pipeline('text-classification', model='clf/' + p)(texts, batch_size=2)\n"
                       "       for p in ('single_label_classification', 'multi_label_classification', 'regression')}\n"
                       "out['one'] = pipeline('sentiment-analysis', model='clf/single_label_classification')('dog')\n"
                       "print(json.dumps(out))\n")
    logits = by_hand(TEXTS, "mean") @ HEAD
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for problem, expected in (("single_label_classification", softmax),
                              ("multi_label_classification", 1 / (1 + np.exp(-logits))), ("regression", logits)):
        assert [r["label"] for r in got[problem]] == [LABELS[i] for i in expected.argmax(axis=1)], problem
        np.testing.assert_allclose([r["score"] for r in got[problem]], expected.max(axis=1), rtol=1e-5, err_msg=problem)
    assert len(got["one"]) == 1 and got["one"][0] == got["single_label_classification"][1]


def test_load_model_predicts_from_an_array_a_list_a_tuple_or_a_dict(tmp_path: Path, built: Path) -> None:
    app = make_app(tmp_path, built)
    x, y = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    got = run_app(app, f"x, y = np.array({x.tolist()}), np.array({y.tolist()})\n"
                       "one, two = m.load_model('models/one.pt'), m.load_model(os.path.abspath('models/two.pt2'))\n"
                       "a, b = one.predict(x), one.predict([x])\n"
                       "c, d, e = two.predict([x, y]), two.predict((x, y)), two.predict({'y': y, 'x': x})\n"
                       "lists = [[o.tolist() for o in r] for r in (c, d, e)]\n"
                       "print(json.dumps([one.backend, str(a.dtype), a.tolist(), b.tolist(), type(c).__name__,\n"
                       "                  *lists]))\n")
    backend, dtype, a, b, kind, c, d, e = got
    relu = np.maximum(x.astype(np.float32) @ WEIGHT, 0)
    assert (backend, dtype, kind) == ("onnxruntime", "float32", "tuple")
    np.testing.assert_allclose(a, relu, rtol=1e-5)
    assert b == a and c == d == e
    np.testing.assert_allclose(c, [x + y, x * y], rtol=1e-5)


def test_the_real_libraries_without_an_entry_or_without_onnxruntime(tmp_path: Path, built: Path) -> None:
    app = make_app(tmp_path, built)
    code = ("import sentence_transformers as st, transformers, torch\n"
            "e = m.SentenceEncoder('enc/mean', device='cpu')\n"
            "v = e.encode(['x'], batch_size=4, show_progress_bar=False)\n"
            "p = m.pipeline('text-classification', model='clf/regression', top_k=None)\n"
            "m.load_model('models/one.pt'); m.load_model('models/two.pt2')\n"
            "print(json.dumps([e.backend, str(v.dtype), v.tolist(), st.CALLS, transformers.CALLS, torch.CALLS]))\n")
    unconverted = [
        "sentence-transformers", "float32", [[0.5, 1.5]],
        [["init", "enc/mean", {"device": "cpu"}],
         ["encode", ["x"], {"batch_size": 4, "convert_to_numpy": True, "normalize_embeddings": False,
                            "show_progress_bar": False}]],
        [["text-classification", "clf/regression", {"top_k": None}]],
        [["jit", "models/one.pt", "cpu"], ["export", "models/two.pt2"]]]
    assert run_app(app, "sys.modules['onnxruntime'] = None  # not installed\n" + code) == unconverted
    assert run_app(app, "sys.modules['tokenizers'] = None\n" + code)[:5] == unconverted[:5]
    assert run_app(make_app(tmp_path / "none", built, {}), code) == unconverted


def test_eight_threads_share_one_session_and_get_the_same_answers(tmp_path: Path, built: Path) -> None:
    app = make_app(tmp_path, built)
    got = run_app(app, "import threading, onnxruntime as ort\nmade = []\nreal = ort.InferenceSession\n"
                       "def counting(*a, **k):\n    made.append(1)\n    return real(*a, **k)\n"
                       "ort.InferenceSession = counting\n"
                       "e = m.SentenceEncoder('enc/max')\nanswers = []\nstart = threading.Barrier(8)\n"
                       f"def use():\n    start.wait()\n    for _ in range(20):\n"
                       f"        answers.append(e.encode({TEXTS!r}, batch_size=2).tolist())\n"
                       "threads = [threading.Thread(target=use) for _ in range(8)]\n"
                       "[t.start() for t in threads]; [t.join() for t in threads]\n"
                       "print(json.dumps([len(made), len(answers), all(a == answers[0] for a in answers), "
                       "answers[0]]))\n")
    assert got[:3] == [1, 160, True]
    np.testing.assert_allclose(got[3], by_hand(TEXTS, "max"), rtol=1e-5, atol=1e-6)


def test_a_forked_worker_makes_its_own_session_and_gets_the_same_answers(tmp_path: Path, built: Path) -> None:
    app = make_app(tmp_path, built)
    code = ("import onnxruntime as ort\nmade = []\nreal = ort.InferenceSession\n"
            "def counting(*a, **k):\n    made.append(os.getpid())\n    return real(*a, **k)\n"
            "ort.InferenceSession = counting\n"
            f"e = m.SentenceEncoder('enc/mean')\nbefore = e.encode({TEXTS!r})\nparents = e.session\n"
            "pid = os.fork()  # gunicorn --preload: the master used the model before forking its workers\n"
            "if pid == 0:\n"
            f"    same = np.array_equal(e.encode({TEXTS!r}), before)\n"
            "    own = made[1:] == [os.getpid()] and e.session is not parents\n"
            "    os._exit(0 if same and own else 1 + same)\n"
            "print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), made == [os.getpid()],\n"
            f"                  e.session is parents, np.array_equal(e.encode({TEXTS!r}), before)]))\n")
    assert run_app(app, code, WEB_CONCURRENCY="1") == [0, True, True, True]


def test_intra_op_threads_are_the_cores_shared_by_web_concurrency(tmp_path: Path, built: Path) -> None:
    app = make_app(tmp_path, built)
    got = run_app(app, "import onnxruntime as ort\nout = []\nfor workers in ('1', '2', '64', 'many', ''):\n"
                       "    os.environ['WEB_CONCURRENCY'] = workers\n"
                       "    o = m.SentenceEncoder('enc/cls').session.get_session_options()\n"
                       "    out.append([o.intra_op_num_threads, o.inter_op_num_threads,\n"
                       "                o.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL])\n"
                       "print(json.dumps(out))\n")
    cores = len(os.sched_getaffinity(0))
    assert got == [[cores, 1, True], [max(1, cores // 2), 1, True], [1, 1, True], [cores, 1, True], [cores, 1, True]]


def test_model_files_outside_the_app_are_refused_and_keys_outside_it_are_not_looked_up(
        tmp_path: Path, built: Path) -> None:
    enc = runtime_models()["enc/mean"]
    outside = tmp_path / "outside"
    shutil.copytree(built / ".slugslim" / "onnx" / "enc", outside)
    refused = {"a": dict(enc, onnx="../outside/model.onnx"), "b": dict(enc, onnx=str(outside / "model.onnx")),
               "c": dict(enc, onnx="link/model.onnx"), "d": dict(enc, tokenizer="../outside/tokenizer.json"),
               "e": dict(enc, tokenizer="link/tokenizer.json"), "f": dict(enc, onnx=""),
               "models/t.pt": dict(runtime_models()["models/one.pt"], onnx="link/model.onnx"),
               "enc/mean": enc}
    app = make_app(tmp_path, built, refused)
    (app / "link").symlink_to(outside)
    got = run_app(app, "import sentence_transformers as st\nout = []\n"
                       "for key in 'abcdef':\n    try:\n        m.SentenceEncoder(key)\n"
                       "    except ValueError as e:\n        out.append(str(e))\n"
                       "try:\n    m.load_model('models/t.pt')\nexcept ValueError as e:\n    out.append(str(e))\n"
                       f"for key in ('../app/enc/mean', {str(outside)!r}, {str(app / 'enc' / 'mean')!r}):\n"
                       "    out.append(m.SentenceEncoder(key).backend)\n"
                       "print(json.dumps([out, [c[1] for c in st.CALLS if c[0] == 'init']]))\n")
    out, fallbacks = got
    errors, backends = out[:7], out[7:]
    assert all(e.startswith(".slugslim/runtime.json: ") for e in errors), errors
    assert errors[0].endswith("onnx '../outside/model.onnx' for a is not a path inside the app")
    assert errors[1].endswith(f"onnx {str(outside / 'model.onnx')!r} for b is not a path inside the app")
    assert errors[2].endswith("onnx 'link/model.onnx' for c leads out of the app")
    assert errors[3].endswith("tokenizer '../outside/tokenizer.json' for d is not a path inside the app")
    assert errors[4].endswith("tokenizer 'link/tokenizer.json' for e leads out of the app")
    assert errors[6].endswith("onnx 'link/model.onnx' for models/t.pt leads out of the app")
    # A key with '..' or outside the app is the real library's, whatever the manifest lists; inside, it is ours.
    assert backends == ["sentence-transformers", "sentence-transformers", "onnxruntime"]
    assert fallbacks == ["../app/enc/mean", str(outside)]


def test_both_loader_files_are_shipped_and_an_apps_own_file_of_either_name_stays(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours, own_onnx, own_models = (tmp_path / n for n in ("ours", "own-onnx", "own-models"))
    for app in (ours, own_onnx, own_models):
        app.mkdir()
    (own_onnx / "slugslim_onnx.py").write_text("MINE = 1\n")
    (own_models / "slugslim_models.py").write_text("MINE = 2\n")
    assert shipped.install_helper(ours) and capsys.readouterr().err == ""
    assert all((ours / n).read_bytes() == (BOOT / n).read_bytes() for n in shipped.HELPERS)
    assert shipped.install_helper(ours), "slugslim's own files of an earlier build are replaced"

    assert not shipped.install_helper(own_onnx)
    assert (own_onnx / "slugslim_onnx.py").read_text() == "MINE = 1\n"
    assert (own_onnx / "slugslim_models.py").read_bytes() == (BOOT / "slugslim_models.py").read_bytes()
    assert "your app has its own slugslim_onnx.py, so slugslim did not write its helper" in capsys.readouterr().err

    assert not shipped.install_helper(own_models)
    assert (own_models / "slugslim_models.py").read_text() == "MINE = 2\n"
    assert not (own_models / "slugslim_onnx.py").exists(), "it would import the app's module as slugslim's"
    assert "your app has its own slugslim_models.py" in capsys.readouterr().err
