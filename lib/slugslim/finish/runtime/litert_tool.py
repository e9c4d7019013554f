"""Convert an app's TensorFlow models to LiteRT, and check the converted ones, on the app's own Python.

    <app python> litert_tool.py convert REQUEST.json RESULT.json   (needs tensorflow)
    <app python> litert_tool.py check   REQUEST.json RESULT.json   (needs ai_edge_litert)

A standalone script: stdlib and numpy, plus TensorFlow or the shipped ``slugslim_models`` loader.
It never imports the slugslim package, which the app's Python does not have. It writes RESULT.json
whenever it could run, even if every model failed (each failure carries its reason); it exits
non-zero only when it could not run at all.

convert, per model: load it in TensorFlow (Keras files with ``runtime.custom_objects``), make the
sample inputs (the app's ``.npy``/``.npz``, else seeded random inputs of the input signature),
run the original model on them, convert it with builtin ops only, and save the inputs and the
reference outputs for ``check``. A Keras model is converted through a function whose inputs are
``in_0..`` and outputs ``out_0..`` in the model's order, so the loader maps names without guessing.

check, per model: load it through ``slugslim_models.load_model`` from the build dir, as the app
will, and compare its predictions with the references: the largest absolute difference, the
largest difference relative to the output's largest magnitude, and the share of rows whose top-1
class agrees (``compare_tool``, shared with ``onnx_tool.py``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

# From this script's directory, first on sys.path (mypy, checking the slugslim package, does not look there).
import common_tool  # type: ignore[import-not-found]
import compare_tool  # type: ignore[import-not-found]

# A dimension the signature leaves open (other than the batch) gets this size in random samples.
DYNAMIC_SIZE = 8
_FLEX_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


class Failure(Exception):
    """A model that cannot be shipped on LiteRT, with the reason code of the convert result."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _flatten(value: Any) -> tuple[str, list[str], list[Any]]:
    """(kind, names, values) of a Keras input or output structure; dicts in sorted key order."""
    if isinstance(value, dict):
        names = sorted(value)
        return "dict", names, [value[n] for n in names]
    if isinstance(value, (list, tuple)):
        return "list", [str(i) for i in range(len(value))], list(value)
    return "single", ["0"], [value]


class KerasModel:
    """A .keras/.h5 file loaded by Keras: its inputs, a reference run, and its converter."""

    def __init__(self, tf: Any, file: Path, custom_objects: Any) -> None:
        keras = importlib.import_module("keras")
        self.tf = tf
        self.model = keras.models.load_model(file, custom_objects=custom_objects, compile=False)
        try:
            structure = self.model.input
        except (AttributeError, ValueError):  # a loaded Sequential has .inputs only
            inputs = getattr(self.model, "inputs", None)
            if not inputs:
                raise Failure("load", "the model has no input signature (a subclassed model never built?)") from None
            structure = inputs[0] if len(inputs) == 1 else list(inputs)
        self.input_kind, keys, tensors = _flatten(structure)
        names = keys if self.input_kind == "dict" else [str(t.name) for t in tensors]
        self.inputs = [(n, tuple(t.shape), str(t.dtype)) for n, t in zip(names, tensors, strict=True)]
        self.signature = "serving_default"

    def _structure(self, values: list[Any]) -> Any:
        if self.input_kind == "dict":
            return dict(zip([n for n, _, _ in self.inputs], values, strict=True))
        return list(values) if self.input_kind == "list" else values[0]

    def run(self, arrays: list[Any]) -> Any:
        return self.model.predict(self._structure(arrays), verbose=0)

    def converter(self) -> tuple[Any, list[str], list[str]]:
        tf = self.tf
        specs = [tf.TensorSpec(shape, dtype, name=f"in_{i}") for i, (_, shape, dtype) in enumerate(self.inputs)]

        @tf.function  # type: ignore[untyped-decorator]
        def serve(*args: Any) -> dict[str, Any]:
            _, _, outputs = _flatten(self.model(self._structure(list(args)), training=False))
            return {f"out_{i}": y for i, y in enumerate(outputs)}

        concrete = serve.get_concrete_function(*specs)
        tensors = [f"out_{i}" for i in range(len(concrete.structured_outputs))]
        # The converter freezes what the trackable object holds. A Keras 3 model does not expose its
        # tf.Variables to TensorFlow's tracking (passing it converts to NaN), so hold them in a tf.Module.
        holder = tf.Module()
        holder.weights = [getattr(v, "value", v) for v in self.model.variables]
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
        return converter, [f"in_{i}" for i in range(len(specs))], tensors


