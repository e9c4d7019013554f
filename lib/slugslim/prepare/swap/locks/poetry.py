"""Poetry: ``pyproject.toml`` and ``poetry.lock``, re-locked with ``poetry lock`` at heroku/python's Poetry version.

The edit is the one Poetry's documentation gives for taking packages from one index only:

- an explicit source, ``[[tool.poetry.source]] name = "pytorch-cpu"``, ``url = swap.torch_index``,
  ``priority = "explicit"``: only packages that name it come from it, and PyPI stays the default;
- ``torch = { version = "2.13.0", source = "pytorch-cpu" }`` in ``[tool.poetry.dependencies]`` (torchvision,
  torchaudio likewise), at the locked public version (``2.13.0`` allows ``2.13.0+cpu``).
  With a PEP 621 ``[project] dependencies`` list, ``[tool.poetry.dependencies]`` only adds to the
  packages that list names (Poetry ignores the others), so a torch package that came in through
  another package is also added to the list (``"torch==2.13.0"``); the list's own entry is left as
  written, the version in ``[tool.poetry.dependencies]`` narrows it;
- TensorFlow: ``tensorflow`` becomes ``tensorflow-cpu`` at its locked version (the ``and-cuda`` extra
  goes). Poetry has no override: a ``tensorflow`` that only another package requires stays in the
  lock, and the fix-up replaces it after the install.

``poetry lock`` (2.x, without ``--regenerate``) keeps every locked version it can: a package whose
dependency did not change is not resolved again, so the re-lock moves only the swapped packages and
the CUDA wheels only their GPU builds required. poetry.lock records each package's version, files
with their sha256, dependencies and, for a package from a source other than PyPI, that source's
URL; ``content-hash`` is the hash of the pyproject.toml sections it was locked from, which ``poetry
sync`` checks.

Poetry resolves for every Python the project allows (``requires-python`` or
``[tool.poetry.dependencies] python``), yet its command line wants an interpreter inside that range
before it locks, and makes a virtualenv under HOME for it. The app's Python is not installed yet and
the stack's python3 is often outside the range (heroku-24's 3.12 for ``python = "~3.11"``), so
``poetry_lock_tool.py`` runs Poetry's own ``lock`` command with an environment that stands for the
dyno's (the app's Python, Linux, x86_64) and never runs: the lock is the one ``poetry lock`` writes
on a machine that has that Python. Poetry's cache is kept in the build cache, its HOME, config and
data are a temporary directory; nothing but poetry.lock is written in the app. heroku/python v351
hands none of the app's config vars to Poetry (``lib/poetry.sh``), so neither does the re-lock.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from slugslim.core import pip
from slugslim.deps import locked, lockers, tomlfile
from slugslim.deps.tomledit import Document, TomlEditError, dumps
from slugslim.prepare.swap.locks import _manifest
from slugslim.prepare.swap.locks.model import (
    Locked,
    ManifestChange,
    Relock,
    Renamed,
    TorchPin,
    by_name,
    requirement_name,
)
from slugslim.prepare.swap.pytorch import same_index

DEPENDENCIES = ("tool", "poetry", "dependencies")
SOURCES = ("tool", "poetry", "source")
TOOL = Path(__file__).with_name("poetry_lock_tool.py")


class PoetryAdapter:
    manager = "poetry"
    manifest = "pyproject.toml"
    lock = "poetry.lock"
    overrides = False

    def read_lock(self, text: str) -> dict[str, Locked]:
        return by_name(locked.loads(self.lock, text).packages)

    def direct(self, manifest_text: str) -> frozenset[str]:
        data = tomlfile.loads(manifest_text)
        if _pep621(data):
            return frozenset(n for n in (requirement_name(line) for line in data["project"]["dependencies"]) if n)
        declared = _lookup(data, DEPENDENCIES)
        return frozenset(str(canonicalize_name(k)) for k in (declared if isinstance(declared, dict) else {})
                         if k != "python")

    def edit(self, manifest_text: str, change: ManifestChange) -> str:
        data = tomlfile.loads(manifest_text)
        text = manifest_text
        if change.torch:
            text = _manifest.source(text, SOURCES, change.index_name, change.index_url, {"priority": "explicit"})
        for torch in change.torch:
            text = _pin_torch(text, torch, change.index_name, _pep621(data))
        for renamed in change.renamed:
            text = _rename(text, renamed, _pep621(data))
        _check(text, change)
        return text

    def relock(self, run: Relock) -> None:
        version = run.python.version if run.python.version.count(".") == 2 else f"{run.python.minor}.0"
        with tempfile.TemporaryDirectory(prefix="slugslim-poetry-") as scratch:
            home = Path(scratch)
            env = pip.environment({}, tools=())
            env.update(run.locker.env)
            env.update({"HOME": str(home), "POETRY_CACHE_DIR": str(run.cache_dir),
                        "POETRY_CONFIG_DIR": str(home / "config"), "POETRY_DATA_DIR": str(home / "data"),
                        "POETRY_KEYRING_ENABLED": "false", "POETRY_NO_INTERACTION": "1",
                        "POETRY_VIRTUALENVS_CREATE": "false"})
            lockers.run(run.locker, [run.locker.python, str(TOOL), version, str(home / "env")], run.app_dir, env,
                        run.timeout, _first_paragraph)


ADAPTER = PoetryAdapter()


def _pin_torch(text: str, torch: TorchPin, index_name: str, pep621: bool) -> str:
    if pep621 and not torch.direct:
        doc = Document(text)
        text = doc.append_item(_manifest.listed(doc), dumps(f"{torch.name}=={torch.version}"))
    return _manifest.pin(text, DEPENDENCIES, torch.name, {"version": torch.version, "source": index_name})


def _rename(text: str, renamed: Renamed, pep621: bool) -> str:
    if not renamed.direct:
        raise TomlEditError(f"{renamed.gpu} comes in through another package, and Poetry cannot replace it")
    drop = _manifest.cuda_extras(renamed.gpu)
    doc = Document(text)
    if pep621:
        for start, end in doc.array_items(_manifest.listed(doc)):
            requirement = _requirement(doc.text[start:end])
            if requirement is None or canonicalize_name(requirement.name) != renamed.gpu:
                continue
            requirement.name = renamed.cpu
            requirement.extras = {e for e in requirement.extras if canonicalize_name(e) not in drop}
            requirement.specifier = type(requirement.specifier)(f"=={renamed.version}")
            text = doc.replace((start, end), dumps(str(requirement)))
            doc = Document(text)
        if _manifest.package(doc, DEPENDENCIES, renamed.gpu) is None:
            return text
    return _manifest.rename(text, DEPENDENCIES, renamed.gpu, renamed.cpu, renamed.version, drop)


def _check(text: str, change: ManifestChange) -> None:
    """The edited manifest parses and says what was meant, or a TomlEditError."""
    try:
        data = tomlfile.loads(text)
    except tomlfile.TomlError as exc:
        raise TomlEditError(f"the edit would not parse: {exc}") from exc
    direct = ADAPTER.direct(text)
    declared = {str(canonicalize_name(k)): v for k, v in (_lookup(data, DEPENDENCIES) or {}).items()}
    sources = [s for s in _lookup(data, SOURCES) or [] if isinstance(s, dict) and s.get("name") == change.index_name]
    ok = not change.torch or (len(sources) == 1 and same_index(str(sources[0].get("url", "")), change.index_url)
                              and sources[0].get("priority") == "explicit")
    ok = ok and all(p.name in direct and isinstance(declared.get(p.name), dict)
                    and declared[p.name].get("source") == change.index_name
                    and declared[p.name].get("version") == p.version for p in change.torch)
    ok = ok and all(r.cpu in direct and r.gpu not in direct for r in change.renamed)
    if not ok:
        raise TomlEditError("the edit did not come out as meant")


def _pep621(data: dict[str, Any]) -> bool:
    """Poetry 2 reads the main dependencies from ``[project] dependencies`` when the table has the list."""
    project = data.get("project")
    return isinstance(project, dict) and isinstance(project.get("dependencies"), list)


def _lookup(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _requirement(item: str) -> Requirement | None:
    try:
        return Requirement(str(tomlfile.loads(f"item = {item}")["item"]))
    except (InvalidRequirement, tomlfile.TomlError):
        return None


def _first_paragraph(output: str) -> str:
    """Poetry's error, without the list of probable causes it prints after it."""
    lines: list[str] = []
    for line in output.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " / ".join(lines[:4])
