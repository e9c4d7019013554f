"""Phase 1, run by bin/compile before heroku/python installs anything.

It validates the settings, rewrites the dependency declarations (the TensorFlow swap) and
installs the bin/post_compile hook that runs the finish phase. It must leave no
``.heroku/python``, no ``venv``/``.venv``, no second package-manager file and no PYTHONHOME:
heroku/python refuses to build with any of those.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slugslim import __version__
from slugslim.core import buildcache, config, lfs, log, stash
from slugslim.core.arguments import existing_dir
from slugslim.core.state import read_state, write_state
from slugslim.deps import pyversion, sources
from slugslim.prepare import hook, preflight
from slugslim.prepare.swap import rewrite


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
    settings = load_config(build_dir, env)
    if not args.no_hook:
        # heroku/python restores its cache after this, and it holds what the last finish phase left.
        cleared = buildcache.follow_settings(args.cache_dir, settings)
        if cleared:
            log.detail(f"Cleared heroku/python's cached packages ({cleared}), so that this build installs them "
                       "in full and slims them with the current settings")
            stash.drop(args.cache_dir)
        try:
            put_back = stash.reinsert(args.cache_dir)
        except OSError as exc:  # the cache is an optimisation: never a reason to fail the build
            stash.drop(args.cache_dir)
            put_back = f"Dropped the TensorFlow kept by the last build, which could not be put back: {exc}"
        if put_back:
            log.detail(put_back)
    state = read_state(build_dir)
    state.version, state.buildpack, state.python, state.tools = __version__, str(args.buildpack), args.python, \
        str(args.tools)
    state.lfs = [pointer.to_json() for pointer in lfs.check(build_dir, settings.models.lfs)]
    python = pyversion.app_python(build_dir, args.cache_dir)
    if args.no_hook:
        # heroku/python has installed everything already: rewriting requirements.txt now would change
        # nothing that got installed. The finish phase's fix-up replaces any GPU TensorFlow instead.
        state.swap = rewrite.SwapResult(enabled=settings.swap.enabled,
                                        manager=sources.package_manager(build_dir)).state()
    else:
        checked = preflight.check(build_dir, python, settings.swap, preflight.index_settings(build_dir, env))
        state.preflight = checked.to_json()
        if checked.chosen:
            python = pyversion.app_python(build_dir, args.cache_dir)
        state.swap = rewrite.prepare(build_dir, settings, env, python=python, cache_dir=args.cache_dir).state()
    state.app_python = python.to_json()

    if not args.no_hook:
        state.hook = hook.install(build_dir, args.buildpack, args.python, args.tools)
        if hook.has_original(state.hook):
            log.detail("Your bin/post_compile will run first, then slugslim's finishing step")
    write_state(build_dir, state)
    return 0
