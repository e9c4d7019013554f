"""The one pip environment: every pip slugslim runs sees the app's settings as heroku/python's pip does.

heroku/python (v351 ``lib/pip.sh``) hands its pip the build's own environment and, of the app's
config vars, only ``PIP_EXTRA_INDEX_URL``. Every pip slugslim runs for the app (lookups, the
re-lock, the fix-up, the ai-edge-litert install) gets the same: a ``PIP_INDEX_URL`` config var, for
example, never reaches any of them, so that none installs from another index than the build did.
heroku/python runs ``bin/post_compile`` with the config vars exported, so the finish phase finds
them in its own environment too: there, a ``PIP_*`` variable that is also a config var is the
config var, and it is left out the same way.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

# Of the app's config vars, heroku/python hands only this one to its pip.
APP_PIP_VARS = ("PIP_EXTRA_INDEX_URL",)
# The process environment's settings that decide where pip looks (the preflight reads the same).
PIP_INDEX_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_TRUSTED_HOST",
                  "PIP_CERT", "PIP_CLIENT_CERT", "PIP_PRE")


def environment(config_vars: Mapping[str, str], *, tools: Sequence[str] = ("pip",),
                python: Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for one pip run: this process's, without PYTHON* settings and the app's other
    ``PIP_*`` config vars, plus the app's ``PIP_EXTRA_INDEX_URL``. ``tools``: modules of slugslim's own
    tools that the run imports (pip, pip-tools), put on PYTHONPATH; none when it is the app's own pip.
    ``python``: the app's interpreter, first on PATH as in heroku/python's build, for build backends.
    ``base``: another environment than this process's to start from.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("PYTHON")
           and not (k.startswith("PIP_") and k in config_vars and k not in APP_PIP_VARS)}
    env.update({k: v.strip() for k, v in config_vars.items() if k in APP_PIP_VARS})
    paths: list[str] = []
    for module in tools:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin and str(Path(spec.origin).parent.parent) not in paths:
            paths.append(str(Path(spec.origin).parent.parent))
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    if python is not None:
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def for_app(python: Path, site_packages: Path | None,
            config_vars: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment of pip for the app's Python: its own pip, or, when heroku/python
    left none (uv apps), ours run by the app's Python through pip's own runner (what ``--python``
    does), which imports only pip from our tools: with our tools on PYTHONPATH instead, pip would
    take their packages (packaging, click...) for the app's and not install them."""
    if site_packages is not None and (site_packages / "pip" / "__init__.py").is_file():
        return [str(python), "-m", "pip"], environment(config_vars, tools=(), python=python)
    spec = importlib.util.find_spec("pip")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("pip is not among slugslim's tools")
    runner = Path(spec.origin).parent / "__pip-runner__.py"
    return [str(python), str(runner)], environment(config_vars, tools=(), python=python)
