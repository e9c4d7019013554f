"""The lines to commit so that a uv, Poetry or Pipenv lock asks for PyTorch's CPU build itself.

A lock cannot be re-locked at build time, so the fix-up replaces the CUDA build after every install
(with a download of the CPU wheel when the cache is cold). Locking the CPU build at the source ends
that: each tool has a way to take some packages from one index only.
"""

from __future__ import annotations

INDEX_NAME = "pytorch-cpu"
RELOCK = {"uv": "uv lock", "poetry": "poetry lock", "pipenv": "pipenv lock"}
FILES = {"uv": "pyproject.toml", "poetry": "pyproject.toml", "pipenv": "Pipfile"}


def snippet(manager: str, index: str, packages: dict[str, str]) -> list[str]:
    """Lines for the manager's file; ``packages`` maps each name to its installed public version."""
    names = sorted(packages)
    if manager == "uv":
        return ["[[tool.uv.index]]", f'name = "{INDEX_NAME}"', f'url = "{index}"', "explicit = true", "",
                "[tool.uv.sources]", *(f'{n} = [{{ index = "{INDEX_NAME}" }}]' for n in names)]
    if manager == "poetry":
        return ["[[tool.poetry.source]]", f'name = "{INDEX_NAME}"', f'url = "{index}"', 'priority = "explicit"', "",
                "[tool.poetry.dependencies]",
                *(f'{n} = {{ version = "{packages[n]}", source = "{INDEX_NAME}" }}' for n in names)]
    if manager == "pipenv":
        return ["[[source]]", f'name = "{INDEX_NAME}"', f'url = "{index}"', "verify_ssl = true", "",
                "[packages]", *(f'{n} = {{ version = "=={packages[n]}", index = "{INDEX_NAME}" }}' for n in names)]
    return []


def advice(manager: str, index: str, packages: dict[str, str]) -> list[str]:
    """The build-log lines: what to add to which file, then the command that re-locks."""
    lines = snippet(manager, index, packages)
    if not lines:
        return []
    return [f"To lock the CPU build yourself (no fix-up, no second download), add to {FILES[manager]}:",
            *(f"    {line}" if line else "" for line in lines),
            f"then run '{RELOCK[manager]}' and commit both files. A package that only comes in through another "
            "one must be listed as a dependency for its source to apply."]
