"""What every finish-phase step gets: where the app is, its interpreter, the config, the results so far."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from slugslim.core.config import Config
from slugslim.core.errors import BudgetError
from slugslim.core.results import Results
from slugslim.core.state import PrepareState

# Where the app's Python lives on a dyno; heroku/python symlinks it to BUILD_DIR/.heroku/python.
APP_PYTHON_HOME = Path("/app/.heroku/python")


def app_python(build_dir: Path, linked: Path = APP_PYTHON_HOME) -> Path:
    """The interpreter heroku/python installed into the app, by the path heroku/python runs it.

    heroku/python runs its Python as /app/.heroku/python/bin/python, through a symlink to
    BUILD_DIR/.heroku/python, so that ``sys.executable``, console-script shebangs, ``.pth`` files
    and ``direct_url.json`` name /app, where the app lives at run time. When that symlink points
    at this build (or BUILD_DIR is /app), every run of the app's Python and pip goes through it
    too; otherwise (a local ``slugslim prune``, a build dir from elsewhere) through BUILD_DIR.
    """
    home = build_dir / ".heroku" / "python"
    try:
        if linked.resolve(strict=True) == home.resolve(strict=True):
            return linked / "bin" / "python"
    except OSError:
        pass
    return home / "bin" / "python"


def find_site_packages(build_dir: Path) -> Path | None:
    """``.heroku/python/lib/pythonX.Y/site-packages``, the only site-packages heroku/python uses."""
    lib = build_dir / ".heroku" / "python" / "lib"
    if not lib.is_dir():
        return None
    candidates = sorted(p for p in lib.glob("python3.*/site-packages") if p.is_dir() and not p.is_symlink())
    return candidates[-1] if candidates else None


@dataclass
class FinishContext:
    """The finish phase's view of the build. Steps read it and put their typed result into ``results``."""

    build_dir: Path
    cache_dir: Path | None
    env: dict[str, str]
    config: Config
    python: Path
    site_packages: Path | None
    state: PrepareState = field(default_factory=PrepareState)
    results: Results = field(default_factory=Results)
    # time.monotonic() at which the finish phase's budget runs out
    deadline: float = math.inf
    # What slugslim's .profile.d scripts set on the dyno (with the build's paths), for the later checks.
    dyno_env: dict[str, str] = field(default_factory=dict)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, limit: float) -> float:
        """``limit`` seconds, or what is left of the budget when that is less. BudgetError if none is."""
        left = self.time_left()
        if left <= 0:
            raise BudgetError(self.config.budget)
        return min(limit, left)

    def python_env(self) -> dict[str, str]:
        """The environment the app's interpreter sees at dyno boot, as far as imports go.

        heroku/python sets PYTHONPATH to the app dir at run time, so app modules import by name.
        PYTHONHOME is never set here: heroku/python refuses to build with it.
        """
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
        env.update({k: v for k, v in self.env.items() if k not in ("PYTHONHOME", "PATH", "LD_LIBRARY_PATH")})
        env.update(self.dyno_env)
        env["PYTHONPATH"] = str(self.build_dir)
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', os.defpath)}"
        env.pop("PYTHONHOME", None)
        return env
