"""Where an app declares its dependencies, and where pip looks for them.

heroku/python picks one package manager by the files in the app: requirements.txt (pip), else
uv.lock (uv), poetry.lock (Poetry) or Pipfile.lock (Pipenv). pip-tools apps keep requirements.in
next to a requirements.txt it compiled. The swap, the re-lock and the fix-up all read these names
from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from slugslim.deps import requirements

REQUIREMENTS = "requirements.txt"
PIP_TOOLS_INPUT = "requirements.in"
OTHER_MANAGERS = ("uv.lock", "poetry.lock", "Pipfile.lock")
MANAGERS = ("uv", "poetry", "pipenv")
# These sync site-packages exactly to their lock: a distribution the lock does not list is uninstalled.
EXACT_SYNC_MANAGERS = frozenset({"uv", "poetry"})
# All three install every package their lock lists on each build, the cached ones too: a CUDA wheel the
# fix-up takes out must leave its metadata behind, or the next build downloads and ships it again.
LOCK_MANAGERS = frozenset(MANAGERS)


def package_manager(app_dir: Path) -> str:
    if (app_dir / REQUIREMENTS).is_file():
        return "pip"
    for name, manager in zip(OTHER_MANAGERS, MANAGERS, strict=True):
        if (app_dir / name).is_file():
            return manager
    return "none"


def index_options(tree_files: Iterable[requirements.RequirementsFile]) -> list[str]:
    """The options lines that change where pip looks, as command-line options, in file order.

    A relative --find-links is taken relative to the requirements file when that path exists,
    as pip does.
    """
    options: list[str] = []
    for parsed in tree_files:
        for entry in parsed.entries:
            if entry.args:
                continue
            for option in entry.options:
                if option.name in ("index-url", "extra-index-url", "trusted-host") and option.value:
                    options += [f"--{option.name}", option.value]
                elif option.name == "find-links" and option.value:
                    local = parsed.path.parent / option.value
                    options += ["--find-links", str(local) if local.exists() else option.value]
                elif option.name in ("no-index", "pre"):
                    options.append(f"--{option.name}")
    return options



# What names the app's dependencies, its lock and its Python, besides requirements.txt and its includes:
# the files a prepare step may rewrite (the swap, the re-lock, the preflight's .python-version).
DECLARATIONS = (PIP_TOOLS_INPUT, "pyproject.toml", *OTHER_MANAGERS, "Pipfile", ".python-version", "runtime.txt")


def declaration_files(app_dir: Path) -> list[Path]:
    """requirements.txt and every file it includes (-r, -c) inside the app, and ``DECLARATIONS``.

    A tree that cannot be read gives requirements.txt alone: a step that reads it fails before it writes.
    """
    root = app_dir / REQUIREMENTS
    try:
        tree = [parsed.path for parsed in requirements.read_tree(root, app_dir).files] if root.is_file() else []
    except Exception:  # what to back up must never be why a build fails
        tree = []
    return [root, *tree, *(app_dir / name for name in DECLARATIONS)]
