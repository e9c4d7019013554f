"""Hugging Face Hub model ids an app's source names literally, read by the one import scanner.

``imports._Visitor`` hands each call it meets to ``hub_ref``; nothing here walks files or trees.
A call counts by its called name (the last attribute, so ``transformers.AutoModel.from_pretrained``
is ``from_pretrained``), see ``CALLS``. Its id argument counts when it is a string literal, or a
module-level ``NAME = "literal"`` of the same file (``module_constants``), that looks like a Hub id
and not like a local path (``is_hub_id``). A ``revision=`` literal fills ``HubRef.revision``.
f-strings, variables and anything computed are skipped: the build sees those when the app boots.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

from slugslim.core import hubconfig

# Called name -> (index of the id among the positional arguments, keywords that may carry it).
# pipeline's first positional is the task ("sentiment-analysis"), never a model.
CALLS: dict[str, tuple[int, tuple[str, ...]]] = {
    "from_pretrained": (0, ("pretrained_model_name_or_path",)),
    "SentenceTransformer": (0, ("model_name_or_path",)),
    "CrossEncoder": (0, ("model_name_or_path", "model_name")),
    "pipeline": (1, ("model",)),
    "hf_hub_download": (0, ("repo_id",)),
    "snapshot_download": (0, ("repo_id",)),
}
# Names of files, not of repositories: "model.onnx" is a local file even though the Hub would allow it.
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".onnx", ".h5", ".keras", ".json", ".safetensors", ".tflite", ".pkl")


@dataclass(frozen=True)
class HubRef:
    """One call that loads a Hub model: its id, the file (relative to the app, POSIX) and the call's line."""

    id: str
    path: str
    line: int
    revision: str = ""


def is_hub_id(text: str) -> bool:
    """Whether a string reads as a Hub id and not as a local path or a model file's name."""
    return hubconfig.is_hub_id(text) and not text.lower().endswith(FILE_SUFFIXES)


def module_constants(tree: ast.Module) -> dict[str, str]:
    """The file's top-level ``NAME = "literal"`` assignments; a name also bound to anything else is left out."""
    values: dict[str, str] = {}
    other: set[str] = set()
    for statement in tree.body:
        if not isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            continue
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        value = None if isinstance(statement, ast.AugAssign) else statement.value
        literal = value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None
        for target in targets:
            if isinstance(target, ast.Name) and literal is not None and values.get(target.id, literal) == literal:
                values[target.id] = literal
            else:
                other.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return {name: value for name, value in values.items() if name not in other}


def _literal(node: ast.expr | None, constants: Mapping[str, str]) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id, "")
    return ""


def hub_ref(call: ast.Call, called: str, constants: Mapping[str, str], path: str) -> HubRef | None:
    """The Hub model a call to ``called`` loads, when its id is a literal; else None."""
    if called not in CALLS:
        return None
    index, keywords = CALLS[called]
    by_name = {k.arg: k.value for k in call.keywords if k.arg}
    argument = call.args[index] if len(call.args) > index and not any(
        isinstance(a, ast.Starred) for a in call.args[:index + 1]) else None
    argument = next((by_name[k] for k in keywords if k in by_name), argument)
    model = _literal(argument, constants)
    if not is_hub_id(model):
        return None
    return HubRef(model, path, call.lineno, _literal(by_name.get("revision"), constants))
