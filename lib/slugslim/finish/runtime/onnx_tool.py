"""Convert an app's PyTorch and Hugging Face models to ONNX, and check the converted ones, on the app's Python.

    <app python> onnx_tool.py convert REQUEST.json RESULT.json   (needs torch; onnx, onnxscript on PYTHONPATH)
    <app python> onnx_tool.py check   REQUEST.json RESULT.json   (needs onnxruntime, tokenizers)

A standalone script like ``litert_tool.py``: stdlib and numpy, plus the app's torch (and
transformers, sentence-transformers) or the shipped ``slugslim_models`` loader; it never imports
the slugslim package. Its siblings ``onnx_source.py`` (what is taken, the samples; torch-free),
``onnx_export.py`` (the exporters, torch's references) and ``compare_tool.py`` come from the
script's own directory. It writes RESULT.json whenever it could run, even if every model failed
(each failure with its reason); it exits non-zero only when it could not run at all.

convert, per model: read what it is (a refusal names the architecture or the module), make the
samples (``runtime.samples`` when it is a ``.txt``/``.json``, else the built-in sentences, for text
models; ``runtime.samples`` when it is a ``.npy``/``.npz``, else random inputs, for tensor models),
export it to ``<out_dir>/<name>/model.onnx`` (with the model's ``tokenizer.json`` beside it for
text models), quantize it if asked, move its weights into ``model.onnx.data`` beside it, and save
the inputs and torch's outputs in an .npz in the work dir for ``check``. One failing model does not stop the others.

check, per model: run the inputs through ``slugslim_models`` from the build dir, as the app will
(``SentenceEncoder``, ``pipeline("text-classification")`` or ``load_model``), and compare with
torch's outputs: the smallest cosine of embeddings; tie-aware top-1 agreement and the largest
score difference of classifiers; max_abs and top-1 of tensor models. A model whose check imported
torch (or transformers, sentence-transformers) was not served by ONNX Runtime, and fails.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# From this script's directory, first on sys.path (mypy, checking the slugslim package, does not look there).
import common_tool  # type: ignore[import-not-found]
import compare_tool  # type: ignore[import-not-found]
import onnx_export  # type: ignore[import-not-found]
import onnx_source  # type: ignore[import-not-found]

TEXT_KINDS = ("sentence-transformers", "transformers")
# Imported by the loader only when it fell back to the original library.
TORCH_MODULES = ("torch", "transformers", "sentence_transformers")


def _tree_bytes(target: Path) -> int:
    if target.is_file():
        return target.stat().st_size
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink())


def _name(key: str, taken: set[str]) -> str:
    """The model's directory under out_dir: its key made a file name, unique among this run's."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", key.replace("/", "--")).strip("-.") or "model"
    name = next(n for n in [stem, *(f"{stem}-{i}" for i in range(2, len(taken) + 3))] if n not in taken)
    taken.add(name)
    return name


def _reason(exc: BaseException, stage: str) -> tuple[str, str]:
    """(reason, error): a Failure's message alone; else the stage, the exception and its traceback tail."""
    if isinstance(exc, onnx_source.Failure):
        return str(exc), ""
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    return f"{stage} failed: {type(exc).__name__}: {first}"[:300], tail[-3000:]


def _arrays_for(np: Any, request: dict[str, Any], spec: dict[str, Any]) -> Any:
    """The samples of a tensor model, given its input names (and, from a .pt2, their shapes and dtypes)."""
    build_dir, what = Path(request["build_dir"]), str(spec["key"])
    given = onnx_source.array_samples(str(request.get("samples") or ""))

    def arrays_for(names: list[str], specs: list[tuple[str, tuple[int | None, ...], str]] | None = None) -> Any:
        if given:
            arrays = onnx_source.read_arrays(np, build_dir, given, names, what)
            return [a.astype(s[2]) for a, s in zip(arrays, specs, strict=True)] if specs else arrays
        if specs is None:
            raise onnx_source.Failure(f"a TorchScript file does not say what inputs {what} takes: set "
                                      "runtime.samples to a .npy or .npz of inputs for it")
        return onnx_source.random_arrays(np, specs, int(request.get("sample_count") or 32),
                                         int(request.get("seed") or 0))

    return arrays_for


