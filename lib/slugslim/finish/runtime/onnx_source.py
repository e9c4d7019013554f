"""What ``onnx_tool.py convert`` reads before torch: which text models it takes, and the sample inputs.

Torch-free (stdlib; numpy passed in), so that the reasons a model is refused and the samples'
errors are the same on every app and testable without torch. A sibling of ``onnx_tool.py``,
imported from the script's directory.

A text model is a sentence-transformers directory or a transformers checkpoint of one of the
encoder families most apps serve on CPU (``SUPPORTED``). A sentence-transformers directory is
taken when ``modules.json`` lists only Transformer, Pooling and Normalize (any other module would
be computed by torch, which leaves the slug); its pooling comes from the Pooling module's
config, one mode only. A checkpoint whose ``architectures[0]`` ends in ForSequenceClassification
is a text classifier; a bare encoder (``BertModel``, or a pre-training head that ``AutoModel``
drops) gives sentence embeddings with mean pooling, as sentence-transformers makes of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

if __package__:  # imported as slugslim.finish.runtime.onnx_source: the tests, mypy
    from . import common_tool
else:  # beside onnx_tool.py, from the script's directory
    import common_tool  # type: ignore[import-not-found, no-redef]

SUPPORTED = ("bert", "distilbert", "roberta", "xlm-roberta", "mpnet", "camembert", "electra")
# Heads AutoModel loads the bare encoder from, for embeddings.
ENCODER_SUFFIXES = ("Model", "ForMaskedLM", "ForPreTraining")
ST_MODULES = ("Transformer", "Pooling", "Normalize")
# sentence-transformers' pooling modes, in its config (legacy booleans or ``pooling_mode``), to the manifest's.
POOLING = {"cls": "cls", "cls_token": "cls", "mean": "mean", "mean_tokens": "mean", "max": "max",
           "max_tokens": "max", "mean_sqrt_len_tokens": "mean_sqrt_len", "lasttoken": "lasttoken"}
# runtime.samples: texts for text models, arrays for tensor models (each kind skips the other's).
TEXT_SUFFIXES = (".txt", ".json")
ARRAY_SUFFIXES = (".npy", ".npz")
# The most position embeddings the loader truncates to.
LONGEST = 512
# Built-in samples for text models: short and long, questions, numbers, accents, emoji, code, another script.
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?",
    "I absolutely loved this movie, the acting was superb!",
    "This was the worst purchase I have ever made.",
    "Heroku dynos restart at least once a day.",
    "A man is playing a guitar on the street corner while people walk by.",
    "Temperatures will rise to 31°C on Thursday, with a 40% chance of rain.",
    "Café crème, s'il vous plaît.",
    "def add(a, b): return a + b",
    "Der Zug nach München fährt um 8:15 Uhr ab.",
    "ok",
    "Can you recommend a good book about the history of mathematics?",
    "The shipment arrived two days late and the box was damaged 😞",
    "東京は日本の首都です。",
    "Neural networks learn representations of their inputs by gradient descent over many examples, "
    "and a sentence encoder maps a whole sentence to one vector that keeps its meaning.",
    "",
]


class Failure(Exception):
    """A model that cannot be served on ONNX Runtime; the message is the reason, for the build log."""


@dataclass(frozen=True)
class TextModel:
    directory: Path  # the transformers checkpoint: config.json, weights, tokenizer
    task: str  # "sentence-embedding" | "text-classification"
    architecture: str
    sentence_transformers: bool
    pooling: str  # of embeddings: "mean", "cls", ...
    normalize: bool
    max_seq_length: int  # sentence_bert_config.json's, 0 when it has none


def read_json(file: Path, what: str) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Failure(f"{what} has no {file.name}") from None
    except (OSError, ValueError) as exc:
        raise Failure(f"{what}: {file.name} cannot be read: {exc}") from None


def _pooling(directory: Path, what: str) -> str:
    config = read_json(directory / "config.json", f"{what} (its Pooling module)")
    modes = config.get("pooling_mode")
    if modes is None:
        modes = [k.removeprefix("pooling_mode_") for k, v in config.items() if k.startswith("pooling_mode_") and v]
    modes = [modes] if isinstance(modes, str) else list(modes or ["mean"])
    if len(modes) != 1:
        raise Failure(f"{what}: its Pooling module concatenates {' + '.join(map(str, modes))}, which the ONNX "
                      "loader does not do")
    if modes[0] not in POOLING:
        raise Failure(f"{what}: its Pooling module's mode {modes[0]!r} is not one the ONNX loader does")
    return POOLING[modes[0]]


def _sentence_transformers(source: Path, what: str) -> tuple[Path, str, bool, int]:
    """(the Transformer module's directory, pooling, normalize, max_seq_length) from modules.json."""
    modules = read_json(source / "modules.json", what)
    if not isinstance(modules, list):
        raise Failure(f"{what}: modules.json is not a list of modules")
    found: dict[str, str] = {}
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in ST_MODULES or kind in found:
            raise Failure(f"{what}: its module {module.get('type', '?')} ({module.get('path', '')!s}) would "
                          "still need torch; the ONNX conversion takes Transformer, Pooling and Normalize only")
        found[kind] = str(module.get("path", ""))
    if "Transformer" not in found:
        raise Failure(f"{what}: modules.json lists no Transformer module")
    directory = source / PurePosixPath(found["Transformer"])
    pooling = _pooling(source / PurePosixPath(found["Pooling"]), what) if "Pooling" in found else "cls"
    bert_config = directory / "sentence_bert_config.json"
    max_seq = read_json(bert_config, what).get("max_seq_length") if bert_config.is_file() else None
    return directory, pooling, "Normalize" in found, int(max_seq or 0)


def read_text_model(source: Path, kind: str, what: str) -> TextModel:
    """The text model at ``source`` (a directory), or a Failure saying why it is not converted."""
    if not source.is_dir():
        raise Failure(f"{what}: a {kind} model is a directory, and this is not one")
    st = kind == "sentence-transformers"
    directory, pooling, normalize, max_seq = _sentence_transformers(source, what) if st else (source, "mean", False, 0)
    config = read_json(directory / "config.json", what)
    model_type = str(config.get("model_type", ""))
    architectures = config.get("architectures") or []
    architecture = str(architectures[0]) if architectures else model_type or "unknown"
    if model_type not in SUPPORTED:
        raise Failure(f"unsupported architecture {architecture}: the ONNX conversion takes {', '.join(SUPPORTED)}")
    if architecture.endswith("ForSequenceClassification") and not st:
        task = "text-classification"
    elif architecture.endswith(ENCODER_SUFFIXES) or architecture == model_type:
        task = "sentence-embedding"
    else:
        raise Failure(f"unsupported architecture {architecture}: the ONNX conversion takes encoders for sentence "
                      "embeddings and ...ForSequenceClassification models")
    return TextModel(directory, task, architecture, st, pooling, normalize, max_seq)


def max_length(model: TextModel, tokenizer_max: int, position_max: int) -> int:
    """Where the loader truncates: the model's max_seq_length, else the tokenizer's, else the positions."""
    for candidate in (model.max_seq_length, tokenizer_max, position_max):
        if 0 < candidate < 1_000_000:  # transformers says 1e30 for "no limit"
            return min(candidate, LONGEST)
    return LONGEST


def inside(build_dir: Path, relative: str) -> Path:
    target = build_dir / relative
    if not target.resolve().is_relative_to(build_dir.resolve()):
        raise Failure(f"runtime.samples {relative}: not a path inside the app")
    if not target.is_file():
        raise Failure(f"runtime.samples {relative}: no such file in the app")
    return target


def text_samples(given: str) -> str:
    """runtime.samples if it is for text models; an app may have both kinds, and one setting."""
    return given if PurePosixPath(given).suffix not in ARRAY_SUFFIXES else ""


def array_samples(given: str) -> str:
    """runtime.samples if it is for tensor models."""
    return given if PurePosixPath(given).suffix not in TEXT_SUFFIXES else ""


def read_texts(build_dir: Path, given: str) -> list[str]:
    """runtime.samples for a text model: a .txt (one text a line) or a .json list of texts; else TEXTS."""
    if not given:
        return list(TEXTS)
    suffix = PurePosixPath(given).suffix
    if suffix not in TEXT_SUFFIXES:
        raise Failure(f"runtime.samples {given}: a text model takes a .txt (one text a line) or a .json list "
                      "of texts")
    file = inside(build_dir, given)
    try:
        text = file.read_text(encoding="utf-8")
        texts = [line for line in text.splitlines() if line.strip()] if suffix == ".txt" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise Failure(f"runtime.samples {given}: cannot be read: {exc}") from None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise Failure(f"runtime.samples {given}: the JSON is not a list of strings")
    if not texts:
        raise Failure(f"runtime.samples {given}: it has no texts")
    return texts


def read_arrays(np: Any, build_dir: Path, given: str, names: list[str], what: str) -> list[Any]:
    """runtime.samples for a tensor model, in input order: a .npy for one input, a .npz of one array each
    (named like the input, or arr_0, arr_1, ... in input order)."""
    if PurePosixPath(given).suffix not in ARRAY_SUFFIXES:
        raise Failure(f"runtime.samples {given}: {what} takes a .npy or .npz of inputs")
    file = inside(build_dir, given)
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Failure(f"runtime.samples {given}: cannot be read as .npy/.npz: {exc}") from None
    if isinstance(loaded, np.ndarray):
        if len(names) != 1:
            raise Failure(f"runtime.samples {given}: one array, but {what} takes {len(names)} inputs "
                          f"({', '.join(names)}); give a .npz with one array per input")
        return [loaded]
    arrays = []
    for i, name in enumerate(names):
        key = name if name in loaded.files else f"arr_{i}"
        if key not in loaded.files:
            raise Failure(f"runtime.samples {given}: no array named {name!r} or {key!r} for input {i} of {what}"
                          f" (it has {', '.join(loaded.files) or 'none'})")
        arrays.append(loaded[key])
    if len({a.shape[0] if a.ndim else 0 for a in arrays}) > 1:
        raise Failure(f"runtime.samples {given}: the arrays have different numbers of rows")
    return arrays


def random_arrays(np: Any, inputs: list[tuple[str, tuple[int | None, ...], str]], count: int, seed: int) -> list[Any]:
    """Seeded random inputs for (name, shape, numpy dtype): an open batch dimension is ``count``, another 8."""
    rng = np.random.default_rng(seed)
    arrays = []
    for name, shape, dtype in inputs:
        size = tuple(d if d is not None else count if i == 0 else 8 for i, d in enumerate(shape))
        array = common_tool.random_array(np, rng, dtype, size)
        if array is None:
            raise Failure(f"input {name!r} is {dtype}: set runtime.samples to a .npy or .npz of inputs")
        arrays.append(array)
    return arrays
