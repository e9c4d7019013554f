"""The lockers slugslim re-locks with are heroku/python's own versions (deps/lockers.py, lib/lockers/)."""

from __future__ import annotations

import pytest

from slugslim.deps import lockers
from tests.heroku import packagemanagers, real


@pytest.mark.parametrize("manager", lockers.MANAGERS)
def test_each_locker_is_pinned_at_heroku_pythons_version(manager: str) -> None:
    assert lockers.pinned_version(manager) == real.pinned(manager, "the pins are not compared with heroku/python's")


@pytest.mark.parametrize("manager", lockers.MANAGERS)
def test_the_emulated_heroku_python_pins_what_slugslim_pins(manager: str) -> None:
    # Its tools are installed from slugslim's pins (tests/heroku/packagemanagers.py): one lock of each.
    assert packagemanagers.versions()[manager] == lockers.pinned_version(manager)


@pytest.mark.parametrize("manager", lockers.MANAGERS)
def test_each_locker_lock_is_hashed_and_pins_the_version_its_input_names(manager: str) -> None:
    lock = lockers.lock_file(manager).read_text(encoding="utf-8")
    wanted = next(line for line in lockers.lock_file(manager).with_suffix(".in").read_text(encoding="utf-8")
                  .splitlines() if line.startswith(f"{manager}=="))
    assert wanted == f"{manager}=={lockers.pinned_version(manager)}"
    pins = [line for line in lock.splitlines() if line and not line.startswith((" ", "#"))]
    assert pins and all(line.endswith("\\") for line in pins), "every pin carries its hashes"
