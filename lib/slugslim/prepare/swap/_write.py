"""Writing a file of the app: atomically, keeping its mode, never outside the app dir.

The requirements swap (``rewrite``) and the lock swap (``locks``) write through here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes(path: Path, data: bytes, boundary: Path) -> None:
    """Replace a file atomically, keeping its mode; never outside the app dir or through a symlink out."""
    resolved = path.resolve()
    if not resolved.is_relative_to(boundary.resolve()):
        raise ValueError(f"refusing to write outside the app: {path}")
    mode = resolved.stat().st_mode & 0o7777
    handle, temp = tempfile.mkstemp(dir=resolved.parent, prefix=f".{resolved.name}.slugslim-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, mode)
        os.replace(temp, resolved)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise

