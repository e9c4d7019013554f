"""heroku/python's cache follows slugslim's settings.

heroku/python (v351 ``cache::save``) copies ``.heroku/python`` to ``CACHE_DIR/.heroku/python`` after
``bin/post_compile``, so it caches what the finish phase left, and the next build restores it: pip
finds every dist-info and installs nothing, and a file slugslim removed never comes back, even
when the setting that removed it is gone. The prepare phase runs before heroku/python restores its
cache. It keeps a fingerprint of slugslim's version and of every setting that changes what is
removed in ``CACHE_DIR/slugslim``; when the last build's differs, it clears the cached
``.heroku/python`` and heroku/python installs everything afresh (``cache::restore`` treats a missing
one as an empty cache; the Python version it records beside it stays).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from slugslim import __version__
from slugslim.core.config import Config

PYTHON_CACHE = Path(".heroku") / "python"
FINGERPRINT = Path("slugslim") / "settings-fingerprint.json"


def fingerprint(config: Config) -> dict[str, Any]:
    """What decides the removals: the swap and prune settings, and what verification imports."""
    verify = config.verify
    found: dict[str, Any] = {
        "slugslim": __version__,
        "swap": asdict(config.swap),
        "prune": asdict(config.prune),
        "verify": {"enabled": verify.enabled, "imports": list(verify.imports), "command": verify.command,
                   "boot": verify.boot, "paths": list(verify.paths)},
    }
    # A LiteRT or ONNX build caches its runtime too: switching engines starts afresh. Only then, so that
    # the caches of builds that never used runtime.engine are not cleared for a key they lack.
    if config.runtime.converts:
        found["runtime"] = {"engine": config.runtime.engine}
    return found


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": json.dumps(v) for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _why(previous: dict[str, Any] | None, current: dict[str, Any]) -> str:
    if previous is None:
        return "slugslim has no record of the settings of the build that saved it"
    if previous.get("slugslim") != current["slugslim"]:
        return f"slugslim changed from {previous.get('slugslim', 'an older version')} to {current['slugslim']}"
    old, new = _flatten(previous), _flatten(current)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return f"{'the setting' if len(changed) == 1 else 'the settings'} {', '.join(changed)} changed"


def follow_settings(cache_dir: Path, config: Config) -> str | None:
    """Clear heroku/python's cached site-packages if the settings changed. Returns why, or None."""
    current = json.loads(json.dumps(fingerprint(config)))  # tuples as the file holds them: lists
    record = cache_dir / FINGERPRINT
    try:
        loaded = json.loads(record.read_text(encoding="utf-8"))
        previous = loaded if isinstance(loaded, dict) else None
    except (OSError, ValueError):
        previous = None
    cached = cache_dir / PYTHON_CACHE
    reason = None
    if previous != current and (cached.is_dir() or cached.is_symlink()):
        reason = _why(previous, current)
        _drop(cached)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return reason


def clear(cache_dir: Path) -> None:
    """Forget everything: heroku/python's cached packages and the settings they followed.

    What a ``follow_settings`` that stopped halfway leaves: heroku/python then installs everything
    afresh, and the next build has no record to compare with, so it clears what this one saves.
    """
    _drop(cache_dir / PYTHON_CACHE)
    (cache_dir / FINGERPRINT).unlink(missing_ok=True)


def _drop(cached: Path) -> None:
    if cached.is_symlink():
        cached.unlink()
    elif cached.is_dir():
        shutil.rmtree(cached)
