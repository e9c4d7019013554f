"""Phase 1, run by bin/compile before heroku/python installs anything.

It validates the settings, rewrites the dependency declarations (the CPU swap) and installs the
bin/post_compile hook that runs the finish phase. It must leave no ``.heroku/python``, no
``venv``/``.venv``, no second package-manager file and no PYTHONHOME: heroku/python refuses to
build with any of those.

It fails open, as the finish phase does, through the same guard (``core.failopen``): a step that
raises is skipped with a warning naming it, the files it may have written (``Backup``: the
dependency files, ``.python-version``, the hook) are put back byte for byte, and the build goes on,
as heroku/python alone would run it for what that step would have done. What no step guards fails
open as a whole: every file back as the user wrote it, no hook, the slug not slimmed. Only what the
user has to fix stops the build (``SlugslimError.fails_build``): invalid settings, ``models.lfs:
fail``, a Python version heroku/python would reject, a pinned Python without a wheel for a framework.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slugslim import __version__
from slugslim.core import buildcache, config, failopen, lfs, log, stash
from slugslim.core.arguments import existing_dir
from slugslim.core.state import STATE_DIR, STATE_FILE, PrepareState, read_state, write_state
from slugslim.deps import pyversion, sources
from slugslim.prepare import hook, preflight
from slugslim.prepare.swap import rewrite

# The steps, as the build log names one it skipped.
CACHE = "matching heroku/python's build cache to slugslim's settings"
LFS = "looking for Git LFS pointers"
PREFLIGHT = "checking that your app's Python has wheels for its frameworks"
SWAP = "switching GPU builds to CPU builds in your dependency files"
HOOK = "setting up the bin/post_compile hook that slims the slug after the install"
STEPS = (CACHE, LFS, PREFLIGHT, SWAP, HOOK)
WHOLE = "preparing your app"
# What the hook step may write: the hook, the app's own one moved aside, the state for the finish phase.
HOOK_FILES = (hook.HOOK.parent, hook.HOOK, Path(STATE_DIR), hook.STASH, Path(STATE_DIR) / STATE_FILE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build_dir", type=existing_dir)
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("env_dir", type=Path)
    parser.add_argument("--buildpack", type=Path, required=True, help="this buildpack's directory")
    parser.add_argument("--python", required=True, help="the system python3 that runs slugslim")
    parser.add_argument("--tools", type=Path, required=True, help="where the bootstrapped tools live")
    parser.add_argument("--no-hook", action="store_true", help="heroku/python already ran: do not install the hook")


def load_config(build_dir: Path, env: dict[str, str]) -> config.Config:
    loaded = config.load(build_dir, env)
    for warning in loaded.warnings:
        log.warning(f"Warning: {warning}")
    if loaded.file_found:
        log.detail(f"Using settings from {config.CONFIG_FILE}")
    return loaded.config


def run(args: argparse.Namespace) -> int:
    build_dir: Path = args.build_dir
    env = config.read_env_dir(args.env_dir)
    everything = failopen.Backup(build_dir, [*sources.declaration_files(build_dir), *HOOK_FILES])
    skipped: dict[str, str] = {}  # the steps skipped, as the guard records them
    failopen.guard(WHOLE, lambda: _prepare(args, env, skipped), env, undo=everything.restore, skipped=skipped)
    if WHOLE in skipped:
        log.detail("Nothing in your app was changed: heroku/python builds it as usual, and the slug is not slimmed")
    return 0


def _prepare(args: argparse.Namespace, env: dict[str, str], skipped: dict[str, str]) -> None:
    build_dir: Path = args.build_dir
    settings = load_config(build_dir, env)
    if not args.no_hook:
        # heroku/python restores its cache after this, and it holds what the last finish phase left.
        failopen.guard(CACHE, lambda: _follow_settings(args.cache_dir, settings), env,
                       undo=lambda: _forget_cache(args.cache_dir))
    state = read_state(build_dir)
    state.version, state.buildpack, state.python, state.tools = __version__, str(args.buildpack), args.python, \
        str(args.tools)
    state.lfs = failopen.guard(LFS, lambda: [p.to_json() for p in lfs.check(build_dir, settings.models.lfs)],
                               env) or []
    # A version file heroku/python would reject stops the build here: the user's to fix.
    python = pyversion.app_python(build_dir, args.cache_dir)
    # What the fix-up needs when the swap does not run: it replaces GPU builds after the install.
    state.swap = rewrite.SwapResult(enabled=settings.swap.enabled, manager=sources.package_manager(build_dir)).state()
    if not args.no_hook:
        python = _before_install(args, python, settings, env, state)
    state.app_python = python.to_json()
    if args.no_hook:
        write_state(build_dir, state)
        return
    failopen.guard(HOOK, lambda: _install_hook(args, state), env, undo=failopen.Backup(build_dir, HOOK_FILES).restore,
                   skipped=skipped)
    if HOOK in skipped:
        log.detail("The slug is not slimmed in this build: nothing runs slugslim after heroku/python installs "
                   "your packages")


def _before_install(args: argparse.Namespace, python: pyversion.AppPython, settings: config.Config,
                    env: dict[str, str], state: PrepareState) -> pyversion.AppPython:
    """The wheel preflight, then the swap, each guarded. Returns the app's Python, which the preflight may pick."""
    build_dir: Path = args.build_dir
    checked = failopen.guard(
        PREFLIGHT, lambda: preflight.check(build_dir, python, settings.swap, preflight.index_settings(build_dir, env)),
        env, undo=failopen.Backup(build_dir, [Path(pyversion.VERSION_FILE)]).restore)
    if checked is not None:
        state.preflight = checked.to_json()
        if checked.chosen:
            python = pyversion.app_python(build_dir, args.cache_dir)
    chosen = python
    swapped = failopen.guard(
        SWAP, lambda: rewrite.prepare(build_dir, settings, env, python=chosen, cache_dir=args.cache_dir), env,
        undo=failopen.Backup(build_dir, sources.declaration_files(build_dir)).restore)
    if swapped is not None:
        state.swap = swapped.state()
    return python


def _follow_settings(cache_dir: Path, settings: config.Config) -> None:
    cleared = buildcache.follow_settings(cache_dir, settings)
    if cleared:
        log.detail(f"Cleared heroku/python's cached packages ({cleared}), so that this build installs them "
                   "in full and slims them with the current settings")
        stash.drop(cache_dir)
    try:
        put_back = stash.reinsert(cache_dir)
    except OSError as exc:  # the cache is an optimisation: never a reason to fail the build
        stash.drop(cache_dir)
        put_back = f"Dropped the framework kept by the last build, which could not be put back: {exc}"
    if put_back:
        log.detail(put_back)


def _forget_cache(cache_dir: Path) -> None:
    """After a cache step that stopped halfway: heroku/python installs everything afresh."""
    stash.drop(cache_dir)
    buildcache.clear(cache_dir)


def _install_hook(args: argparse.Namespace, state: PrepareState) -> None:
    state.hook = hook.install(args.build_dir, args.buildpack, args.python, args.tools)
    write_state(args.build_dir, state)
    log.detail("Installed a bin/post_compile hook: slugslim finishes after heroku/python installs your packages")
    if hook.has_original(state.hook):
        log.detail("Your bin/post_compile will run first, then slugslim's finishing step")