def _export(torch: Any, np: Any, request: dict[str, Any], spec: dict[str, Any],
            target: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Export one model to ``target/model.onnx``: (its entry, the reference arrays)."""
    source, kind, key = Path(spec["source"]), str(spec["kind"]), str(spec["key"])
    onnx = target / "model.onnx"
    if kind in TEXT_KINDS:
        model = onnx_source.read_text_model(source, kind, key)
        given = onnx_source.text_samples(str(request.get("samples") or ""))
        texts = onnx_source.read_texts(Path(request["build_dir"]), given)
        entry, reference = onnx_export.text(torch, np, model, source, texts, onnx, target / "tokenizer.json")
        return entry, {"texts": np.array(texts, dtype=str), **reference}
    if kind not in ("torchscript", "export"):
        raise onnx_source.Failure(f"{key}: a model of kind {kind!r} is not one the ONNX conversion takes")
    export = onnx_export.torchscript if kind == "torchscript" else onnx_export.exported
    entry, inputs, outputs = export(torch, np, source, _arrays_for(np, request, spec), onnx, key)
    arrays = {f"in_{i}": a for i, a in enumerate(inputs)} | {f"out_{i}": o for i, o in enumerate(outputs)}
    return entry, arrays


def convert_one(torch: Any, np: Any, request: dict[str, Any], index: int, spec: dict[str, Any],
                taken: set[str]) -> dict[str, Any]:
    build_dir, key = Path(request["build_dir"]), str(spec["key"])
    quantize = str(request.get("quantize") or "none")
    result: dict[str, Any] = {"key": key, "ok": False, "reason": "", "error": "", "onnx": "", "onnx_bytes": 0,
                              "original_bytes": 0, "seconds": 0.0, "entry": {}, "reference": ""}
    start = time.monotonic()
    stage, target = "conversion", None
    try:
        result["original_bytes"] = _tree_bytes(Path(spec["source"]))
        relative = f"{str(request['out_dir']).rstrip('/')}/{_name(key, taken)}"
        target = build_dir / relative
        target.mkdir(parents=True, exist_ok=True)
        work_dir = Path(request["work_dir"])
        work_dir.mkdir(parents=True, exist_ok=True)
        entry, arrays = _export(torch, np, request, spec, target)
        if quantize == "dynamic":
            stage = "quantize"
            float32 = work_dir / f"{index:03d}-float32.onnx"
            (target / "model.onnx").replace(float32)
            onnx_export.quantize(float32, target / "model.onnx")
        reference = work_dir / f"{index:03d}-reference.npz"
        np.savez(reference, task=np.array(entry["task"]), **arrays)
        entry.update(onnx=f"{relative}/model.onnx", quantize=quantize)
        weights = onnx_export.external_weights(target / "model.onnx")
        if weights is not None:
            entry["onnx_data"] = f"{relative}/{weights.name}"
        if "pad_id" in entry:
            entry["tokenizer"] = f"{relative}/tokenizer.json"
        onnx_bytes = _tree_bytes(target / "model.onnx") + (weights.stat().st_size if weights is not None else 0)
        result.update(ok=True, onnx=entry["onnx"], onnx_bytes=onnx_bytes, entry=entry, reference=str(reference))
    except Exception as exc:
        result["reason"], result["error"] = _reason(exc, stage)
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - start, 3)
    return result


def convert(request: dict[str, Any]) -> dict[str, Any]:
    np = importlib.import_module("numpy")
    torch = importlib.import_module("torch")
    taken: set[str] = set()
    models = [convert_one(torch, np, request, i, spec, taken) for i, spec in enumerate(request["models"])]
    return {"python": platform.python_version(), "torch": str(torch.__version__), "models": models}


def _measure(np: Any, loader: Any, key: str, reference: Any, tie: float) -> dict[str, Any]:
    """Run the reference's inputs through the loader; the differences from torch's outputs."""
    task = str(reference["task"])
    if task == "sentence-embedding":
        got = loader.SentenceEncoder(key).encode([str(t) for t in reference["texts"]])
        max_abs, max_rel = compare_tool.differences(np, got, reference["out_0"])
        return {"cosine": compare_tool.cosine(np, got, reference["out_0"]), "max_abs": max_abs, "max_rel": max_rel}
    if task == "text-classification":
        labels, want = [str(x) for x in reference["labels"]], reference["out_0"]
        answers = loader.pipeline("text-classification", model=key)([str(t) for t in reference["texts"]])
        chosen = np.array([labels.index(a["label"]) for a in answers])
        scores = np.array([float(a["score"]) for a in answers])
        max_abs, max_rel = compare_tool.differences(np, scores, want[np.arange(len(chosen)), chosen])
        agree, exact = compare_tool.top1(np, chosen, want, tie)
        return {"max_abs": max_abs, "max_rel": max_rel, "top1": agree, "top1_exact": exact, "classifier": True}
    count = sum(k.startswith("in_") for k in reference.files)
    inputs = [reference[f"in_{i}"] for i in range(count)]
    want = [reference[f"out_{i}"] for i in range(sum(k.startswith("out_") for k in reference.files))]
    got = loader.load_model(key).predict(inputs[0] if count == 1 else inputs)
    got_list = list(got) if isinstance(got, (list, tuple)) else [got]
    if len(got_list) != len(want):
        raise ValueError(f"ONNX Runtime gave {len(got_list)} outputs, torch {len(want)}")
    return dict(compare_tool.compare(np, got_list, want, tie))


def _failed(measured: dict[str, Any], tolerance: dict[str, Any]) -> list[str]:
    failed = []
    if measured.get("cosine") is not None and measured["cosine"] < float(tolerance["cosine"]):
        failed.append(f"cosine {measured['cosine']:.5f} < {tolerance['cosine']}")
    elif measured.get("cosine") is None and measured["max_abs"] > float(tolerance["max_abs"]):
        failed.append(f"max_abs {measured['max_abs']:.3g} > {tolerance['max_abs']}")
    if measured.get("classifier") and measured["top1"] < float(tolerance["top1"]):
        failed.append(f"top-1 agreement {measured['top1']:.3f} < {tolerance['top1']}")
    return failed


def _unchecked(key: str, error: str) -> dict[str, Any]:
    return {"key": key, "ok": False, "cosine": None, "max_abs": None, "max_rel": None, "top1": None,
            "top1_exact": None, "classifier": False, "seconds": 0.0, "error": error}


def check_one(np: Any, loader: Any, tolerance: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    entry = _unchecked(str(spec["key"]), "")
    start = time.monotonic()
    before = set(sys.modules)
    try:
        with np.load(spec["reference"], allow_pickle=False) as reference:
            entry.update(_measure(np, loader, entry["key"], reference, float(tolerance["max_abs"])))
        fell_back = sorted(m for m in TORCH_MODULES if m in sys.modules and m not in before)
        failed = _failed(entry, tolerance)
        if fell_back:
            failed.insert(0, f"slugslim_models served it with {', '.join(fell_back)}, not ONNX Runtime")
        entry.update(ok=not failed, error="; ".join(failed))
    except Exception as exc:
        entry["error"] = _reason(exc, "check")[0]
    entry["seconds"] = round(time.monotonic() - start, 3)
    return entry


def check(request: dict[str, Any]) -> dict[str, Any]:
    build_dir = str(request["build_dir"])
    sys.path.insert(0, build_dir)
    os.chdir(build_dir)
    before = set(sys.modules)
    try:
        version = importlib.metadata.version("onnxruntime")
        np = importlib.import_module("numpy")
        loader = importlib.import_module("slugslim_models")
        imported = sorted(m for m in TORCH_MODULES if m in sys.modules and m not in before)
        if imported:
            raise RuntimeError(f"importing slugslim_models imported {', '.join(imported)}")
    except Exception as exc:
        error = _reason(exc, "loading slugslim_models")[0]
        return {"onnxruntime": "", "models": [_unchecked(str(m["key"]), error) for m in request["models"]]}
    tolerance = dict(request["tolerance"])
    return {"onnxruntime": version, "models": [check_one(np, loader, tolerance, m) for m in request["models"]]}


if __name__ == "__main__":
    sys.exit(common_tool.main(sys.argv, convert, check))
