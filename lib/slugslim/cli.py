"""Command line: the build phases that bin/compile and the hook call, and the local tools.

    slugslim prepare BUILD_DIR CACHE_DIR ENV_DIR    (bin/compile, before heroku/python)
    slugslim finish BUILD_DIR CACHE_DIR ENV_DIR     (the bin/post_compile hook, after it)
    slugslim analyze PATH                           (a dry run on an app dir or a virtualenv)
    slugslim prune SITE_PACKAGES                    (prune any site-packages)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from slugslim import __version__
from slugslim.core import log
from slugslim.core.errors import SlugslimError


class Command(Protocol):
    """A subcommand module: it declares its arguments and runs."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("slugslim.prepare.phase", "build phase 1, before heroku/python: config, swap, install the hook"),
    "finish": ("slugslim.finish.phase", "build phase 2, after heroku/python: fix up, prune, models, report"),
    "analyze": ("slugslim.analyze.command", "show what slugslim would do to an app or virtualenv, changing nothing"),
    "prune": ("slugslim.finish.prune.command", "prune a site-packages directory with verification and rollback"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the module of ``command`` is imported, to keep --help and each command fast."""
    parser = argparse.ArgumentParser(
        prog="slugslim",
        description="Make TensorFlow apps fit and boot fast on Heroku. "
        "Run 'slugslim analyze .' in your app before you push to see what it would save.",
    )
    parser.add_argument("--version", action="version", version=f"slugslim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=summary, description=summary)
        command_parser.set_defaults(_module=module_name)
        if name == command:
            _load(module_name).add_arguments(command_parser)
    return parser


def _load(module_name: str) -> Command:
    return cast(Command, importlib.import_module(module_name))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        # argparse exits 2 on bad arguments, but 2 is what `analyze` returns for "over the hard
        # limit" in CI, so a usage error is 1, like every other error.
        if exc.code == 2:
            return 1
        raise
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    return guarded(lambda: _load(args._module).run(args))


def guarded(body: Callable[[], int]) -> int:
    """Run a command; turn our own failures into a build-log error and exit 1."""
    try:
        return body()
    except SlugslimError as exc:
        log.error(exc.render())
        return 1
    except KeyboardInterrupt:
        log.error("Error: Interrupted.")
        return 130
