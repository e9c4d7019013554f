"""Run one of slugslim's tool scripts with the app's Python: ``<app python> TOOL ACTION REQUEST RESULT``.

The tools (the LiteRT converter, the Hub client's downloads) need the app's own packages, so they
run under the app's interpreter, by path, and import nothing of slugslim. A request goes in as
JSON and a result comes back as JSON; exit status 0 means the result was written.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ToolFailed(Exception):
    """The tool could not run, or wrote no result; the message says why, for the build log."""


def tail(text: str, lines: int = 6) -> str:
    """The last lines a process printed, blank ones left out."""
    return "\n".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


def run(python: Path, tool: Path, action: str, request: Mapping[str, Any], env: Mapping[str, str], cwd: Path,
        timeout: float) -> dict[str, Any]:
    env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}  # the slug's bytecode is what heroku/python compiled
    with tempfile.TemporaryDirectory(prefix="slugslim-tool-") as scratch:
        request_file, result_file = Path(scratch) / "request.json", Path(scratch) / "result.json"
        request_file.write_text(json.dumps(request, indent=1), encoding="utf-8")
        try:
            done = subprocess.run([str(python), str(tool), action, str(request_file), str(result_file)],
                                  cwd=cwd, env=env, capture_output=True, text=True, errors="replace",
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ToolFailed(f"the {action} step did not finish within {timeout:.0f} s") from None
        if done.returncode != 0 or not result_file.is_file():
            raise ToolFailed(f"the {action} step failed (exit status {done.returncode}):\n"
                             + (tail(done.stderr or done.stdout) or "it printed nothing"))
        loaded = json.loads(result_file.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ToolFailed(f"the {action} step wrote a result slugslim cannot read")
    return loaded
