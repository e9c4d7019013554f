"""The ``runtime`` section: which engine serves the app's models, and how a conversion is verified.

``engine: tensorflow`` (the default) ships what heroku/python installed. ``engine: litert`` converts
every Keras and SavedModel model of the app to LiteRT (``.tflite``) at build time, verifies it
against the original and, when all pass, ships ``ai-edge-litert`` instead of TensorFlow
(``slugslim.finish.runtime``). ``quantize`` is how the converter shrinks the weights, ``samples`` a
``.npy``/``.npz`` of inputs to compare on (else seeded random inputs), ``custom_objects`` the dotted
path of the app's custom layers, ``litert_version`` a version of ``ai-edge-litert`` to install instead
of the one slugslim's hashed lock (``lib/runtime.lock``) pins, so without its hash check.
``tolerance`` bounds the differences a converted model may show:

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

In slugslim.yml ``tolerance`` is a mapping (``tolerance: {max_abs: 0.01, top1: 0.98}``); as a
config var, ``SLUGSLIM_RUNTIME_TOLERANCE=max_abs=0.01,top1=0.98``. A bare number is ``max_abs``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from packaging.version import InvalidVersion, Version

from slugslim.core.errors import ConfigError
from slugslim.core.yamlfile import type_name

ENGINES = ("tensorflow", "litert")
QUANTIZE_MODES = ("dynamic", "float16", "none")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*([.:][A-Za-z_]\w*)$")


@dataclass(frozen=True)
class Tolerance:
    max_abs: float = 0.05
    top1: float = 0.99

    def to_json(self) -> dict[str, float]:
        return {"max_abs": self.max_abs, "top1": self.top1}


@dataclass(frozen=True)
class RuntimeConfig:
    enabled: bool = True
    engine: str = "tensorflow"
    quantize: str = "dynamic"
    samples: str = ""  # a .npy/.npz in the app, relative to its root
    tolerance: Tolerance = field(default_factory=Tolerance)
    custom_objects: str = ""  # "pkg.module.NAME" or "pkg.module:NAME"
    litert_version: str = ""  # "" installs the version lib/runtime.lock pins

    @property
    def litert(self) -> bool:
        return self.enabled and self.engine == "litert"


def tolerance(path: str, value: object, source: str) -> Tolerance:
    """``tolerance`` from the file (a mapping or a number) or a config var ("max_abs=0.01,top1=0.98")."""
    fix = (f"Write '{path}' as a mapping, for example 'tolerance: {{max_abs: 0.05, top1: 0.99}}' "
           "(max_abs at least 0, top1 between 0 and 1).")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if "=" not in text else {
                key.strip(): float(number) for key, _, number in (part.partition("=") for part in text.split(","))}
        except ValueError:
            raise ConfigError(source, f"'{path}' must be a mapping of max_abs and top1, but it is {value!r}.",
                              fix) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"max_abs": value}
    if not isinstance(value, dict):
        raise ConfigError(source, f"'{path}' must be a mapping of max_abs and top1, but it is {type_name(value)}.",
                          fix)
    unknown = sorted(str(k) for k in value if k not in ("max_abs", "top1"))
    if unknown:
        raise ConfigError(source, f"Unknown key '{path}.{unknown[0]}'.", f"Valid keys in '{path}' are: max_abs, top1.")
    numbers = {**Tolerance().to_json(), **value}
    for key, number in numbers.items():
        bad = isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0 \
            or (key == "top1" and number > 1)
        if bad:
            raise ConfigError(source, f"'{path}.{key}' must be a number"
                              f"{' between 0 and 1' if key == 'top1' else ' of at least 0'}, but it is {number!r}.",
                              fix)
    return Tolerance(max_abs=float(numbers["max_abs"]), top1=float(numbers["top1"]))


def check(config: RuntimeConfig, origins: Mapping[str, str]) -> None:
    """What a single value cannot tell: samples inside the app, custom_objects a dotted path, a version."""
    samples = config.samples
    if samples:
        pure = PurePosixPath(samples)
        if pure.is_absolute() or ".." in pure.parts or pure.suffix not in (".npy", ".npz"):
            raise ConfigError(origins.get("runtime.samples", "slugslim.yml"),
                              "'runtime.samples' must be a .npy or .npz file inside your app, "
                              f"given relative to its root, but it is {samples!r}.",
                              "Set runtime.samples to something like 'models/samples.npz'.")
    if config.custom_objects and not _DOTTED.match(config.custom_objects):
        raise ConfigError(origins.get("runtime.custom_objects", "slugslim.yml"),
                          "'runtime.custom_objects' must be a dotted path such as "
                          f"'myapp.layers.CUSTOM_OBJECTS', but it is {config.custom_objects!r}.",
                          "Name the module and the dict (or a function returning one) of your custom layers, "
                          "as 'package.module.NAME' or 'package.module:NAME'.")
    if config.litert_version:
        try:
            Version(config.litert_version)
        except InvalidVersion:
            raise ConfigError(origins.get("runtime.litert_version", "slugslim.yml"),
                              "'runtime.litert_version' must be one version of ai-edge-litert, such as '2.3.0', "
                              f"but it is {config.litert_version!r}.",
                              "Set runtime.litert_version to one exact version (no '>=' or '*'), or remove it to "
                              "install the version slugslim pins and checks.") from None
