"""The one TOML reader: pyproject.toml, uv.lock, poetry.lock and Pipfile.

Python 3.11 and later have ``tomllib``; heroku-22's python3.10 gets ``tomli``, the same parser, from
slugslim's tools (``lib/tools.lock``). Reading only: edits to a user's file are made to its text,
so that its formatting and comments survive.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

try:
    _toml: Any = importlib.import_module("tomllib")
except ImportError:  # python3.10
    _toml = importlib.import_module("tomli")

TomlError: type[ValueError] = _toml.TOMLDecodeError


def loads(text: str) -> dict[str, Any]:
    """The document as plain data; ``TomlError`` (a ValueError) names the line and column."""
    data: dict[str, Any] = _toml.loads(text)
    return data


def read(path: Path) -> dict[str, Any] | None:
    """The file's tables, or None when it is missing or is not TOML (the tool that reads it says why)."""
    try:
        return loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TomlError):
        return None
