"""The files slugslim ships into the app from ``boot/``: the helper apps import, and the boot scripts."""

from __future__ import annotations

import shutil
from pathlib import Path

from slugslim.core import log

BOOT_DIR = Path(__file__).parents[1] / "boot"
HELPER = Path("slugslim_models.py")
# Every file of the loader slugslim ships into the app root (the import gates let them import frameworks),
# slugslim_models.py first: slugslim_onnx.py imports it, so it only goes next to slugslim's own.
_WITHOUT = {"slugslim_models.py": "slugslim_models.path() will be whatever your file defines.",
            "slugslim_onnx.py": "slugslim_models cannot run PyTorch models on ONNX Runtime with it."}
HELPERS = frozenset(_WITHOUT)
HELPER_MARKER = "slugslim-models-helper"


def install_helper(app_dir: Path) -> bool:
    """Ship the loader (slugslim_models.py, and slugslim_onnx.py, which it imports for PyTorch models) into
    the app; False when a module of the app's own by either name stays instead."""
    shipped = 0
    for name, without in _WITHOUT.items():
        target = app_dir / name
        if target.is_symlink() or (target.exists() and HELPER_MARKER not in target.read_text(errors="replace")):
            log.warning(f"Warning: your app has its own {name}, so slugslim did not write its helper there.\n"
                        f"{without}")
        elif shipped or name == HELPER.name:
            shutil.copyfile(BOOT_DIR / name, target)
            shipped += 1
    return shipped == len(HELPERS)
