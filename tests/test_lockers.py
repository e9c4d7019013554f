"""The lockers slugslim re-locks with are heroku/python's own versions (deps/lockers.py, lib/lockers/)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from slugslim.deps import lockers

# A git directory (or checkout) of heroku/heroku-buildpack-python (README, "Development").
HEROKU_PYTHON = os.environ.get("HEROKU_PYTHON_BUILDPACK", "")


def heroku_python_pin(manager: str) -> str:
    """The version heroku/python's requirements/<manager>.txt pins."""
    if Path(HEROKU_PYTHON, ".git").exists() or not Path(HEROKU_PYTHON, "HEAD").is_file():
        text = Path(HEROKU_PYTHON, "requirements", f"{manager}.txt").read_text(encoding="utf-8")
    else:
        text = subprocess.run(["git", "-C", HEROKU_PYTHON, "show", f"HEAD:requirements/{manager}.txt"],
                              capture_output=True, text=True, check=True).stdout
    line = next(line for line in text.splitlines() if line.startswith(f"{manager}=="))
    return line.split("==", 1)[1].strip()


@pytest.mark.parametrize("manager", lockers.MANAGERS)
def test_each_locker_is_pinned_at_heroku_pythons_version(manager: str) -> None:
    if not HEROKU_PYTHON:
        pytest.skip("HEROKU_PYTHON_BUILDPACK is not set: the pins are not compared with heroku/python's")
    assert lockers.pinned_version(manager) == heroku_python_pin(manager)


@pytest.mark.parametrize("manager", lockers.MANAGERS)
def test_each_locker_lock_is_hashed_and_pins_the_version_its_input_names(manager: str) -> None:
    lock = lockers.lock_file(manager).read_text(encoding="utf-8")
    wanted = next(line for line in lockers.lock_file(manager).with_suffix(".in").read_text(encoding="utf-8")
                  .splitlines() if line.startswith(f"{manager}=="))
    assert wanted == f"{manager}=={lockers.pinned_version(manager)}"
    pins = [line for line in lock.splitlines() if line and not line.startswith((" ", "#"))]
    assert pins and all(line.endswith("\\") for line in pins), "every pin carries its hashes"
