"""The ``runtime`` section: which engine serves the app's models, and how a conversion is verified.

``engine: tensorflow`` (the default) ships what heroku/python installed. ``engine: litert`` converts
every Keras and SavedModel model of the app to LiteRT (``.tflite``) at build time, verifies it
against the original and, when all pass, ships ``ai-edge-litert`` instead of TensorFlow.
``engine: onnx`` does the same for PyTorch: sentence-transformers models, transformers encoders and
classifiers, TorchScript and ``torch.export`` files go to ONNX, served by ``onnxruntime`` instead of
torch (``slugslim.finish.runtime``). ``quantize`` is how the converter shrinks the weights (LiteRT:
``dynamic`` by default; ONNX: ``none`` by default, or ``dynamic``: int8 weights differ too much from
float32 embeddings to be a default; ``float16`` is LiteRT's only). ``samples`` names inputs to compare
on: a ``.npy``/``.npz`` of arrays, or for ONNX text models a ``.txt`` (one text per line) or ``.json``
(a list of texts); else seeded random inputs, or a built-in set of sentences. ``custom_objects`` is the
dotted path of the app's custom Keras layers; ``litert_version`` and ``onnxruntime_version`` a version
to install instead of the one slugslim's hashed lock (``lib/runtime.lock``) pins, so without its hash
check. ``tolerance`` bounds the differences a converted model may show:

- ``max_abs`` (default 0.05): the largest absolute difference of any output value. Dynamic-range
  quantization of a small Dense classifier differs by about 1e-3 on softmax outputs; 0.05 leaves
  room for larger models and still catches a wrong conversion, which differs by far more.
- ``top1`` (default 0.99): for classifiers (outputs that are rows of probabilities), the share of
  samples whose most likely class is the same. A row counts as the same when LiteRT's top class is
  the original's, or one the original scored within ``max_abs`` of its top: random inputs put some
  rows near a tie, where a tiny difference flips the top class (the bench classifier, converted
  with dynamic-range quantization, differed by at most 0.0032 and flipped 1 row of 16 whose two
  top classes were 0.0004 apart). The strict share is reported too (``top1_exact``). A broken
  conversion agrees on about one row in as many as there are classes.
- ``cosine`` (default 0.999): for embeddings (ONNX sentence encoders), the lowest cosine similarity
  of a converted embedding with the original's. A float32 export of all-MiniLM-L6-v2 gives 1.00000,
  its int8 dynamic quantization 0.972.

In slugslim.yml ``tolerance`` is a mapping (``tolerance: {max_abs: 0.01, top1: 0.98, cosine: 0.999}``);
as a config var, ``SLUGSLIM_RUNTIME_TOLERANCE=max_abs=0.01,top1=0.98``. A bare number is ``max_abs``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from packaging.version import InvalidVersion, Version

from slugslim.core.errors import ConfigError
from slugslim.core.yamlfile import type_name

ENGINES = ("tensorflow", "litert", "onnx")
QUANTIZE_MODES = ("dynamic", "float16", "none")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*([.:][A-Za-z_]\w*)$")


@dataclass(frozen=True)
class Tolerance:
    max_abs: float = 0.05
    top1: float = 0.99
    cosine: float = 0.999

    def to_json(self) -> dict[str, float]:
        return {"max_abs": self.max_abs, "top1": self.top1, "cosine": self.cosine}


@dataclass(frozen=True)
class RuntimeConfig:
    enabled: bool = True
    engine: str = "tensorflow"
    quantize: str = ""  # "" is the engine's default: dynamic for LiteRT, none for ONNX
    samples: str = ""  # a .npy/.npz (or for ONNX text models .txt/.json) in the app, relative to its root
    tolerance: Tolerance = field(default_factory=Tolerance)
    custom_objects: str = ""  # "pkg.module.NAME" or "pkg.module:NAME"
    litert_version: str = ""  # "" installs the version lib/runtime.lock pins
    onnxruntime_version: str = ""

    @property
    def litert(self) -> bool:
        return self.enabled and self.engine == "litert"

    @property
    def onnx(self) -> bool:
        return self.enabled and self.engine == "onnx"

    @property
    def converts(self) -> bool:
        """An engine that converts the app's models: litert or onnx."""
        return self.litert or self.onnx

    @property
    def quantize_mode(self) -> str:
        return self.quantize or ("none" if self.engine == "onnx" else "dynamic")


