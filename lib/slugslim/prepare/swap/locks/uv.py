"""uv: ``pyproject.toml`` and ``uv.lock``, re-locked with ``uv lock`` at heroku/python's uv version.

The edit is the one uv's documentation gives for CPU-only PyTorch, plus TensorFlow's:

- an explicit index, ``[[tool.uv.index]] name = "pytorch-cpu"``, ``url = swap.torch_index``,
  ``explicit = true``: only packages pointed at it come from it;
- ``[tool.uv.sources] torch = { index = "pytorch-cpu" }`` (torchvision, torchaudio likewise).
  Sources apply to direct dependencies only, so a torch package that came in through another
  package is added to ``[project] dependencies`` at its locked version (``torch==2.13.0``);
- TensorFlow: an override cannot rename a package, so ``[tool.uv] override-dependencies`` drops
  ``tensorflow`` with a marker that is never true, and ``tensorflow-cpu==<locked version>`` becomes
  a direct dependency.

The text is edited where each thing is written (``deps.tomledit``), never re-serialised, so the
user's layout and comments stay; the result is parsed again to check that it says what was meant.
A layout this cannot edit (sources as an inline table, dynamic dependencies, an index of that name
elsewhere) is a ValueError: the files stay as written.

``uv lock`` resolves for every platform, but it still wants an interpreter inside the project's
``requires-python`` (it never downloads one here: ``UV_PYTHON_DOWNLOADS=never``). The app's Python
is not installed yet, so it is slugslim's own python3 when it fits, else whatever matching
interpreter uv finds on PATH; with none, the re-lock fails and the files stay as written.
heroku/python v351 hands none of the app's config vars to uv (``lib/uv.sh``), so neither does
the re-lock; it sees the build's environment, the project's ``uv.toml`` and ``pyproject.toml``,
as ``uv sync --locked`` will. uv's cache is kept in the build cache, so a rebuild's re-lock
fetches no file again.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from slugslim.deps import locked, lockers, locksnippets, tomlfile
from slugslim.deps.tomledit import Document, dumps
from slugslim.prepare.swap.locks import _manifest
from slugslim.prepare.swap.locks.model import Locked, ManifestChange, Relock, by_name, requirement_name
from slugslim.prepare.swap.pytorch import same_index

# The process environment's settings that would make ``uv lock`` do something else than lock.
NOT_FOR_LOCK = ("UV_LOCKED", "UV_FROZEN", "UV_PROJECT_ENVIRONMENT", "VIRTUAL_ENV", "UV_PYTHON")


class UvAdapter:
    manager = "uv"
    manifest = "pyproject.toml"
    lock = "uv.lock"
    overrides = True

    def read_lock(self, text: str) -> dict[str, Locked]:
        """What the lock installs: a package only reachable through dependencies whose marker is never
        true (an override that drops it, as the TensorFlow swap's does) is left out, as uv leaves it."""
        packages = locked.loads(self.lock, text).packages
        edges: dict[str, set[str]] = {}
        for package in packages:
            edges.setdefault(package.name, set()).update(e.name for e in package.edges if not _never(e.marker))
        roots = {p.name for p in packages if p.project}
        installed = _reachable(roots, edges) if roots else set(edges)
        return by_name(p for p in packages if p.name in installed)

    def direct(self, manifest_text: str) -> frozenset[str]:
        project = tomlfile.loads(manifest_text).get("project", {})
        return frozenset(n for n in (requirement_name(line) for line in project.get("dependencies", [])) if n)

    def edit(self, manifest_text: str, change: ManifestChange) -> str:
        doc = Document(manifest_text)
        uv = doc.data.get("tool", {}).get("uv", {})
        index_name = _index_name(uv, doc, change)
        added = [f"{p.name}=={p.version}" for p in change.torch if not p.direct]
        added += [f"{r.cpu}=={r.version}" for r in change.renamed]
        text = _add_dependencies(doc, added) if added else manifest_text
        if change.torch and index_name == change.index_name and not _has_index(uv, change.index_url):
            text = Document(text).append_block(["[[tool.uv.index]]", f'name = "{index_name}"',
                                                f'url = "{change.index_url}"', "explicit = true"])
        for pin in change.torch:
            if pin.name in uv.get("sources", {}) and uv["sources"][pin.name] != {"index": index_name}:
                raise ValueError(f"[tool.uv.sources] already names a source for {pin.name}")
        sources = [f'{p.name} = {{ index = "{index_name}" }}' for p in change.torch
                   if uv.get("sources", {}).get(p.name) != {"index": index_name}]
        if sources:
            text = Document(text).insert_entry(("tool", "uv", "sources"), *sources, first=True)
        if change.renamed:
            overrides = [f'"{r.gpu} ; {locksnippets.NEVER}"' for r in change.renamed]
            doc = Document(text)
            declared = next((s for s in doc.entries(("tool", "uv")) if s.key == ("override-dependencies",)), None)
            if declared is not None:
                for override in overrides:
                    doc = Document(doc.append_item(declared, override))
                    declared = next(s for s in doc.entries(("tool", "uv")) if s.key == ("override-dependencies",))
                text = doc.text
            elif "override-dependencies" in uv:
                raise ValueError("[tool.uv] sets 'override-dependencies' in a form slugslim cannot add to")
            else:
                text = doc.insert_entry(("tool", "uv"), f"override-dependencies = [{', '.join(overrides)}]",
                                        first=True)
        _check(text, change, index_name)
        return text

    def relock(self, run: Relock) -> None:
        project = tomlfile.loads((run.app_dir / self.manifest).read_text(encoding="utf-8")).get("project", {})
        command = [*run.locker.command, "lock", "--python", _interpreter(str(project.get("requires-python", ""))),
                   "--no-progress", "--color", "never"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k not in NOT_FOR_LOCK}
        env.update(run.locker.env)
        env.update({"UV_CACHE_DIR": str(run.cache_dir), "UV_PYTHON_DOWNLOADS": "never",
                    "UV_NO_MANAGED_PYTHON": "1"})
        lockers.run(run.locker, command, run.app_dir, env, run.timeout)


ADAPTER = UvAdapter()


def _never(marker: str) -> bool:
    """A marker that is never true because a conjunction holds the never-true one slugslim writes."""
    return locksnippets.NEVER in marker and " or " not in marker


def _reachable(roots: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(roots), list(roots)
    while todo:
        for name in edges.get(todo.pop(), set()) - seen:
            seen.add(name)
            todo.append(name)
    return seen



def _has_index(uv: dict[str, Any], url: str) -> bool:
    return any(same_index(str(i.get("url", "")), url) for i in uv.get("index", []) if isinstance(i, dict))


def _index_name(uv: dict[str, Any], doc: Document, change: ManifestChange) -> str:
    """The name of the index at ``change.index_url``: the app's own when it has one, else pytorch-cpu."""
    indexes = [i for i in uv.get("index", []) if isinstance(i, dict)]
    for index in indexes:
        if same_index(str(index.get("url", "")), change.index_url) and index.get("name"):
            return str(index["name"])
    if any(i.get("name") == change.index_name for i in indexes):
        raise ValueError(f"[[tool.uv.index]] already has an index named {change.index_name} at another URL")
    if indexes and not any(s.header == "[[" and s.table == ("tool", "uv", "index") for s in doc.statements):
        raise ValueError("[tool.uv] sets 'index' in a form slugslim cannot add to")
    return change.index_name


def _add_dependencies(doc: Document, added: list[str]) -> str:
    project = doc.data.get("project")
    if not isinstance(project, dict):
        raise ValueError("it has no [project] table")
    if "dependencies" in project.get("dynamic", []):
        raise ValueError("its [project] dependencies are dynamic")
    if "dependencies" not in project:
        return doc.insert_entry(("project",), f"dependencies = [{', '.join(dumps(item) for item in added)}]",
                                first=True)
    for item in added:
        doc = Document(doc.append_item(_manifest.listed(doc), dumps(item)))
    return doc.text



def _check(text: str, change: ManifestChange, index_name: str) -> None:
    """The edited manifest parses and says what was meant, or ValueError."""
    try:
        data = tomlfile.loads(text)
    except tomlfile.TomlError as exc:
        raise ValueError(f"the edit would not parse: {exc}") from exc
    uv = data.get("tool", {}).get("uv", {})
    direct = ADAPTER.direct(text)
    ok = all(uv.get("sources", {}).get(p.name) == {"index": index_name} and p.name in direct for p in change.torch)
    ok = ok and (not change.torch or _has_index(uv, change.index_url))
    ok = ok and all(r.cpu in direct and f"{r.gpu} ; {locksnippets.NEVER}" in uv.get("override-dependencies", [])
                    for r in change.renamed)
    if not ok:
        raise ValueError("the edit did not come out as meant")


def _interpreter(requires_python: str) -> str:
    """slugslim's own python3 when the project allows it, else the range for uv to find one in."""
    try:
        allowed = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return sys.executable
    here = ".".join(str(part) for part in sys.version_info[:3])
    return sys.executable if not requires_python or allowed.contains(here, prereleases=True) else requires_python
