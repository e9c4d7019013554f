"""PyTorch and Hugging Face models on ONNX Runtime, without torch (slugslim-models-helper).

Written into your app by the slugslim buildpack next to ``slugslim_models.py``, which imports it
only when a PyTorch model is loaded. App code uses it through ``slugslim_models``:

    from slugslim_models import SentenceEncoder, pipeline, load_model
    embeddings = SentenceEncoder("sentence-transformers/all-MiniLM-L6-v2").encode(["a text", "another"])
    sentiment = pipeline("text-classification", model="models/sentiment")("I loved it")
    outputs = load_model("models/net.pt").predict(batch)

When slugslim converted the model (``runtime.engine: onnx`` in slugslim.yml, listed in
``.slugslim/runtime.json``) and ``onnxruntime`` and ``tokenizers`` import, these run it on ONNX
Runtime with the model's own ``tokenizer.json``; pooling, normalization and scores are computed in
numpy as sentence-transformers and transformers compute them. Anywhere else (your laptop, a model
slugslim did not convert) they are the real libraries: ``SentenceTransformer(...).encode(...)`` as
float32 numpy, ``transformers.pipeline(...)``, ``torch.jit.load`` or ``torch.export.load(...).module()``
with the same ``predict`` on numpy arrays. To run the same code locally, copy
``lib/slugslim/boot/slugslim_models.py`` and ``lib/slugslim/boot/slugslim_onnx.py`` from the
slugslim buildpack into your app's root (next to your Procfile).

Sessions and threads: each model has one ONNX Runtime session per process, made on its first use,
so a gunicorn master that loads models before forking (``--preload``) never hands its session to a
worker: each worker makes its own. Threads of a process share it (``InferenceSession.run`` is
thread-safe) and the weights are in memory once. Each session uses ``cores // WEB_CONCURRENCY``
threads (at least 1; cores are those the process may run on) and runs operators one at a time, so
that the web workers of a dyno do not fight over its cores.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["SentenceEncoder", "TensorModel", "TextClassifier", "intra_op_threads", "load_model", "pipeline"]

_models: Any = importlib.import_module("slugslim_models")
_LOCK = threading.Lock()
# Sessions a forked child inherited: never destroyed there, their threads live in the parent only.
_INHERITED: list[Any] = []
_POOLINGS = ("mean", "cls", "max", "mean_sqrt_len", "lasttoken")
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_CLASSIFICATION = ("text-classification", "sentiment-analysis")
# Padded tokens a run may hold. With all-MiniLM-L6-v2, 12 texts one of which is 256 tokens long: one run
# peaked at 378 MB, runs of at most 512 tokens (texts longest first) at 207 MB, of 256 at 197 MB.
TOKENS_PER_RUN = 512


def _reset_lock() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # a fork while another thread held it would leave it held forever


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_lock)


def _numpy() -> Any:
    return importlib.import_module("numpy")


def intra_op_threads() -> int:
    """ONNX Runtime's threads per session: this process's cores shared among the WEB_CONCURRENCY workers."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        workers = int(os.environ.get("WEB_CONCURRENCY") or 1)
    except ValueError:
        workers = 1
    return max(1, cores // max(1, workers))


class _Session:
    """The ONNX Runtime session of one model file in this process, made on first use."""

    def __init__(self, onnx_path: str) -> None:
        self.path = onnx_path
        self._made: tuple[int, Any] | None = None

    def get(self) -> Any:
        made = self._made
        if made is not None and made[0] == os.getpid():
            return made[1]
        with _LOCK:
            made = self._made
            if made is None or made[0] != os.getpid():
                if made is not None:
                    _INHERITED.append(made[1])
                made = self._made = (os.getpid(), _new_session(self.path))
        return made[1]

    def run(self, outputs: list[str] | None, feed: dict[str, Any]) -> list[Any]:
        return list(self.get().run(outputs, feed))


def _new_session(onnx_path: str) -> Any:
    ort = importlib.import_module("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(onnx_path, sess_options=options, providers=["CPUExecutionProvider"])


def _model_file(key: str, entry: dict[str, Any]) -> str:
    """The model's .onnx, with its weights file beside it when it has one (both fetched if need be)."""
    if entry.get("onnx_data"):
        _app_file(key, entry, "onnx_data")
    return _app_file(key, entry, "onnx")


def _app_file(key: str, entry: dict[str, Any], field: str) -> str:
    """The absolute path of the entry's ``field`` (fetched first if slugslim took it out of the slug), which
    must lie inside the app: no absolute path, no ``..``, no symlink leading out."""
    relative = str(entry.get(field) or "")
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f".slugslim/runtime.json: {field} {relative!r} for {key} is not a path inside the app")
    target: str = _models.path(pure.as_posix())
    if not Path(target).resolve().is_relative_to(_models._ROOT):
        raise ValueError(f".slugslim/runtime.json: {field} {relative!r} for {key} leads out of the app")
    return target


def _converted(raw: str, tasks: tuple[str, ...], modules: tuple[str, ...]) -> tuple[str, dict[str, Any]] | None:
    """The app key and runtime.json entry of a model slugslim converted for one of ``tasks``, when ``modules``
    import; None otherwise (the app then gets the real library)."""
    key = _models._key(raw)
    entry = _models._runtime_entry(key, "onnx") if key is not None else None
    if entry is None or entry.get("task") not in tasks:
        return None
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            return None
    return key, entry


def _refuse(kwargs: dict[str, Any], allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{what} on ONNX Runtime does not take {', '.join(unknown)}")


class _Text:
    """A text model's tokenizer and session: texts in, the graph's first output and the attention mask out."""

    def __init__(self, key: str, entry: dict[str, Any]) -> None:
        self.session = _Session(_model_file(key, entry))
        self.inputs = [str(name) for name in entry["inputs"]]
        unknown = [name for name in self.inputs if name not in _TEXT_INPUTS]
        if unknown:
            raise ValueError(f".slugslim/runtime.json: {key} takes inputs this loader cannot feed: {unknown}")
        tokenizers = importlib.import_module("tokenizers")
        self.tokenizer = tokenizers.Tokenizer.from_file(_app_file(key, entry, "tokenizer"))
        self.left = (self.tokenizer.padding or {}).get("direction", "right") == "left"
        self.pad_id = int(entry["pad_id"])
        self.tokenizer.enable_truncation(int(entry["max_length"]))
        self.tokenizer.no_padding()  # each run pads its own texts, to its longest

    def runs(self, texts: list[str], batch_size: int) -> Iterator[tuple[list[int], Any, Any]]:
        """(the texts' indices, the graph's first output, the attention mask), one run at a time: longest
        first, as sentence-transformers orders them, at most ``batch_size`` texts and TOKENS_PER_RUN padded
        tokens a run (one text at least). A run's working memory grows with its texts times their length,
        and ONNX Runtime keeps its peak for the process: one batch of 32 texts padded to 256 tokens would
        hold hundreds of MB in every web worker."""
        np = _numpy()
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        start = 0
        while start < len(order):
            longest = max(1, len(encodings[order[start]].ids))
            chosen = order[start:start + max(1, min(batch_size, TOKENS_PER_RUN // longest))]
            start += len(chosen)
            fills = {"ids": self.pad_id, "attention_mask": 0, "type_ids": 0}
            columns = {name: np.asarray([self._padded(getattr(encodings[i], field), longest, fills[field])
                                         for i in chosen], dtype=np.int64)
                       for name, field in (("input_ids", "ids"), ("attention_mask", "attention_mask"),
                                           ("token_type_ids", "type_ids"))}
            first = self.session.run(None, {name: columns[name] for name in self.inputs})[0]
            yield chosen, np.asarray(first, dtype=np.float32), columns["attention_mask"]

    def _padded(self, values: list[int], length: int, fill: int) -> list[int]:
        padding = [fill] * (length - len(values))
        return padding + list(values) if self.left else list(values) + padding


def pool(np: Any, hidden: Any, mask: Any, how: str) -> Any:
    """Token embeddings [batch, seq, hidden] to sentence embeddings, as sentence-transformers' Pooling."""
    weights = mask[:, :, None].astype(np.float32)
    if how == "cls":
        return hidden[:, 0]
    if how == "max":
        return np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    if how == "lasttoken":  # the last token the mask keeps, whichever side the padding is on
        last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
        return hidden[np.arange(len(hidden)), last]
    total = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    return total / (np.sqrt(counts) if how == "mean_sqrt_len" else counts)


def normalized(np: Any, vectors: Any) -> Any:
    """Unit length, as torch.nn.functional.normalize (eps 1e-12)."""
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


class SentenceEncoder:
    """``SentenceTransformer`` for serving: ``encode`` as ``SentenceTransformer.encode`` with numpy output.

    ``backend`` is "onnxruntime" or "sentence-transformers". Other arguments of the constructor only
    matter to sentence-transformers.
    """

    def __init__(self, model_name_or_path: str | os.PathLike[str], **kwargs: Any) -> None:
        raw = os.fspath(model_name_or_path)
        self.path = raw
        self._fallback: Any = None
        self._text: _Text | None = None
        converted = _converted(raw, ("sentence-embedding",), ("onnxruntime", "tokenizers"))
        if converted is None:
            self.backend = "sentence-transformers"
            self._fallback = importlib.import_module("sentence_transformers").SentenceTransformer(raw, **kwargs)
            return
        key, entry = converted
        self.backend = "onnxruntime"
        self._pooling = str(entry["pooling"])
        if self._pooling not in _POOLINGS:
            raise ValueError(f".slugslim/runtime.json: {key} has pooling {self._pooling!r}, not one of {_POOLINGS}")
        self._normalize = bool(entry.get("normalize"))
        self._text = _Text(key, entry)

    @property
    def session(self) -> Any:
        """This process's ONNX Runtime session (made now if it was not yet), None on sentence-transformers."""
        return self._text.session.get() if self._text is not None else None

    def encode(self, sentences: str | list[str], batch_size: int = 32, normalize_embeddings: bool = False,
               **kwargs: Any) -> Any:
        """float32 embeddings: 1-D for one string, [len(sentences), dim] for a list."""
        np = _numpy()
        kwargs.pop("convert_to_numpy", None)
        if self._fallback is not None:
            return np.asarray(self._fallback.encode(sentences, batch_size=batch_size, convert_to_numpy=True,
                                                    normalize_embeddings=normalize_embeddings, **kwargs),
                              dtype=np.float32)
        assert self._text is not None
        _refuse(kwargs, ("show_progress_bar", "device"), "SentenceEncoder.encode")
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        if not texts:
            return np.zeros((0,), dtype=np.float32)
        out: Any = None
        for chosen, hidden, mask in self._text.runs(texts, max(1, batch_size)):
            vectors = pool(np, hidden, mask, self._pooling)
            if self._normalize or normalize_embeddings:
                vectors = normalized(np, vectors)
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chosen] = vectors
        return out[0] if isinstance(sentences, str) else out


def scores(np: Any, logits: Any, problem_type: str) -> Any:
    """Logits to scores as transformers' text-classification pipeline: raw, sigmoid or softmax."""
    logits = logits.astype(np.float32)
    if problem_type == "regression":
        return logits
    if problem_type == "multi_label_classification" or logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class TextClassifier:
    """A converted sequence classifier, called as transformers' text-classification pipeline."""

    backend = "onnxruntime"
    task = "text-classification"

    def __init__(self, key: str, entry: dict[str, Any]) -> None:
        self.path = key
        self.labels = [str(label) for label in entry["labels"]]
        self.problem_type = str(entry.get("problem_type") or "single_label_classification")
        self._text = _Text(key, entry)

    @property
    def session(self) -> Any:
        """This process's ONNX Runtime session (made now if it was not yet)."""
        return self._text.session.get()

    def __call__(self, inputs: str | list[str], batch_size: int = 32, **kwargs: Any) -> list[dict[str, Any]]:
        """``[{"label": ..., "score": ...}]``, one per text (one for a string)."""
        _refuse(kwargs, ("truncation",), "pipeline(...)()")
        np = _numpy()
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        out: list[dict[str, Any]] = [{} for _ in texts]
        for chosen, logits, _ in self._text.runs(texts, max(1, batch_size)):
            for index, row in zip(chosen, scores(np, logits, self.problem_type), strict=True):
                best = int(np.argmax(row))
                out[index] = {"label": self.labels[best], "score": float(row[best])}
        return out


def pipeline(task: str, model: Any = None, **kwargs: Any) -> Any:
    """A text-classification model slugslim converted, else ``transformers.pipeline(task, model=model, **kwargs)``."""
    if task in _CLASSIFICATION and isinstance(model, (str, os.PathLike)):
        converted = _converted(os.fspath(model), ("text-classification",), ("onnxruntime", "tokenizers"))
        if converted is not None:
            return TextClassifier(*converted)
    return importlib.import_module("transformers").pipeline(task, model=model, **kwargs)


class TensorModel:
    """A converted TorchScript or torch.export model: ``predict`` on numpy arrays, as LiteRTModel's."""

    backend = "onnxruntime"

    def __init__(self, key: str, entry: dict[str, Any]) -> None:
        self.path = key
        self.inputs = [str(name) for name in entry["inputs"]]
        self.outputs = [str(name) for name in entry["outputs"]]
        self._dtypes = {str(name): str(dtype) for name, dtype in (entry.get("dtypes") or {}).items()}
        self._session = _Session(_model_file(key, entry))

    @property
    def session(self) -> Any:
        """This process's ONNX Runtime session (made now if it was not yet)."""
        return self._session.get()

    def predict(self, x: Any, **ignored: Any) -> Any:
        """One array, a list or tuple in input order, or a dict by input name; an array, or a tuple for several."""
        np = _numpy()
        arrays = _models._arrays(np, x, self.inputs)
        feed = {name: np.asarray(a, dtype=self._dtypes.get(name)) for name, a in zip(self.inputs, arrays, strict=True)}
        results = self._session.run(self.outputs, feed)
        return results[0] if len(results) == 1 else tuple(results)


class _TorchModel:
    """A TorchScript or .pt2 file on torch, with TensorModel's ``predict``."""

    backend = "torch"

    def __init__(self, raw: str, key: str | None) -> None:
        self.path = raw
        self._torch = importlib.import_module("torch")
        target = _models.path(key) if key is not None and _models._listed(key) else raw
        if PurePosixPath(raw).suffix.lower() == ".pt2":
            self._module = self._torch.export.load(target).module()
        else:
            self._module = self._torch.jit.load(target, map_location="cpu")

    def predict(self, x: Any, **ignored: Any) -> Any:
        np, torch = _numpy(), self._torch
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if isinstance(x, dict):
            kwargs = {name: torch.from_numpy(np.asarray(a)) for name, a in x.items()}
        elif isinstance(x, (list, tuple)) and x and all(isinstance(a, np.ndarray) for a in x):
            args = [torch.from_numpy(a) for a in x]
        else:
            args = [torch.from_numpy(np.asarray(x))]
        with torch.inference_mode():
            return _to_numpy(self._module(*args, **kwargs))


def _to_numpy(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _to_numpy(v) for name, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value.detach().cpu().numpy()


def load_model(raw: str) -> Any:
    """``slugslim_models.load_model`` for a PyTorch file: ONNX Runtime when converted, else torch."""
    converted = _converted(raw, ("tensor",), ("onnxruntime",))
    if converted is not None:
        return TensorModel(*converted)
    return _TorchModel(raw, _models._key(raw))
