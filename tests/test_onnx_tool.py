"""The torch-free half of the ONNX converter: which text models it takes, the samples, the comparison, check.

``onnx_source`` and ``compare_tool`` are imported as the slugslim modules they also are; ``onnx_tool.py``
runs as the script it is, with this Python (no torch, no onnxruntime): its check runs through a
``slugslim_models`` written into the build dir that serves numbers the test chooses, and one that
imports a module named ``torch``, as the real loader's fall-back does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slugslim.finish.runtime import compare_tool, onnx_source
from slugslim.finish.runtime.onnx_source import Failure

TOOL = Path(onnx_source.__file__).with_name("onnx_tool.py")
MINILM_CONFIG = {"architectures": ["BertModel"], "model_type": "bert", "max_position_embeddings": 512}
ST_MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
              {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
              {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]


def _write(root: Path, files: dict[str, Any]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return root


def _minilm(root: Path, **changes: Any) -> Path:
    files = {"config.json": MINILM_CONFIG, "modules.json": ST_MODULES, "sentence_bert_config.json":
             {"max_seq_length": 256}, "1_Pooling/config.json": {"pooling_mode_mean_tokens": True,
                                                                  "pooling_mode_cls_token": False}}
    return _write(root, {**files, **changes})


def test_a_sentence_transformers_dir_gives_its_pooling_normalize_and_max_seq_length(tmp_path: Path) -> None:
    model = onnx_source.read_text_model(_minilm(tmp_path), "sentence-transformers", "all-MiniLM-L6-v2")
    assert (model.task, model.architecture, model.pooling, model.normalize, model.max_seq_length) == (
        "sentence-embedding", "BertModel", "mean", True, 256)
    assert onnx_source.max_length(model, 512, 512) == 256


def test_an_older_layout_with_0_transformer_and_the_new_pooling_mode_key(tmp_path: Path) -> None:
    modules = [{"path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
               {"path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.Pooling"}]
    _write(tmp_path, {"modules.json": modules, "0_Transformer/config.json": {**MINILM_CONFIG, "model_type": "mpnet"},
                      "1_Pooling/config.json": {"pooling_mode": "mean_sqrt_len_tokens"}})
    model = onnx_source.read_text_model(tmp_path, "sentence-transformers", "old")
    assert (model.directory, model.pooling, model.normalize, model.max_seq_length) == (
        tmp_path / "0_Transformer", "mean_sqrt_len", False, 0)
    # No max_seq_length: the tokenizer's, else the positions (RoBERTa's 514), at most 512.
    assert onnx_source.max_length(model, int(1e30), 514) == 512 and onnx_source.max_length(model, 128, 514) == 128


@pytest.mark.parametrize(("changes", "reason"), [
    ({"modules.json": [*ST_MODULES, {"path": "3_Dense", "type": "sentence_transformers.models.Dense"}]},
     "its module sentence_transformers.models.Dense (3_Dense) would still need torch"),
    ({"config.json": {"architectures": ["GPT2Model"], "model_type": "gpt2"}}, "unsupported architecture GPT2Model"),
    ({"1_Pooling/config.json": {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}},
     "its Pooling module concatenates mean_tokens + max_tokens"),
    ({"1_Pooling/config.json": {"pooling_mode": "weightedmean"}}, "Pooling module's mode 'weightedmean' is not"),
    ({"modules.json": "{"}, "modules.json cannot be read"),
])
def test_a_sentence_transformers_dir_is_refused_with_the_reason_named(
        tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(Failure, match=reason.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        onnx_source.read_text_model(_minilm(tmp_path, **changes), "sentence-transformers", "m")


@pytest.mark.parametrize(("architecture", "model_type", "task"), [
    ("BertForSequenceClassification", "bert", "text-classification"),
    ("XLMRobertaForSequenceClassification", "xlm-roberta", "text-classification"),
    ("DistilBertModel", "distilbert", "sentence-embedding"),
    ("RobertaForMaskedLM", "roberta", "sentence-embedding"),
    ("BertForTokenClassification", "bert", "unsupported architecture BertForTokenClassification"),
    ("GPT2LMHeadModel", "gpt2", "unsupported architecture GPT2LMHeadModel"),
    ("LlamaForSequenceClassification", "llama", "unsupported architecture LlamaForSequenceClassification"),
])
def test_a_transformers_checkpoint_is_a_classifier_an_encoder_or_refused_by_its_architecture(
        tmp_path: Path, architecture: str, model_type: str, task: str) -> None:
    _write(tmp_path, {"config.json": {"architectures": [architecture], "model_type": model_type}})
    if task.startswith("unsupported"):
        with pytest.raises(Failure, match=task):
            onnx_source.read_text_model(tmp_path, "transformers", "m")
    else:
        model = onnx_source.read_text_model(tmp_path, "transformers", "m")
        assert (model.task, model.pooling, model.normalize, model.sentence_transformers) == (
            task, "mean", False, False)


def test_texts_come_from_a_txt_or_a_json_list_else_the_built_in_set(tmp_path: Path) -> None:
    _write(tmp_path, {"samples/a.txt": "first line\n\n  \nsecond, café\n", "samples/b.json": ["x", "y z"]})
    assert onnx_source.read_texts(tmp_path, "samples/a.txt") == ["first line", "second, café"]
    assert onnx_source.read_texts(tmp_path, "samples/b.json") == ["x", "y z"]
    assert onnx_source.read_texts(tmp_path, "") == onnx_source.TEXTS and len(set(onnx_source.TEXTS)) >= 16
    # One runtime.samples for an app with both kinds: arrays are for its tensor models, texts for its text models.
    assert (onnx_source.text_samples("s.npz"), onnx_source.text_samples("s.txt")) == ("", "s.txt")
    assert (onnx_source.array_samples("s.json"), onnx_source.array_samples("s.npy")) == ("", "s.npy")


@pytest.mark.parametrize(("files", "given", "reason"), [
    ({"s.json": {"a": 1}}, "s.json", "runtime.samples s.json: the JSON is not a list of strings"),
    ({"s.json": "[1, 2"}, "s.json", "runtime.samples s.json: cannot be read"),
    ({"s.txt": "\n\n"}, "s.txt", "runtime.samples s.txt: it has no texts"),
    ({}, "missing.txt", "runtime.samples missing.txt: no such file in the app"),
    ({}, "../outside.txt", "runtime.samples ../outside.txt: not a path inside the app"),
    ({"s.npy": ""}, "s.npy", r"a text model takes a \.txt \(one text a line\) or a \.json list"),
])
def test_text_samples_that_cannot_be_used_say_why(tmp_path: Path, files: dict[str, Any], given: str,
                                                  reason: str) -> None:
    app = _write(tmp_path / "app", files)
    (tmp_path / "outside.txt").write_text("x\n")
    with pytest.raises(Failure, match=reason):
        onnx_source.read_texts(app, given)


def test_arrays_come_from_a_npy_for_one_input_or_a_npz_by_name_or_position(tmp_path: Path) -> None:
    x, mask = np.ones((3, 4), np.float32), np.zeros((3, 2), np.int64)
    np.save(tmp_path / "one.npy", x)
    np.savez(tmp_path / "named.npz", mask=mask, x=x)
    np.savez(tmp_path / "positional.npz", x, mask)
    assert [a.shape for a in onnx_source.read_arrays(np, tmp_path, "one.npy", ["x"], "m")] == [(3, 4)]
    for given in ("named.npz", "positional.npz"):
        got = onnx_source.read_arrays(np, tmp_path, given, ["x", "mask"], "m")
        assert [(a.shape, a.dtype) for a in got] == [((3, 4), np.float32), ((3, 2), np.int64)]


@pytest.mark.parametrize(("given", "names", "reason"), [
    ("one.npy", ["x", "mask"], r"one array, but models/net.pt takes 2 inputs \(x, mask\); give a \.npz"),
    ("rows.npz", ["x", "mask"], "the arrays have different numbers of rows"),
    ("rows.npz", ["x", "mask", "z"], r"no array named 'z' or 'arr_2' for input 2 of models/net.pt \(it has x, mask\)"),
    ("texts.txt", ["x"], r"models/net.pt takes a \.npy or \.npz of inputs"),
    ("bad.npy", ["x"], r"bad.npy: cannot be read as \.npy/\.npz"),
])
def test_arrays_that_cannot_be_used_say_why(tmp_path: Path, given: str, names: list[str], reason: str) -> None:
    np.save(tmp_path / "one.npy", np.ones((3, 4)))
    np.savez(tmp_path / "rows.npz", x=np.ones((3, 4)), mask=np.ones((2, 4)))
    (tmp_path / "texts.txt").write_text("a\n")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(Failure, match=reason):
        onnx_source.read_arrays(np, tmp_path, given, names, "models/net.pt")


def test_random_inputs_fill_the_open_batch_with_the_count_and_are_seeded() -> None:
    specs: list[tuple[str, tuple[int | None, ...], str]] = [("x", (None, 3, None), "float32"),
                                                            ("ids", (None,), "int64")]
    first, second = (onnx_source.random_arrays(np, specs, 5, 0) for _ in range(2))
    assert [(a.shape, str(a.dtype)) for a in first] == [((5, 3, 8), "float32"), ((5,), "int64")]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(Failure, match=r"input 'c' is complex64: set runtime\.samples"):
        onnx_source.random_arrays(np, [("c", (2,), "complex64")], 5, 0)


def test_cosine_is_the_smallest_over_rows() -> None:
    want = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    got = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # the same, 45 degrees off, both zero
    assert compare_tool.cosine(np, got, want) == pytest.approx(np.sqrt(0.5))
    assert compare_tool.cosine(np, want, want) == 1.0
    assert compare_tool.cosine(np, np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]])) == 0.0
    with pytest.raises(ValueError, match=r"the converted model gave shape \(1, 2\), the original model \(2, 2\)"):
        compare_tool.cosine(np, want[:1], want[:2])


def test_top1_forgives_a_near_tie_within_the_tolerance_and_the_exact_share_does_not() -> None:
    want = np.array([[0.50, 0.49, 0.01], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    # Row 0 flips within 0.02 of the top; row 2 picks a class 0.3 below it.
    assert compare_tool.top1(np, np.array([1, 0, 0]), want, 0.02) == pytest.approx((2 / 3, 1 / 3))
    compared = compare_tool.compare(np, [want + 0.001], [want], 0.02)
    assert compared["classifier"] and compared["top1"] == 1.0 and compared["max_abs"] == pytest.approx(0.001)
    # Logits are no probabilities: top-1 is still measured, but it is no classifier's.
    assert not compare_tool.compare(np, [want * 10], [want * 10 - 3], 0.02)["classifier"]


LOADER = """
import numpy as np
if {fall_back} == "on import":
    import torch
