"""Fetch a model that slugslim took out of the slug, on first use (slugslim-models-helper).

Written into your app by the slugslim buildpack. heroku/python puts the app directory on
PYTHONPATH, so app code can do:

    from slugslim_models import path
    model = keras.models.load_model(path("models/classifier.keras"))

``path()`` returns the absolute path of a model file, SavedModel directory or checkpoint prefix,
as listed in ``.slugslim/models.json``. If the model is not there yet it is fetched first, by the
same ``.profile.d/slugslim-models.sh`` that runs at dyno boot, with the same guarantees: a temp
file next to the target, sha256 verified, moved into place atomically, never a partial file.

Prefer it over the boot-time fetch (set ``models.boot_timeout: 0`` in slugslim.yml) when
- the models are too large to download within Heroku's 60 s boot limit (R10);
- only some process types use them: a worker dyno that loads the model while the web dyno
  never does, or a model used by one rarely-called endpoint.
With the boot-time fetch left on, ``path()`` simply finds the file in place.

Models that stayed in the slug, and paths not in the manifest (your laptop), are returned
as they are, so the same code runs everywhere.

``load_model()`` loads a model the way your app would with Keras:

    from slugslim_models import load_model
    classifier = load_model("models/classifier.keras")
    probabilities = classifier.predict(batch)

When slugslim converted the model to LiteRT (``runtime.engine: litert`` in slugslim.yml, listed in
``.slugslim/runtime.json``) and ``ai_edge_litert`` is installed, it returns a ``LiteRTModel``.
Anywhere else (your laptop, ``engine: tensorflow``) it returns what ``keras.models.load_model``
returns, or for a SavedModel directory a small wrapper of its serving signature with the same
``predict``. To get this file on your machine, copy ``lib/slugslim/boot/slugslim_models.py`` from
the slugslim buildpack into your app's root (next to your Procfile).

PyTorch and Hugging Face models (``runtime.engine: onnx``) run on ONNX Runtime where slugslim
converted them, and on the real libraries anywhere else; ``slugslim_onnx.py``, imported only then,
tells how:

    from slugslim_models import SentenceEncoder, pipeline
    embeddings = SentenceEncoder("sentence-transformers/all-MiniLM-L6-v2").encode(texts)
    labels = pipeline("text-classification", model="models/sentiment")(texts)

and ``load_model("models/net.pt")`` (TorchScript) or ``load_model("models/net.pt2")`` (torch.export).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath
from typing import Any

# SentenceEncoder and pipeline come from __getattr__, which imports slugslim_onnx.py only when they are used.
__all__ = ["FetchError", "LiteRTModel", "SentenceEncoder", "load_model", "path", "pipeline"]  # noqa: F822

_ROOT = Path(__file__).resolve().parent
_MANIFEST = _ROOT / ".slugslim" / "models.json"
_RUNTIME = _ROOT / ".slugslim" / "runtime.json"
_SCRIPT = _ROOT / ".profile.d" / "slugslim-models.sh"
_LOCK = threading.Lock()
_READY: set[str] = set()
_TORCH_SUFFIXES = (".pt", ".pth", ".pt2")


def __getattr__(name: str) -> Any:
    """``SentenceEncoder`` and ``pipeline`` come from slugslim_onnx.py, imported on first use only."""
    if name in ("SentenceEncoder", "pipeline"):
        return getattr(importlib.import_module("slugslim_onnx"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FetchError(RuntimeError):
    """A model could not be fetched; the message carries the fetch script's explanation."""


def _manifest_files() -> list[dict[str, Any]]:
    try:
        data = json.loads(_MANIFEST.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    files = data.get("files", []) if isinstance(data, dict) else []
    return [f for f in files if isinstance(f, dict)]


def _normalise(relative: str) -> str:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"slugslim_models.path() takes a path inside the app, not {relative!r}")
    return pure.as_posix()


def _listed(key: str) -> bool:
    return any(key in (f.get("path"), f.get("model")) for f in _manifest_files())


def path(relative: str, timeout: int = 600) -> str:
    """The absolute path of a model, fetching it first if it is not in place yet."""
    key = _normalise(relative)
    target = _ROOT / key
    if key in _READY:
        return str(target)
    with _LOCK:
        if key in _READY:
            return str(target)
        if not _listed(key):
            return str(target)
        _fetch(key, timeout)
        _READY.add(key)
    return str(target)