class SavedModel:
    """A SavedModel directory: its serving signature, a reference run, and its converter."""

    def __init__(self, tf: Any, directory: Path) -> None:
        self.tf = tf
        self.directory = directory
        self.loaded = tf.saved_model.load(str(directory))
        signatures = self.loaded.signatures
        if not signatures:
            raise Failure("load", "the SavedModel has no serving signature (save it with signatures=...)")
        self.signature = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        self.function = signatures[self.signature]
        specs = self.function.structured_input_signature[1]
        self.inputs = [(n, tuple(specs[n].shape), specs[n].dtype.name) for n in sorted(specs)]

    def run(self, arrays: list[Any]) -> Any:
        out = self.function(**{n: self.tf.constant(a) for (n, _, _), a in zip(self.inputs, arrays, strict=True)})
        return out[next(iter(out))] if len(out) == 1 else dict(out)

    def converter(self) -> tuple[Any, list[str], list[str]]:
        converter = self.tf.lite.TFLiteConverter.from_saved_model(str(self.directory), signature_keys=[self.signature])
        return converter, [n for n, _, _ in self.inputs], sorted(self.function.structured_outputs)


def _inside(build_dir: Path, relative: str, reason: str) -> Path:
    target = build_dir / relative
    if not target.resolve().is_relative_to(build_dir.resolve()):
        raise Failure(reason, f"{relative}: not a path inside the app")
    return target


def samples(np: Any, request: dict[str, Any], build_dir: Path, model: Any, model_path: str) -> tuple[list[Any], str]:
    """The sample inputs, in model input order, and how they were made."""
    given = str(request.get("samples") or "")
    if not given:
        count, seed = int(request.get("sample_count", 16)), int(request.get("seed", 0))
        rng = np.random.default_rng(seed)
        arrays, opened = [], []
        for name, shape, dtype in model.inputs:
            if any(d is None for d in shape[1:]):
                opened.append(name)
            size = tuple(count if i == 0 and d is None else d or DYNAMIC_SIZE for i, d in enumerate(shape))
            array = common_tool.random_array(np, rng, dtype, size)
            if array is None:
                raise Failure("samples", f"input {name!r} is {dtype}: give runtime.samples (.npy or .npz) for it")
            arrays.append(array)
        how = f"random {count}, seed {seed}"
        if opened:
            how += f"; dynamic dimensions set to {DYNAMIC_SIZE} for input(s) {', '.join(opened)}"
        return arrays, how
    file = _inside(build_dir, given, "samples")
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Failure("samples", f"{given}: cannot be read as .npy/.npz: {exc}") from exc
    names = [name for name, _, _ in model.inputs]
    if isinstance(loaded, np.ndarray):
        if len(names) != 1:
            raise Failure("samples", f"{given}: one array, but {model_path} takes {len(names)} inputs "
                          f"({', '.join(names)}); give a .npz with one array per input")
        found = {names[0]: ("the array", loaded)}
    else:
        found = {}
        for i, name in enumerate(names):
            key = name if name in loaded.files else f"arr_{i}"
            if key not in loaded.files:
                raise Failure("samples", f"{given}: no array named {name!r} or {key!r} for input {i} of {model_path}"
                              f" (it has {', '.join(loaded.files) or 'none'})")
            found[name] = (f"array {key!r}", loaded[key])
    arrays = []
    for name, shape, dtype in model.inputs:
        label, array = found[name]
        fits = array.ndim == len(shape) and all(d is None or d == a for d, a in zip(shape, array.shape, strict=True))
        if not fits:
            wanted = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
            raise Failure("samples", f"{given}: {label} has shape {tuple(array.shape)}, but {model_path} "
                          f"takes {wanted} for input {name!r}")
        arrays.append(array.astype(dtype))
    if len({a.shape[0] for a in arrays}) > 1:
        raise Failure("samples", f"{given}: the arrays have different numbers of rows")
    return arrays, given


