"""The lines to commit so that a uv, Poetry or Pipenv lock asks for the CPU builds itself.

The prepare phase re-locks such an app for the CPU builds at build time (``prepare.swap.locks``),
and the fix-up replaces GPU builds that were installed anyway; either way each push pays for it
again. Locking the CPU builds at the source ends that: each tool has a way to take some packages
from one index only, and TensorFlow's CPU build is a package of its own (``tensorflow-cpu``).
"""

from __future__ import annotations

from collections.abc import Mapping

INDEX_NAME = "pytorch-cpu"
RELOCK = {"uv": "uv lock", "poetry": "poetry lock", "pipenv": "pipenv lock"}
FILES = {"uv": "pyproject.toml", "poetry": "pyproject.toml", "pipenv": "Pipfile"}
# uv's documented way to drop a dependency: an override whose marker is never true.
NEVER = "sys_platform == 'never'"


def snippet(manager: str, index: str, packages: Mapping[str, str],
            renamed: Mapping[str, tuple[str, str]] | None = None) -> list[str]:
    """Lines for the manager's file. ``packages`` maps each torch package to its public version;
    ``renamed`` each GPU build with another CPU name (tensorflow) to that name and its version."""
    names = sorted(packages)
    renamed = renamed or {}
    lines: list[str] = []
    if manager == "uv":
        if names:
            lines += ["[[tool.uv.index]]", f'name = "{INDEX_NAME}"', f'url = "{index}"', "explicit = true", "",
                      "[tool.uv.sources]", *(f'{n} = {{ index = "{INDEX_NAME}" }}' for n in names)]
        if renamed:
            overrides = ", ".join(f'"{gpu} ; {NEVER}"' for gpu in sorted(renamed))
            lines += [*([""] if lines else []), "[tool.uv]", f"override-dependencies = [{overrides}]", "",
                      "[project]", "dependencies = [",
                      *(f'    "{cpu}=={version}",' for cpu, version in sorted(renamed.values())),
                      "    # ...and the dependencies you have", "]"]
        return lines
    # Poetry and Pipenv have no override: the CPU build replaces the GPU build's own line.
    instead = [f'{cpu} = "=={version}"  # instead of {gpu}' if manager == "pipenv" else
               f'{cpu} = "{version}"  # instead of {gpu} (with [project] dependencies: "{cpu}=={version}" there)'
               for gpu, (cpu, version) in sorted(renamed.items())]
    if manager == "poetry" and (names or instead):
        if names:
            lines += ["[[tool.poetry.source]]", f'name = "{INDEX_NAME}"', f'url = "{index}"', 'priority = "explicit"',
                      ""]
        return [*lines, "[tool.poetry.dependencies]",
                *(f'{n} = {{ version = "{packages[n]}", source = "{INDEX_NAME}" }}' for n in names), *instead]
    if manager == "pipenv" and (names or instead):
        if names:
            lines += ["[[source]]", f'name = "{INDEX_NAME}"', f'url = "{index}"', "verify_ssl = true", ""]
        return [*lines, "[packages]",
                *(f'{n} = {{ version = "=={packages[n]}", index = "{INDEX_NAME}" }}' for n in names), *instead]
    return []


def advice(manager: str, index: str, packages: Mapping[str, str],
           renamed: Mapping[str, tuple[str, str]] | None = None, *, relocked: bool = False) -> list[str]:
    """The build-log lines: what to add to which file, then the command that re-locks.

    ``relocked``: slugslim re-locked this build itself, so the lines say how to need no re-lock."""
    lines = snippet(manager, index, packages, renamed)
    if not lines:
        return []
    why = ("so that the next push needs no re-lock" if relocked
           else "no fix-up, no second download")
    return [f"To lock the CPU build yourself ({why}), add to {FILES[manager]}:",
            *(f"    {line}" if line else "" for line in lines),
            f"then run '{RELOCK[manager]}' and commit both files. A package that only comes in through another "
            "one must be listed as a dependency for its source to apply."]