def tolerance(path: str, value: object, source: str) -> Tolerance:
    """``tolerance`` from the file (a mapping or a number) or a config var ("max_abs=0.01,top1=0.98")."""
    fix = (f"Write '{path}' as a mapping, for example 'tolerance: {{max_abs: 0.05, top1: 0.99, cosine: 0.999}}' "
           "(max_abs at least 0, top1 and cosine between 0 and 1).")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if "=" not in text else {
                key.strip(): float(number) for key, _, number in (part.partition("=") for part in text.split(","))}
        except ValueError:
            raise ConfigError(source, f"'{path}' must be a mapping of max_abs, top1 and cosine, but it is {value!r}.",
                              fix) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"max_abs": value}
    if not isinstance(value, dict):
        raise ConfigError(source, f"'{path}' must be a mapping of max_abs, top1 and cosine, but it is "
                          f"{type_name(value)}.",
                          fix)
    unknown = sorted(str(k) for k in value if k not in ("max_abs", "top1", "cosine"))
    if unknown:
        raise ConfigError(source, f"Unknown key '{path}.{unknown[0]}'.",
                          f"Valid keys in '{path}' are: max_abs, top1, cosine.")
    numbers = {**Tolerance().to_json(), **value}
    for key, number in numbers.items():
        bad = isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0 \
            or (key != "max_abs" and number > 1)
        if bad:
            raise ConfigError(source, f"'{path}.{key}' must be a number"
                              f"{' of at least 0' if key == 'max_abs' else ' between 0 and 1'}, but it is {number!r}.",
                              fix)
    return Tolerance(max_abs=float(numbers["max_abs"]), top1=float(numbers["top1"]), cosine=float(numbers["cosine"]))


def check(config: RuntimeConfig, origins: Mapping[str, str]) -> None:
    """What a single value cannot tell: samples inside the app, custom_objects a dotted path, a version,
    a quantization the engine has."""
    samples = config.samples
    if samples:
        pure = PurePosixPath(samples)
        suffixes = (".npy", ".npz", ".txt", ".json") if config.engine == "onnx" else (".npy", ".npz")
        if pure.is_absolute() or ".." in pure.parts or pure.suffix not in suffixes:
            kinds = "a .npy, .npz, .txt or .json" if config.engine == "onnx" else "a .npy or .npz"
            raise ConfigError(origins.get("runtime.samples", "slugslim.yml"),
                              f"'runtime.samples' must be {kinds} file inside your app, "
                              f"given relative to its root, but it is {samples!r}.",
                              "Set runtime.samples to something like 'models/samples.npz'"
                              + (" or 'models/samples.txt' (one text per line)." if config.engine == "onnx" else "."))
    if config.engine == "onnx" and config.quantize == "float16":
        raise ConfigError(origins.get("runtime.quantize", "slugslim.yml"),
                          "'runtime.quantize: float16' is for runtime.engine: litert; ONNX Runtime serves float32 "
                          "(none) or int8 weights (dynamic).",
                          "Set runtime.quantize to none (the default for onnx) or dynamic.")
    if config.custom_objects and not _DOTTED.match(config.custom_objects):
        raise ConfigError(origins.get("runtime.custom_objects", "slugslim.yml"),
                          "'runtime.custom_objects' must be a dotted path such as "
                          f"'myapp.layers.CUSTOM_OBJECTS', but it is {config.custom_objects!r}.",
                          "Name the module and the dict (or a function returning one) of your custom layers, "
                          "as 'package.module.NAME' or 'package.module:NAME'.")
    for key, package, example in (("litert_version", "ai-edge-litert", "2.3.0"),
                                  ("onnxruntime_version", "onnxruntime", "1.32.0")):
        value = getattr(config, key)
        if not value:
            continue
        try:
            Version(value)
        except InvalidVersion:
            raise ConfigError(origins.get(f"runtime.{key}", "slugslim.yml"),
                              f"'runtime.{key}' must be one version of {package}, such as '{example}', "
                              f"but it is {value!r}.",
                              f"Set runtime.{key} to one exact version (no '>=' or '*'), or remove it to "
                              "install the version slugslim pins and checks.") from None