def tflite_bytes(tf: Any, converter: Any, quantize: str) -> bytes:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("dynamic", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return bytes(converter.convert())
    except Exception as exc:
        ops = sorted(set(_FLEX_OP.findall(str(exc))))
        if ops:
            raise Failure("flex", "needs TensorFlow ops that LiteRT's builtin set lacks: " + ", ".join(ops)) from exc
        raise


def _target(build_dir: Path, relative: str, kind: str, taken: set[str]) -> str:
    """Where the .tflite goes: next to the model, unless the app has a file there or another model took the name."""
    pure = PurePosixPath(relative)
    stem = pure.with_suffix("") if kind == "keras" else pure
    runtime = build_dir / ".slugslim" / "runtime.json"
    shipped = runtime.read_text(encoding="utf-8") if runtime.is_file() else ""
    names = [f"{stem}.tflite", f"{stem}.slugslim.tflite"] + [f"{stem}.slugslim-{n}.tflite" for n in range(len(taken))]
    # A name is free unless another model took it, or the app has a file there that no earlier run wrote.
    name = next(n for n in names if n not in taken and (f'"{n}"' in shipped or not (build_dir / n).exists()))
    taken.add(name)
    return name


def _tree_bytes(target: Path) -> int:
    if target.is_file():
        return target.stat().st_size
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink())


def _message(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = " / ".join(lines[:12]) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:2000]}" if not isinstance(exc, Failure) else text[:2000]


def convert_one(tf: Any, np: Any, request: dict[str, Any], index: int, spec: dict[str, Any],
                custom_objects: Any, taken: set[str]) -> dict[str, Any]:
    build_dir = Path(request["build_dir"])
    relative, kind = str(spec["path"]), str(spec["kind"])
    quantize = str(request.get("quantize") or "dynamic")
    entry: dict[str, Any] = {"path": relative, "kind": kind, "ok": False, "reason": "", "error": "", "tflite": "",
                             "original_bytes": 0, "tflite_bytes": 0, "quantize": quantize, "seconds": 0.0,
                             "samples": "", "reference": "", "loader": {}}
    start = time.monotonic()
    stage = "load"
    try:
        source = _inside(build_dir, relative, "load")
        entry["original_bytes"] = _tree_bytes(source)
        if isinstance(custom_objects, Failure) and kind == "keras":
            raise custom_objects
        model = KerasModel(tf, source, custom_objects) if kind == "keras" else SavedModel(tf, source)
        stage = "samples"
        inputs, entry["samples"] = samples(np, request, build_dir, model, relative)
        stage = "reference"
        output_kind, output_names, outputs = _flatten(model.run(inputs))
        stage = "convert"
        converter, input_tensors, output_tensors = model.converter()
        if len(output_tensors) != len(outputs):
            raise Failure("convert", f"the model gives {len(outputs)} outputs but its signature {len(output_tensors)}")
        data = tflite_bytes(tf, converter, quantize)
        tflite = _target(build_dir, relative, kind, taken)
        (build_dir / tflite).write_bytes(data)
        work_dir = Path(request["work_dir"])
        work_dir.mkdir(parents=True, exist_ok=True)
        reference = work_dir / f"{index:03d}-{PurePosixPath(relative).name}.npz"
        arrays = {f"in_{i}": a for i, a in enumerate(inputs)}
        arrays.update({f"out_{i}": np.asarray(y) for i, y in enumerate(outputs)})
        np.savez(reference, **arrays)
        entry.update(ok=True, tflite=tflite, tflite_bytes=len(data), reference=str(reference), loader={
            "format": 1, "tflite": tflite, "signature": model.signature, "quantize": quantize,
            "inputs": [{"name": n, "tensor": t} for (n, _, _), t in zip(model.inputs, input_tensors, strict=True)],
            "outputs": {"kind": output_kind, "names": output_names, "tensors": output_tensors},
        })
    except Failure as exc:
        entry.update(reason=exc.reason, error=_message(exc))
    except Exception as exc:
        entry.update(reason=stage, error=_message(exc))
    entry["seconds"] = round(time.monotonic() - start, 3)
    return entry


