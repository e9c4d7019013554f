"""Phase 2, run after heroku/python has installed everything (from the bin/post_compile hook).

Order matters: the app's own hook runs first (it may need the models and every file), then the
fix-up of GPU builds, the Hugging Face models (downloaded at build time), the LiteRT runtime
(``runtime.engine: litert``), the verified prune, the models, the memory fit, the removal of what
the checks left under HOME, and last the report, which reads what the others did.
At the end the app's own bin/post_compile is back as it was.

Every step runs through the one guard of both phases (``core.failopen``), because slugslim must never
be the reason a deploy fails: a step that raises is skipped with a warning that names it, after putting
back what it had half done (each step undoes its own work on the way out: the quarantines roll back),
and the build goes on. Only what the user asked to be strict about fails the build
(``SlugslimError.fails_build``).
The whole phase has a time budget (the ``budget`` setting); a step that finds it used up is skipped,
and the steps pass what is left down to their verification timeouts.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from slugslim.core import config, failopen, log
from slugslim.core.arguments import existing_dir
from slugslim.core.context import FinishContext, app_python, find_site_packages
from slugslim.core.errors import BudgetError
from slugslim.core.state import STATE_DIR, STATE_FILE, read_state
from slugslim.finish import leftovers, memory
from slugslim.finish.fixup import fixup
from slugslim.finish.hub import hub
from slugslim.finish.models import models
from slugslim.finish.prune import prune
from slugslim.finish.report import report
from slugslim.finish.runtime import runtime
from slugslim.prepare import hook

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build_dir", type=existing_dir)
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("env_dir", type=Path)
    parser.add_argument("--hook", action="store_true", help="called from the bin/post_compile hook")


def run(args: argparse.Namespace) -> int:
    build_dir: Path = args.build_dir
    state = read_state(build_dir)
    if args.hook:
        record = state.hook
        hook.restore(build_dir, record)
        status = hook.run_original(build_dir, record)
        if status != 0:
            # Exactly what heroku/python does with a failing hook: the build fails.
            return status

    env = config.read_env_dir(args.env_dir)
    settings = config.load(build_dir, env).config
    python = app_python(build_dir)
    if not python.exists():
        log.step("Slimming the slug")
        log.detail("No Python installed by heroku/python was found in .heroku/python, so there is nothing to slim.")
        _cleanup_state(build_dir)
        return 0

    ctx = FinishContext(
        build_dir=build_dir,
        cache_dir=args.cache_dir,
        env=env,
        config=settings,
        python=python,
        site_packages=find_site_packages(build_dir),
        state=state,
    )
    started = time.monotonic()
    ctx.deadline = started + settings.budget
    log.step("Slimming the slug")
    log.detail(f"Site-packages: {ctx.site_packages.relative_to(build_dir) if ctx.site_packages else 'none found'}")
    # What is under HOME now is the app's, its own hook's work included; what the checks add is not.
    watched = leftovers.watch(build_dir)
    # Measured before any change, so the report can say what each lever saved.
    before = guarded(ctx, "measuring the slug", lambda: report.snapshot(build_dir)) if settings.report.enabled \
        else None
    # The swap fix-up goes before pruning: it decides which packages are installed.
    guarded(ctx, "the CPU fix-up of GPU builds", lambda: fixup.run(ctx))
    # Before the runtime step, so that a later engine finds the model files; after the fix-up, whose
    # packages the app runs on.
    guarded(ctx, "downloading Hugging Face models at build time", lambda: hub.run(ctx))
    # Before the prune: it then prunes the engine, not a framework about to go, and verifies on the engine.
    guarded(ctx, "serving the models with LiteRT or ONNX Runtime", lambda: runtime.run(ctx))
    guarded(ctx, "pruning site-packages", lambda: prune.run(ctx))
    # Last of the steps that change the app: every build step, the app's own hook included, has had the models.
    guarded(ctx, "taking models out of the slug", lambda: models.run(ctx))
    # After the prune: its import check measured the memory a web process needs.
    guarded(ctx, "fitting web processes to the dyno's memory", lambda: memory.run(ctx))
    # After every step that runs the app, before the report measures the slug.
    guarded(ctx, "removing what the checks left under HOME", lambda: leftovers.run(ctx, watched))
    if before is not None:
        guarded(ctx, "the slug report", lambda: report.run(ctx, before))
    _cleanup_state(build_dir)
    log.detail(f"slugslim finished in {log.seconds(time.monotonic() - started)}")
    return 0


def guarded(ctx: FinishContext, name: str, body: Callable[[], T]) -> T | None:
    """Run one finish step through the guard (``core.failopen``); close its log step with its duration.

    ``name`` says in the build log which step was skipped. Errors that ``fails_build`` (invalid
    settings, verify.strict, models.strict) still fail it. Returns the step's result, or None.
    """
    if ctx.time_left() <= 0:
        failopen.skip(name, BudgetError(ctx.config.budget), ctx.env, ctx.results.skipped)
        return None
    opened = log.steps_printed()
    started = time.monotonic()
    result = failopen.guard(name, body, ctx.env, skipped=ctx.results.skipped)
    if name not in ctx.results.skipped and log.steps_printed() > opened:
        log.detail(f"Done ({log.seconds(time.monotonic() - started)})")
    return result


def _cleanup_state(build_dir: Path) -> None:
    """Leave only what belongs in the slug (report.json, models.json) under .slugslim/."""
    state_dir = build_dir / STATE_DIR
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    stash = build_dir / hook.STASH
    if stash.exists() and not stash.is_symlink() and stash.is_dir():
        shutil.rmtree(stash)
    if state_dir.is_dir() and not any(state_dir.iterdir()):
        state_dir.rmdir()