def _fetch(key: str, timeout: int) -> None:
    env = dict(os.environ, HOME=str(_ROOT))
    lock_path = _ROOT / ".slugslim" / "fetch.lock"
    try:
        import fcntl  # POSIX only; a dyno always has it
    except ImportError:  # pragma: no cover
        fcntl = None  # type: ignore[assignment]
    with open(lock_path, "a+b") as lock:
        # One fetch at a time across processes (gunicorn workers): the second finds the file in place.
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            ["bash", str(_SCRIPT), "fetch", "--timeout", str(int(timeout)), key],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
        )
    if done.stderr:
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()[-5:]
        raise FetchError(f"could not fetch {key}: " + " / ".join(lines))


def load_model(model_path: str | os.PathLike[str], custom_objects: Any = None, **kwargs: Any) -> Any:
    """The model at ``model_path`` (relative to the app root, or absolute), on LiteRT where slugslim converted it.

    LiteRT when ``.slugslim/runtime.json`` lists the model and ``ai_edge_litert`` imports; else
    ``keras.models.load_model(path, custom_objects=..., **kwargs)`` for a Keras file, or a wrapper
    of the serving signature for a SavedModel directory. ``custom_objects`` only matters to Keras.
    """
    raw = os.fspath(model_path)
    key = _key(raw)
    if (key is not None and _runtime_entry(key, "onnx") is not None) or (
            PurePosixPath(raw).suffix.lower() in _TORCH_SUFFIXES):
        return importlib.import_module("slugslim_onnx").load_model(raw)
    entry = _runtime_entry(key, "litert") if key is not None else None
    if entry is not None:
        try:
            litert = importlib.import_module("ai_edge_litert.interpreter")
        except ImportError:
            pass
        else:
            return LiteRTModel(key or raw, entry, litert)
    target = path(key) if key is not None and _listed(key) else raw
    if Path(target).is_dir():
        return _SavedModel(target)
    keras = importlib.import_module("keras")
    return keras.models.load_model(target, custom_objects=custom_objects, **kwargs)


def _key(raw: str) -> str | None:
    """The app-relative POSIX path of a model, or None when it lies outside the app."""
    given = Path(raw)
    if not given.is_absolute():
        pure = PurePosixPath(raw)
        return None if ".." in pure.parts else pure.as_posix()
    for candidate in (Path(os.path.normpath(given)), given.resolve()):
        try:
            return candidate.relative_to(_ROOT).as_posix()
        except ValueError:
            continue
    return None


_RUNTIME_CACHE: list[tuple[str, dict[str, Any]]] = []


def _runtime_entry(key: str, engine: str) -> dict[str, Any] | None:
    """What slugslim recorded for ``key`` converted for ``engine`` (litert, onnx), or None (not converted,
    another engine, or no runtime.json)."""
    with _LOCK:
        if not _RUNTIME_CACHE:
            try:
                data = json.loads(_RUNTIME.read_text(encoding="utf-8"))
            except FileNotFoundError:
                data = {}
            models = data.get("models") if isinstance(data, dict) else None
            _RUNTIME_CACHE.append((str(data.get("engine", "")) if isinstance(data, dict) else "",
                                   models if isinstance(models, dict) else {}))
    recorded, models = _RUNTIME_CACHE[0]
    entry = models.get(key) if recorded == engine else None
    return entry if isinstance(entry, dict) else None


