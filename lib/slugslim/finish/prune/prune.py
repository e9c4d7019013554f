"""Verified pruning of site-packages: one module per rule, one engine, one plan.

``plan`` is the dry run (``slugslim analyze`` uses it); ``run`` is the finish-phase step.
"""

from __future__ import annotations

import time
from pathlib import Path

from slugslim.core import log
from slugslim.core.config import PruneConfig
from slugslim.core.context import FinishContext
from slugslim.core.plan import Plan, PruneResult
from slugslim.core.results import snapshot
from slugslim.removal.engine import Engine, quarantine_location
from slugslim.removal.planner import plan_tree
from slugslim.removal.tree import scan

__all__ = ["PruneResult", "plan", "run"]


def plan(site_packages: Path, config: PruneConfig, imported: set[str] | frozenset[str] | None = None) -> Plan:
    """What pruning would remove, changing nothing. ``imported``: .pyc paths (relative to
    site-packages) a verification run loaded; without it ``prune.bytecode: imported`` drops nothing."""
    tree = scan(site_packages)
    tree.imported_bytecode = frozenset(imported) if imported is not None else None
    return plan_tree(tree, config)


def run(ctx: FinishContext) -> PruneResult:
    """The finish-phase step: prune ctx.site_packages, verified, and record the outcome."""
    started = time.monotonic()
    log.step("Pruning site-packages")
    site_packages = ctx.site_packages
    if not ctx.config.prune.enabled or site_packages is None:
        why = "prune is off in your slugslim config" if site_packages else "no site-packages was found"
        log.detail(f"Skipped: {why}")
        result = PruneResult("skipped", Plan(root=str(site_packages or "")), notes=[why])
        ctx.results.prune = snapshot(result)
        return result
    engine = Engine(
        site_packages=site_packages,
        config=ctx.config,
        python=ctx.python,
        env=ctx.python_env(),
        cwd=ctx.build_dir,
        quarantine_dir=quarantine_location(ctx.build_dir, site_packages),
        app_dir=ctx.build_dir,
        config_vars=ctx.env,
        source=ctx.config.origins.get("prune.keep", ctx.config.origins.get("prune.remove", "slugslim.yml")),
        deadline=ctx.deadline,
    )
    # Whatever goes wrong, the engine has put back what it moved; finish.guarded says so.
    result = engine.run()
    result.timings["total"] = time.monotonic() - started
    ctx.results.prune = snapshot(result)
    return result