def load_custom_objects(build_dir: Path, dotted: str) -> Any:
    """The dict named by runtime.custom_objects ("pkg.module.NAME" or "pkg.module:NAME"), or a Failure."""
    if not dotted:
        return None
    module_name, _, attribute = dotted.rpartition(":") if ":" in dotted else dotted.rpartition(".")
    sys.path.insert(0, str(build_dir))
    try:
        found = getattr(importlib.import_module(module_name), attribute)
        value = found() if callable(found) and not isinstance(found, dict) else found
    except Exception as exc:
        return Failure("load", f"runtime.custom_objects {dotted!r} could not be imported: {_message(exc)}")
    if not isinstance(value, dict):
        return Failure("load", f"runtime.custom_objects {dotted!r} is a {type(value).__name__}, not a dict")
    return value


def convert(request: dict[str, Any]) -> dict[str, Any]:
    np = importlib.import_module("numpy")
    tf = importlib.import_module("tensorflow")
    custom = load_custom_objects(Path(request["build_dir"]), str(request.get("custom_objects") or ""))
    taken: set[str] = set()
    models = [convert_one(tf, np, request, i, spec, custom, taken) for i, spec in enumerate(request["models"])]
    return {"tensorflow": str(tf.__version__), "python": platform.python_version(), "models": models}


def _unchecked(model: str, error: str) -> dict[str, Any]:
    return {"path": model, "ok": False, "error": error, "max_abs": None, "max_rel": None, "top1": None,
            "top1_exact": None, "classifier": False, "seconds": 0.0}


def check_one(np: Any, loader: Any, tolerance: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    entry = _unchecked(str(spec["path"]), "")
    start = time.monotonic()
    try:
        if loader._runtime_entry(loader._key(str(spec["path"])), "litert") is None:
            raise ValueError(".slugslim/runtime.json does not list this model")
        model = loader.load_model(spec["path"])
        if getattr(model, "backend", "") != "litert":
            raise ValueError(f"slugslim_models.load_model gave {type(model).__name__}, not the LiteRT model")
        with np.load(spec["reference"], allow_pickle=False) as reference:
            inputs = [reference[f"in_{i}"] for i in range(sum(k.startswith("in_") for k in reference.files))]
            want = [reference[f"out_{i}"] for i in range(sum(k.startswith("out_") for k in reference.files))]
        got = model.predict(inputs[0] if len(inputs) == 1 else inputs)
        _, _, got_list = _flatten(got)
        if len(got_list) != len(want):
            raise ValueError(f"LiteRT gave {len(got_list)} outputs, the original model {len(want)}")
        entry.update(compare_tool.compare(np, got_list, want, float(tolerance["max_abs"])))
        failed = [f"max_abs {entry['max_abs']:.3g} > {tolerance['max_abs']}"] if entry["max_abs"] > float(
            tolerance["max_abs"]) else []
        if "max_rel" in tolerance and entry["max_rel"] > float(tolerance["max_rel"]):
            failed.append(f"max_rel {entry['max_rel']:.3g} > {tolerance['max_rel']}")
        if entry["classifier"] and entry["top1"] < float(tolerance["top1"]):
            failed.append(f"top-1 agreement {entry['top1']:.3f} < {tolerance['top1']}")
        entry.update(ok=not failed, error="; ".join(failed))
    except Exception as exc:
        entry["error"] = _message(exc)
    entry["seconds"] = round(time.monotonic() - start, 3)
    return entry


def check(request: dict[str, Any]) -> dict[str, Any]:
    build_dir = str(request["build_dir"])
    sys.path.insert(0, build_dir)
    os.chdir(build_dir)
    try:
        version = importlib.metadata.version("ai-edge-litert")
        importlib.import_module("ai_edge_litert.interpreter")
        np = importlib.import_module("numpy")
        loader = importlib.import_module("slugslim_models")
    except Exception as exc:
        error = _message(exc)
        return {"litert": "", "models": [_unchecked(str(m["path"]), error) for m in request["models"]]}
    tolerance = dict(request["tolerance"])
    return {"litert": version, "models": [check_one(np, loader, tolerance, m) for m in request["models"]]}


if __name__ == "__main__":
    sys.exit(common_tool.main(sys.argv, convert, check))
