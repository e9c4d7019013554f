"""What ``litert_tool.py`` and ``onnx_tool.py`` share besides the comparison (``compare_tool``): the
command line with its atomic result file, and seeded random inputs. Each script imports it from its
own directory, so it is standalone like them: stdlib only, numpy passed in by the caller."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Action = Callable[[dict[str, Any]], dict[str, Any]]


def main(argv: list[str], convert: Action, check: Action) -> int:
    """``<script> convert|check REQUEST.json RESULT.json``: RESULT.json appears whole or not at all."""
    if len(argv) != 4 or argv[1] not in ("convert", "check"):
        sys.stderr.write(f"usage: {Path(argv[0]).name} convert|check REQUEST.json RESULT.json\n")
        return 2
    request = json.loads(Path(argv[2]).read_text(encoding="utf-8"))
    output = Path(argv[3]).absolute()  # check changes to the build dir
    result = convert(request) if argv[1] == "convert" else check(request)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    partial.replace(output)
    return 0


def random_array(np: Any, rng: Any, dtype: str, size: tuple[int, ...]) -> Any:
    """Seeded random values of a numpy ``dtype`` (floats normal, integers 0 to 7, booleans); None for
    another dtype, which the caller names."""
    if dtype.startswith("float"):
        return rng.standard_normal(size).astype(dtype)
    if dtype.startswith(("int", "uint")):
        return rng.integers(0, 8, size).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, size).astype(bool)
    return None
