"""``slugslim prune SITE_PACKAGES``: the build's pruning engine on any site-packages directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slugslim.core import config, log
from slugslim.core.arguments import existing_dir
from slugslim.removal.engine import Engine, default_python, quarantine_location


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("site_packages", type=existing_dir, metavar="SITE_PACKAGES")
    parser.add_argument("--python", help="the interpreter that imports from SITE_PACKAGES "
                        "(default: its prefix's bin/python, else this one with PYTHONPATH)")
    parser.add_argument("--config", type=Path, help="a slugslim.yml to read (default: built-in defaults)")
    parser.add_argument("--app", type=existing_dir, help="an app dir whose imports the verification checks")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--json", action="store_true", help="print the plan and the result as JSON")


def run(args: argparse.Namespace) -> int:
    site_packages: Path = args.site_packages
    config_dir = args.config.resolve().parent if args.config else None
    if args.config and args.config.name != config.CONFIG_FILE:
        # config.load reads <dir>/slugslim.yml; point it at the file the user named.
        loaded = _load_named(args.config)
    else:
        loaded = config.load(config_dir) if config_dir else config.Loaded(config.Config())
    python, env = default_python(site_packages)
    if args.python:
        python = args.python
    prefix = site_packages.parent.parent.parent if site_packages.parent.parent.name == "lib" else site_packages
    app_dir: Path | None = args.app
    engine = Engine(
        site_packages=site_packages,
        config=loaded.config,
        python=python,
        env=env,
        cwd=app_dir or site_packages,
        quarantine_dir=quarantine_location(prefix, site_packages),
        app_dir=app_dir,
        say=(lambda text: log.detail(text, sys.stderr)) if args.json else log.detail,
    )
    if not args.json:
        log.step(f"{'Planning' if args.dry_run else 'Pruning'} {site_packages}")
    result = engine.dry_run() if args.dry_run else engine.run()
    if args.json:
        print(json.dumps({"plan": result.plan.to_json(), "result": result.to_json()}, indent=2, sort_keys=True))
    else:
        totals = result.plan.by_rule()
        for rule, size in sorted(totals.items(), key=lambda kv: -kv[1]):
            log.detail(f"{rule:<9} {log.human_bytes(size):>9}")
        log.detail(f"{'Would remove' if args.dry_run else 'Status: ' + result.status + ', removed'} "
                   f"{log.human_bytes(result.plan.bytes if args.dry_run else result.bytes)}")
    return 0 if result.status != "unpruned" else 1


def _load_named(path: Path) -> config.Loaded:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / config.CONFIG_FILE).write_bytes(path.read_bytes())
        return config.load(Path(scratch))
