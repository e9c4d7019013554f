"""Phase 2, run after heroku/python has installed everything (from the bin/post_compile hook).

Order matters: the app's own hook runs first (it may need the models and every file), then the
fix-up of GPU builds, the verified prune, the models, and last the report, which reads what the
others did. At the end the app's own bin/post_compile is back as it was.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from slugslim import config, fixup, hook, log, models, prune, report
from slugslim.cli import existing_dir
from slugslim.context import STATE_DIR, STATE_FILE, FinishContext, app_python, find_site_packages, read_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build_dir", type=existing_dir)
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("env_dir", type=Path)
    parser.add_argument("--hook", action="store_true", help="called from the bin/post_compile hook")


def run(args: argparse.Namespace) -> int:
    build_dir: Path = args.build_dir
    state = read_state(build_dir)
    if args.hook:
        record = state.get("hook", {})
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
    log.step("Slimming the slug")
    log.detail(f"Site-packages: {ctx.site_packages.relative_to(build_dir) if ctx.site_packages else 'none found'}")
    # Measured before any change, so the report can say what each lever saved.
    before = report.snapshot(build_dir) if settings.report.enabled else None
    # The swap fix-up goes before pruning: it decides which packages are installed.
    _timed(lambda: fixup.run(ctx))
    _timed(lambda: prune.run(ctx))
    # Last of the steps that change the app: every build step, the app's own hook included, has had the models.
    _timed(lambda: models.run(ctx))
    if before is not None:
        _timed(lambda: report.run(ctx, before))
    _cleanup_state(build_dir)
    log.detail(f"slugslim finished in {log.seconds(time.monotonic() - started)}")
    return 0


def _timed(body: Callable[[], object]) -> None:
    """Run one finish step; if it opened a step in the build log, close it with its duration."""
    opened = log.steps_printed()
    started = time.monotonic()
    body()
    if log.steps_printed() > opened:
        log.detail(f"Done ({log.seconds(time.monotonic() - started)})")


def _cleanup_state(build_dir: Path) -> None:
    """Leave only what belongs in the slug (report.json, models.json) under .slugslim/."""
    state_dir = build_dir / STATE_DIR
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    stash = build_dir / hook.STASH
    if stash.exists() and not stash.is_symlink() and stash.is_dir():
        shutil.rmtree(stash)
    if state_dir.is_dir() and not any(state_dir.iterdir()):
        state_dir.rmdir()
