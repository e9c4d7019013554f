"""The files slugslim ships into the app from ``boot/``: the helper apps import, and the boot scripts."""

from __future__ import annotations

import shutil
from pathlib import Path

from slugslim.core import log

BOOT_DIR = Path(__file__).parents[1] / "boot"
HELPER = Path("slugslim_models.py")
# Every file of the loader slugslim ships into the app root (the import gates let them import frameworks).
HELPERS = frozenset({"slugslim_models.py", "slugslim_onnx.py"})
HELPER_MARKER = "slugslim-models-helper"


def install_helper(app_dir: Path) -> bool:
    """Ship slugslim_models.py into the app, unless the app has a module of its own by that name."""
    target = app_dir / HELPER
    if target.is_symlink() or (target.exists() and HELPER_MARKER not in target.read_text(errors="replace")):
        log.warning(
            "Warning: your app has its own slugslim_models.py, so slugslim did not write its helper there.\n"
            "slugslim_models.path() will be whatever your file defines."
        )
        return False
    shutil.copyfile(BOOT_DIR / "slugslim_models.py", target)
    return True
