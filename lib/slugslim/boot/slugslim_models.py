"""Fetch a model that slugslim took out of the slug, on first use (slugslim-models-helper).

Written into your app by the slugslim buildpack. heroku/python puts the app directory on
PYTHONPATH, so app code can do:

    from slugslim_models import path
    model = keras.models.load_model(path("models/classifier.keras"))

``path()`` returns the absolute path of a model file, SavedModel directory or checkpoint prefix,
as listed in ``.slugslim/models.json``. If the model is not there yet it is fetched first, by the
same ``.profile.d/slugslim-models.sh`` that runs at dyno boot, with the same guarantees: a temp
file next to the target, sha256 verified, moved into place atomically, never a partial file.

Prefer it over the boot-time fetch (set ``models.boot_timeout: 0`` in slugslim.yml) when
- the models are too large to download within Heroku's 60 s boot limit (R10);
- only some process types use them: a worker dyno that loads the model while the web dyno
  never does, or a model used by one rarely-called endpoint.
With the boot-time fetch left on, ``path()`` simply finds the file in place.

Models that stayed in the slug, and paths not in the manifest (your laptop), are returned
as they are, so the same code runs everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["FetchError", "path"]

_ROOT = Path(__file__).resolve().parent
_MANIFEST = _ROOT / ".slugslim" / "models.json"
_SCRIPT = _ROOT / ".profile.d" / "slugslim-models.sh"
_LOCK = threading.Lock()
_READY: set[str] = set()


class FetchError(RuntimeError):
    """A model could not be fetched; the message carries the fetch script's explanation."""


def _manifest_files() -> list[dict[str, Any]]:
    try:
        data = json.loads(_MANIFEST.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    files = data.get("files", []) if isinstance(data, dict) else []
    return [f for f in files if isinstance(f, dict)]


def _normalise(relative: str) -> str:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"slugslim_models.path() takes a path inside the app, not {relative!r}")
    return pure.as_posix()


def path(relative: str, timeout: int = 600) -> str:
    """The absolute path of a model, fetching it first if it is not in place yet."""
    key = _normalise(relative)
    target = _ROOT / key
    if key in _READY:
        return str(target)
    with _LOCK:
        if key in _READY:
            return str(target)
        wanted = [f for f in _manifest_files() if key in (f.get("path"), f.get("model"))]
        if not wanted:
            return str(target)
        _fetch(key, timeout)
        _READY.add(key)
    return str(target)


def _fetch(key: str, timeout: int) -> None:
    env = dict(os.environ, HOME=str(_ROOT))
    lock_path = _ROOT / ".slugslim" / "fetch.lock"
    try:
        import fcntl  # POSIX only; a dyno always has it
    except ImportError:  # pragma: no cover
        fcntl = None  # type: ignore[assignment]
    with open(lock_path, "a+b") as lock:
        # One fetch at a time across processes (gunicorn workers): the second finds the file in place.
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            ["bash", str(_SCRIPT), "fetch", "--timeout", str(int(timeout)), key],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
        )
    if done.stderr:
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()[-5:]
        raise FetchError(f"could not fetch {key}: " + " / ".join(lines))
