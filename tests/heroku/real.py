"""The real heroku/python, for the tests that compare the emulation or slugslim's pins with it.

``HEROKU_PYTHON_BUILDPACK`` names a checkout or a git directory of heroku/heroku-buildpack-python
(README, "Development"); without it those tests skip and say so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

VARIABLE = "HEROKU_PYTHON_BUILDPACK"
CHECKOUT = os.environ.get(VARIABLE, "")


def read(path: str, why: str) -> bytes:
    """The file at ``path`` in the real heroku/python; skips the test (saying ``why`` it needs it) when unset."""
    if not CHECKOUT:
        pytest.skip(f"{VARIABLE} is not set: {why}")
    if (Path(CHECKOUT) / path).is_file():
        return (Path(CHECKOUT) / path).read_bytes()
    return subprocess.run(["git", "-C", CHECKOUT, "show", f"HEAD:{path}"], capture_output=True, check=True).stdout


def pinned(tool: str, why: str) -> str:
    """The version heroku/python's ``requirements/<tool>.txt`` pins."""
    text = read(f"requirements/{tool}.txt", why).decode()
    return next(line for line in text.splitlines() if line.startswith(f"{tool}==")).split("==", 1)[1].strip()
