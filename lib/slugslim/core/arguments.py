"""Argument types the commands share."""

from __future__ import annotations

import argparse
from pathlib import Path


def existing_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a directory")
    return path.resolve()
