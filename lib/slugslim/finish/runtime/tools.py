"""What the LiteRT step runs with the app's Python: ``litert_tool.py`` and pip for ``ai-edge-litert``.

``litert_tool.py`` (the converter and verifier, stdlib + numpy + TensorFlow or LiteRT) runs as
``<app python> litert_tool.py convert|check REQUEST.json RESULT.json``; exit status 0 means it
wrote RESULT.json. ``ai-edge-litert`` is installed the way the fix-up installs: the app's pip (or
ours aimed at the app's Python), binary wheels only, no pip cache, so that pip chooses the newest
version with a wheel for the app's Python. Of the app's config vars only ``PIP_EXTRA_INDEX_URL``
reaches it, as with heroku/python's pip. A dry run first: when the install would change a
distribution that is already there (a numpy downgrade, say), nothing is installed, so that
undoing it is always uninstalling exactly what it added.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from slugslim.core import apptool, pip
from slugslim.core.context import FinishContext
from slugslim.core.errors import NotShipped
from slugslim.core.installed import read_dists
from slugslim.finish.runtime.plan import LITERT

TOOL = Path(__file__).parent / "litert_tool.py"


def run_tool(ctx: FinishContext, action: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One run of ``litert_tool.py``; NotShipped when it could not run at all."""
    try:
        loaded = apptool.run(ctx.python, TOOL, action, request, ctx.python_env(), ctx.build_dir, timeout)
    except apptool.ToolFailed as exc:
        raise NotShipped(str(exc)) from None
    if not isinstance(loaded.get("models"), list):
        raise NotShipped(f"the {action} step wrote a result slugslim cannot read")
    return loaded


def _run_pip(ctx: FinishContext, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    command, env = pip.for_app(ctx.python, ctx.site_packages, ctx.env)
    try:
        return subprocess.run([*command, *args], cwd=ctx.build_dir, env=env, capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise NotShipped(f"pip did not finish within {timeout:.0f} s") from None


def install_litert(ctx: FinishContext, timeout: float) -> tuple[list[str], str]:
    """Install ai-edge-litert and what it needs; returns (the distributions newly installed, its version)."""
    assert ctx.site_packages is not None
    before = read_dists(ctx.site_packages)
    args = ["install", "--only-binary=:all:", "--no-cache-dir", "--no-input", "--quiet", LITERT]
    with tempfile.TemporaryDirectory(prefix="slugslim-litert-pip-") as scratch:
        report = Path(scratch) / "report.json"
        dry = _run_pip(ctx, [*args[:1], "--dry-run", "--report", str(report), *args[1:]], timeout)
        if dry.returncode != 0 or not report.is_file():
            raise NotShipped(f"pip found no {LITERT} wheel for the app's Python:\n"
                             f"{apptool.tail(dry.stderr + dry.stdout)}")
        planned = json.loads(report.read_text(encoding="utf-8")).get("install") or []
    changes = []
    for item in planned:
        meta = item.get("metadata", {})
        name = canonicalize_name(str(meta.get("name", "")))
        if name in before:
            changes.append(f"{name} {before[name].version} -> {meta.get('version')}")
    if changes:
        raise NotShipped(f"installing {LITERT} would change what your app installed: {', '.join(changes)}")
    done = _run_pip(ctx, args, timeout)
    after = read_dists(ctx.site_packages)
    added = sorted(set(after) - set(before))
    if done.returncode != 0:
        uninstall(ctx, added, timeout)
        raise NotShipped(f"pip could not install {LITERT}:\n{apptool.tail(done.stderr + done.stdout)}")
    litert = after.get(LITERT)
    return added, litert.version if litert else ""


def uninstall(ctx: FinishContext, names: list[str], timeout: float) -> None:
    """Take out what ``install_litert`` added (pip removes their files, scripts and dist-info)."""
    if names:
        _run_pip(ctx, ["uninstall", "--yes", "--quiet", *names], timeout)