class LiteRTModel:
    """A model converted by slugslim, run by LiteRT, with the part of the Keras API that serving uses.

    ``predict(x)`` takes what Keras takes: an array for a model with one input, a list in the
    model's input order or a dict by input name for several; it returns what Keras returns: an
    array, a list, or a dict by output name. Any number of rows: the interpreter is resized to the
    batch, or for a model converted with a fixed batch size, the rows run in chunks of that size.

    Thread safety: each thread gets its own interpreter, made on its first call (an interpreter
    must not be used by two threads at once), so threads never wait for each other; a process
    forked after load_model (gunicorn --preload) makes its own on its first call. The model file
    is memory-mapped and shared; each interpreter adds its working memory (and the CPU delegate's
    packed copy of the weights), which for a model of a few MB is a few MB per thread.
    """

    backend = "litert"

    def __init__(self, key: str, entry: dict[str, Any], litert: Any) -> None:
        tflite = _normalise(str(entry["tflite"]))
        self.path = key
        self.tflite = path(tflite)
        if not Path(self.tflite).resolve().is_relative_to(_ROOT):
            raise ValueError(f".slugslim/runtime.json: {tflite!r} for {key} leads out of the app")
        self._litert = litert
        self._signature = str(entry["signature"])
        self._inputs = [(str(i["name"]), str(i["tensor"])) for i in entry["inputs"]]
        outputs = entry["outputs"]
        self._output_kind = str(outputs["kind"])
        self._outputs = [(str(n), str(t)) for n, t in zip(outputs["names"], outputs["tensors"], strict=True)]
        self._local = threading.local()
        self._runner()  # a broken file fails here, at load time, as it would in Keras

    def _runner(self) -> Any:
        runner = getattr(self._local, "runner", None)
        # A new one after a fork too (gunicorn --preload): the parent's thread pool is not in the child.
        if runner is None or self._local.pid != os.getpid():
            interpreter = self._litert.Interpreter(model_path=self.tflite)
            runner = self._local.runner = interpreter.get_signature_runner(self._signature)
            self._local.pid = os.getpid()
        return runner

    @property
    def input_details(self) -> list[dict[str, Any]]:
        """LiteRT's details of each input, in the model's input order; ``name`` is the Keras input name."""
        details = self._runner().get_input_details()
        return [dict(details[tensor], name=name) for name, tensor in self._inputs]

    @property
    def output_details(self) -> list[dict[str, Any]]:
        """LiteRT's details of each output, in the order ``predict`` returns them."""
        details = self._runner().get_output_details()
        return [dict(details[tensor], name=name) for name, tensor in self._outputs]

    def predict(self, x: Any, **ignored: Any) -> Any:
        """Run a batch; Keras-only arguments such as ``verbose`` or ``batch_size`` are ignored."""
        np = importlib.import_module("numpy")
        runner = self._runner()
        details = runner.get_input_details()
        arrays = [
            np.asarray(a, dtype=details[tensor]["dtype"])
            for a, (_, tensor) in zip(_arrays(np, x, [name for name, _ in self._inputs]), self._inputs, strict=True)
        ]
        rows = {a.shape[0] if a.ndim else -1 for a in arrays}
        if len(rows) != 1 or -1 in rows:
            raise ValueError(f"predict() needs every input to have the same number of rows, not {sorted(rows)}")
        count = rows.pop()
        fixed = [int(details[t]["shape_signature"][0]) for _, t in self._inputs]
        step = min((b for b in fixed if b > 0), default=0)
        if not step or step == count:
            results = runner(**{tensor: a for a, (_, tensor) in zip(arrays, self._inputs, strict=True)})
        else:
            chunks = []
            for start in range(0, count, step):
                feed = {}
                for a, (_, tensor) in zip(arrays, self._inputs, strict=True):
                    part = a[start:start + step]
                    pad = np.zeros((step - len(part), *a.shape[1:]), dtype=a.dtype)
                    feed[tensor] = np.concatenate([part, pad]) if len(pad) else part
                chunks.append(runner(**feed))
            results = {t: np.concatenate([c[t] for c in chunks])[:count] for _, t in self._outputs}
        return _structure(self._output_kind, [(name, results[tensor]) for name, tensor in self._outputs])


class _SavedModel:
    """A SavedModel directory's serving signature, with ``predict`` as LiteRTModel has it (Keras 3 cannot load one)."""

    backend = "tensorflow"

    def __init__(self, directory: str) -> None:
        tf = importlib.import_module("tensorflow")
        self._np = importlib.import_module("numpy")
        self._tf = tf
        self._loaded = tf.saved_model.load(directory)  # keeps the variables alive
        signatures = self._loaded.signatures
        if not signatures:
            raise ValueError(f"{directory} is a SavedModel without a serving signature")
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        self._function = signatures[key]
        self._inputs = sorted(self._function.structured_input_signature[1])
        self._outputs = sorted(self._function.structured_outputs)

    def predict(self, x: Any, **ignored: Any) -> Any:
        arrays = _arrays(self._np, x, self._inputs)
        results = self._function(**{name: self._tf.constant(a) for name, a in zip(self._inputs, arrays, strict=True)})
        kind = "single" if len(self._outputs) == 1 else "dict"
        return _structure(kind, [(name, results[name].numpy()) for name in self._outputs])


def _arrays(np: Any, x: Any, names: list[str]) -> list[Any]:
    """The inputs in model order, from what Keras accepts: one array, a list or tuple, or a dict by name."""
    if isinstance(x, dict):
        missing = [name for name in names if name not in x]
        if missing:
            raise ValueError(f"predict() got inputs {sorted(x)}, but the model takes {names}")
        return [x[name] for name in names]
    if len(names) == 1:
        if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
            return [x[0]]
        return [x]
    if not isinstance(x, (list, tuple)) or len(x) != len(names):
        raise ValueError(f"predict() needs {len(names)} inputs ({', '.join(names)}), as a list or a dict by name")
    return list(x)


def _structure(kind: str, outputs: list[tuple[str, Any]]) -> Any:
    if kind == "dict":
        return dict(outputs)
    if kind == "list":
        return [array for _, array in outputs]
    return outputs[0][1]
