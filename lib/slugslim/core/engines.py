"""The engines ``runtime.engine`` can name besides the installed framework, and what each replaces.

One table that the step (``runtime``), its plan, the report and ``analyze`` read, so that LiteRT and
ONNX Runtime go through the same machinery: plan, convert, measure on the framework, install the
engine from slugslim's lock, verify through the shipped loader, boot, remove the framework through
the prune engine with rollback, report.
"""

from __future__ import annotations

from dataclasses import dataclass

from slugslim.core.config import Config
from slugslim.core.frameworks import FRAMEWORKS


@dataclass(frozen=True)
class Engine:
    name: str  # the runtime.engine value, also the step's status when it ships
    label: str  # for the build log
    framework: str  # what it replaces, for the build log
    kept: str  # the step's status (and memory key) when the app keeps the framework
    packages: tuple[str, ...]  # what slugslim installs from lib/runtime.lock; the first is the one reported
    # What those need, for a plan made before they are installed (analyze): from lib/runtime.lock.
    requires: tuple[str, ...]
    gated: tuple[str, ...]  # top-level modules no app file may import, but the loader: the framework
    optional: tuple[str, ...]  # top-level modules whose distributions go only when no app file imports them
    removed: frozenset[str]  # distributions that go (optional ones among them), and what only they need
    version_key: str  # the runtime.* setting that asks for another version of packages[0]

    @property
    def package(self) -> str:
        return self.packages[0]


def _builds(package: str) -> set[str]:
    framework = next(f for f in FRAMEWORKS if f.package == package)
    return {*framework.builds, *framework.builds.values()}


LITERT = Engine(
    name="litert", label="LiteRT", framework="TensorFlow", kept="tensorflow", packages=("ai-edge-litert",),
    requires=("backports-strenum", "flatbuffers", "numpy", "tqdm", "typing-extensions", "protobuf", "ml-dtypes"),
    gated=("tensorflow", "keras", "tf_keras"), optional=(),
    removed=frozenset({*_builds("tensorflow"), "tensorflow-intel", "keras", "tf-keras"}),
    version_key="litert_version")
ONNX = Engine(
    name="onnx", label="ONNX Runtime", framework="PyTorch", kept="torch", packages=("onnxruntime", "tokenizers"),
    requires=("flatbuffers", "numpy", "packaging", "protobuf", "huggingface-hub"),
    # sentence-transformers imports torch as it is imported; transformers does not, and an app may use
    # its tokenizers or configs without torch: it stays when the app imports it.
    gated=("torch", "sentence_transformers"), optional=("transformers",),
    removed=frozenset({*_builds("torch"), "sentence-transformers", "transformers"}),
    version_key="onnxruntime_version")
ENGINES = {engine.name: engine for engine in (LITERT, ONNX)}


def chosen(config: Config) -> Engine | None:
    """The engine the settings ask for, or None (``engine: tensorflow``, or runtime off)."""
    return ENGINES.get(config.runtime.engine) if config.runtime.converts else None