ROWS = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
class SentenceEncoder:
    def __init__(self, key):
        if {fall_back} == "encoder":
            import torch
    def encode(self, texts): return ROWS[:len(texts)] + np.array([0.0, {skew}], dtype=np.float32)
def pipeline(task, model):
    return lambda texts: [{{"label": "pos", "score": 0.9}}, {{"label": "neg", "score": 0.5}}]
"""


def _check(tmp_path: Path, fall_back: str = "", skew: float = 0.0) -> list[dict[str, Any]]:
    # A stand-in onnxruntime distribution (its version is all check reads of it) and a module named torch.
    build = _write(tmp_path / "build", {"slugslim_models.py": LOADER.format(fall_back=repr(fall_back), skew=skew),
                                        "torch.py": "", "onnxruntime-1.32.0.dist-info/METADATA":
                                        "Metadata-Version: 2.1\nName: onnxruntime\nVersion: 1.32.0\n"})
    np.savez(tmp_path / "emb.npz", task=np.array("sentence-embedding"), texts=np.array(["a", "b"]),
             out_0=np.array([[1.0, 0.0], [0.0, 1.0]]))
    np.savez(tmp_path / "cls.npz", task=np.array("text-classification"), texts=np.array(["a", "b"]),
             labels=np.array(["neg", "pos"]), out_0=np.array([[0.1, 0.9], [0.49, 0.51]]))
    request = {"build_dir": str(build), "tolerance": {"max_abs": 0.05, "top1": 0.99, "cosine": 0.999},
               "models": [{"key": "emb", "reference": str(tmp_path / "emb.npz")},
                          {"key": "cls", "reference": str(tmp_path / "cls.npz")}]}
    (tmp_path / "request.json").write_text(json.dumps(request))
    subprocess.run([sys.executable, str(TOOL), "check", "request.json", "result.json"], cwd=tmp_path, check=True)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["onnxruntime"] == ("" if fall_back == "on import" else "1.32.0")
    return list(result["models"])


def test_check_passes_the_loaders_outputs_within_tolerance_and_fails_a_skewed_one(tmp_path: Path) -> None:
    emb, cls = _check(tmp_path / "close")
    assert (emb["ok"], emb["cosine"], emb["classifier"]) == (True, 1.0, False)
    # Row 1 is a tie the loader broke the other way, within max_abs: it agrees.
    assert (cls["ok"], cls["top1"], cls["top1_exact"], cls["classifier"]) == (True, 1.0, 0.5, True)
    assert cls["max_abs"] == pytest.approx(0.01)
    emb, _ = _check(tmp_path / "skewed", skew=0.5)
    assert not emb["ok"] and emb["error"].startswith("cosine 0.89443 < 0.999")


def test_check_fails_a_model_the_loader_served_with_torch(tmp_path: Path) -> None:
    emb, cls = _check(tmp_path / "encoder", fall_back="encoder")
    assert not emb["ok"] and emb["error"] == "slugslim_models served it with torch, not ONNX Runtime"
    assert cls["ok"]  # its pipeline imported nothing (torch was there already: the first model's failure)
    # A loader that imports torch itself would keep torch in every process: nothing passes.
    assert [(m["ok"], m["error"]) for m in _check(tmp_path / "on-import", fall_back="on import")] == [
        (False, "loading slugslim_models failed: RuntimeError: importing slugslim_models imported torch")] * 2


def test_the_tool_says_how_to_run_it() -> None:
    usage = subprocess.run([sys.executable, str(TOOL), "nonsense"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage: onnx_tool.py convert|check" in usage.stderr
