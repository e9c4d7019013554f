"""What the prepare phase hands the finish phase: ``PrepareState``, in ``.slugslim/state.json``.

It is read and written here only. Sections the finish phase only copies into report.json (the
app's Python, the preflight, the Git LFS pointers) stay as the prepare phase recorded them; what
the finish steps act on (the package manager, each swap) has fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = ".slugslim"
STATE_FILE = "state.json"


@dataclass
class SwapLine:
    """One requirement the swap looked at before install."""

    action: str  # swap | remove | warn | ...
    old: str = ""
    new: str = ""
    reason: str = ""
    saved_bytes: int | None = None  # the GPU wheel's size minus the CPU wheel's, when both are known
    old_wheel_bytes: int | None = None
    new_wheel_bytes: int | None = None


@dataclass
class SwapState:
    enabled: bool = True
    manager: str = ""  # pip, uv, poetry, pipenv or none
    python_version: str = ""  # the Python the swap looked up wheels for
    lines: list[SwapLine] = field(default_factory=list)


@dataclass
class PrepareState:
    version: str = ""
    buildpack: str = ""
    python: str = ""  # slugslim's own interpreter; the app's is app_python
    tools: str = ""
    swap: SwapState = field(default_factory=SwapState)
    app_python: dict[str, Any] = field(default_factory=dict)  # as pyversion.AppPython recorded it
    preflight: dict[str, Any] = field(default_factory=dict)
    lfs: list[dict[str, Any]] = field(default_factory=list)  # one per Git LFS pointer, as lfs recorded it
    hook: dict[str, Any] = field(default_factory=dict)  # prepare.hook's own record of what it moved

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PrepareState:
        """The state ``to_json`` wrote (the same build's prepare phase); missing fields keep their defaults."""
        known = {name: value for name, value in data.items() if name in cls.__dataclass_fields__}
        swap = dict(known.pop("swap", None) or {})
        lines = [SwapLine(**line) for line in swap.pop("lines", [])]
        return cls(**known, swap=SwapState(**swap, lines=lines))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_state(build_dir: Path) -> PrepareState:
    path = build_dir / STATE_DIR / STATE_FILE
    if not path.is_file():
        return PrepareState()
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return PrepareState.from_json(loaded if isinstance(loaded, dict) else {})


def write_state(build_dir: Path, state: PrepareState) -> None:
    directory = build_dir / STATE_DIR
    directory.mkdir(exist_ok=True)
    (directory / STATE_FILE).write_text(json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n",
                                        encoding="utf-8")
