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
        found = data.get("swap")
        swap: dict[str, Any] = found if isinstance(found, dict) else {}
        lines = []
        for item in swap.get("swaps") or []:
            if isinstance(item, dict) and item.get("action"):
                sizes = [(item.get(k) or {}).get("size") for k in ("old_wheel", "new_wheel")]
                lines.append(SwapLine(
                    action=str(item["action"]), old=" ".join(str(item.get("old") or "").split()),
                    new=" ".join(str(item.get("new") or "").split()), reason=str(item.get("reason") or ""),
                    saved_bytes=item["saved_bytes"] if isinstance(item.get("saved_bytes"), int) else None,
                    old_wheel_bytes=sizes[0] if isinstance(sizes[0], int) else None,
                    new_wheel_bytes=sizes[1] if isinstance(sizes[1], int) else None))

        def section(name: str) -> dict[str, Any]:
            value = data.get(name)
            return value if isinstance(value, dict) else {}

        return cls(
            version=str(data.get("version") or ""), buildpack=str(data.get("buildpack") or ""),
            python=str(data.get("python") or ""), tools=str(data.get("tools") or ""),
            swap=SwapState(enabled=bool(swap.get("enabled", True)), manager=str(swap.get("manager") or ""),
                           python_version=str(swap.get("python_version") or ""), lines=lines),
            app_python=section("app_python"), preflight=section("preflight"),
            lfs=[p for p in data.get("lfs") or [] if isinstance(p, dict)], hook=section("hook"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "buildpack": self.buildpack, "python": self.python, "tools": self.tools,
            "swap": {"enabled": self.swap.enabled, "manager": self.swap.manager,
                     "python_version": self.swap.python_version,
                     "swaps": [_line_json(line) for line in self.swap.lines]},
            "app_python": self.app_python, "preflight": self.preflight, "lfs": self.lfs, "hook": self.hook,
        }


def _line_json(line: SwapLine) -> dict[str, Any]:
    data = asdict(line)
    data["old_wheel"] = {"size": data.pop("old_wheel_bytes")}
    data["new_wheel"] = {"size": data.pop("new_wheel_bytes")}
    return data


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
