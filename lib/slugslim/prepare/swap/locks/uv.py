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

The text is edited line by line, never re-serialised, so the user's layout and comments stay; the
result is parsed again to check that it says what was meant. A layout this cannot edit (sources
as an inline table, dynamic dependencies, an index of that name elsewhere) is a ValueError: the
files stay as written.

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
import re
import sys
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from slugslim.deps import lockers, locksnippets, tomlfile
from slugslim.prepare.swap.locks.model import Locked, ManifestChange, Relock, requirement_name
from slugslim.prepare.swap.pytorch import same_index

# The process environment's settings that would make ``uv lock`` do something else than lock.
NOT_FOR_LOCK = ("UV_LOCKED", "UV_FROZEN", "UV_PROJECT_ENVIRONMENT", "VIRTUAL_ENV", "UV_PYTHON")
HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


class UvAdapter:
    manager = "uv"
    manifest = "pyproject.toml"
    lock = "uv.lock"
    overrides = True

    def read_lock(self, text: str) -> dict[str, Locked]:
        """What the lock installs: a package only reachable through dependencies whose marker is never
        true (an override that drops it, as the TensorFlow swap's does) is left out, as uv leaves it."""
        data = tomlfile.loads(text)
        packages = data.get("package")
        if not isinstance(packages, list):
            raise ValueError("it has no [[package]] entries")
        found: dict[str, list[Locked]] = {}
        edges: dict[str, set[str]] = {}
        roots: set[str] = set()
        for package in packages:
            name = str(canonicalize_name(str(package.get("name", ""))))
            hashes = {str(f["hash"]) for f in [package.get("sdist") or {}, *package.get("wheels", [])]
                      if isinstance(f, dict) and f.get("hash")}
            dependencies = _dependencies(package)
            requires = {str(canonicalize_name(str(d["name"]))) for d in dependencies if d.get("name")}
            source = package.get("source") or {}
            if "virtual" in source or "editable" in source:
                roots.add(name)
            edges.setdefault(name, set()).update(str(canonicalize_name(str(d["name"]))) for d in dependencies
                                                 if d.get("name") and not _never(str(d.get("marker", ""))))
            found.setdefault(name, []).append(Locked(
                str(package.get("version", "")), frozenset(hashes),
                ", ".join(f"{k} = {v}" for k, v in sorted(source.items())), frozenset(requires)))
        installed = _reachable(roots, edges) if roots else set(found)
        return {name: Locked.merged(entries) for name, entries in found.items() if name in installed}

    def direct(self, manifest_text: str) -> frozenset[str]:
        project = tomlfile.loads(manifest_text).get("project", {})
        return frozenset(n for n in (requirement_name(line) for line in project.get("dependencies", [])) if n)

    def edit(self, manifest_text: str, change: ManifestChange) -> str:
        data = tomlfile.loads(manifest_text)
        lines = manifest_text.splitlines(keepends=True)
        newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
        uv = data.get("tool", {}).get("uv", {})
        index_name = _index_name(uv, lines, change)
        added = [f"{p.name}=={p.version}" for p in change.torch if not p.direct]
        added += [f"{r.cpu}=={r.version}" for r in change.renamed]
        if added:
            _add_dependencies(data, lines, added, newline)
        tail: list[str] = []
        if change.torch and index_name == change.index_name and not _has_index(uv, change.index_url):
            tail += ["", "[[tool.uv.index]]", f'name = "{index_name}"', f'url = "{change.index_url}"',
                     "explicit = true"]
        sources = [f'{p.name} = {{ index = "{index_name}" }}' for p in change.torch
                   if uv.get("sources", {}).get(p.name) != {"index": index_name}]
        for pin in change.torch:
            if pin.name in uv.get("sources", {}) and uv["sources"][pin.name] != {"index": index_name}:
                raise ValueError(f"[tool.uv.sources] already names a source for {pin.name}")
        if sources and not _insert_after_header(lines, "tool.uv.sources", sources, newline):
            if "sources" in uv:
                raise ValueError("[tool.uv] sets 'sources' in a form slugslim cannot add to")
            tail += ["", "[tool.uv.sources]", *sources]
        if change.renamed:
            overrides = [f'"{r.gpu} ; {locksnippets.NEVER}"' for r in change.renamed]
            if "override-dependencies" in uv:
                if not _extend_array(lines, "tool.uv", "override-dependencies", overrides, newline):
                    raise ValueError("[tool.uv] sets 'override-dependencies' in a form slugslim cannot add to")
            elif not _insert_after_header(lines, "tool.uv", [f"override-dependencies = [{', '.join(overrides)}]"],
                                          newline):
                tail += ["", "[tool.uv]", f"override-dependencies = [{', '.join(overrides)}]"]
        text = "".join(lines) + "".join(f"{line}{newline}" for line in tail)
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


def _dependencies(package: dict[str, Any]) -> list[dict[str, Any]]:
    found = [d for d in package.get("dependencies", []) if isinstance(d, dict)]
    for table in ("optional-dependencies", "dev-dependencies"):
        for group in (package.get(table) or {}).values():
            found += [d for d in group if isinstance(d, dict)]
    return found


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


def _index_name(uv: dict[str, Any], lines: list[str], change: ManifestChange) -> str:
    """The name of the index at ``change.index_url``: the app's own when it has one, else pytorch-cpu."""
    indexes = [i for i in uv.get("index", []) if isinstance(i, dict)]
    for index in indexes:
        if same_index(str(index.get("url", "")), change.index_url) and index.get("name"):
            return str(index["name"])
    if any(i.get("name") == change.index_name for i in indexes):
        raise ValueError(f"[[tool.uv.index]] already has an index named {change.index_name} at another URL")
    if indexes and not any(_header(line) == "tool.uv.index" for line in lines):
        raise ValueError("[tool.uv] sets 'index' in a form slugslim cannot add to")
    return change.index_name


def _header(line: str) -> str | None:
    found = HEADER.match(line)
    return re.sub(r"\s*\.\s*", ".", found.group(1)).replace('"', "") if found else None


def _table(lines: list[str], name: str) -> tuple[int, int] | None:
    """The lines of table ``name``: (its header's index, the next header's index or the end)."""
    start = next((i for i, line in enumerate(lines) if _header(line) == name and not line.lstrip().startswith("[[")),
                 None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if _header(lines[i]) is not None), len(lines))
    return start, end


def _insert_after_header(lines: list[str], table: str, new: list[str], newline: str) -> bool:
    found = _table(lines, table)
    if found is None:
        return False
    lines[found[0] + 1:found[0] + 1] = [f"{line}{newline}" for line in new]
    return True


def _extend_array(lines: list[str], table: str, key: str, items: list[str], newline: str) -> bool:
    """Add ``items`` to the array ``key = [...]`` of ``table``, after its last item, in its layout."""
    found = _table(lines, table)
    if found is None:
        return False
    for i in range(found[0] + 1, found[1]):
        opening = re.match(rf"^\s*{re.escape(key)}\s*=\s*\[", lines[i])
        if opening is None:
            continue
        text = "".join(lines[i:found[1]])
        close, last = _closing_bracket(text, opening.end())
        if close is None or last is None:
            return False
        line_end = text.find("\n", last)
        if text[last] == "[":
            text = text[:last + 1] + ", ".join(items) + text[last + 1:]
        elif 0 <= line_end < close:  # one item a line: ours go on lines of their own, indented alike
            line_start = text.rfind("\n", 0, last) + 1
            indent = text[line_start:len(text) - len(text[line_start:].lstrip(" \t"))]
            comma = "" if text[last] == "," else ","
            text = (text[:last + 1] + comma + text[last + 1:line_end + 1]
                    + "".join(f"{indent}{item},{newline}" for item in items) + text[line_end + 1:])
        else:
            comma = "" if text[last] == "," else ","
            text = text[:last + 1] + comma + " " + ", ".join(items) + text[last + 1:]
        lines[i:found[1]] = text.splitlines(keepends=True)
        return True
    return False


def _closing_bracket(text: str, start: int) -> tuple[int | None, int | None]:
    """Where the array opened just before ``start`` closes, and its last character that is not
    blank or comment (the ``[`` itself when empty): strings and comments may hold brackets."""
    depth, i, last = 1, start, start - 1
    while i < len(text):
        char = text[i]
        if char in "\"'":
            triple = text[i:i + 3] == char * 3
            quote = char * 3 if triple else char
            end = i + len(quote)
            while end < len(text) and text[end:end + len(quote)] != quote:
                end += 2 if char == '"' and text[end] == "\\" else 1
            i = end + len(quote)
            last = i - 1
            continue
        if char == "#":
            i = text.find("\n", i)
            if i < 0:
                return None, None
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return i, last
        if not char.isspace():
            last = i
        i += 1
    return None, None


def _add_dependencies(data: dict[str, Any], lines: list[str], added: list[str], newline: str) -> None:
    project = data.get("project")
    if not isinstance(project, dict):
        raise ValueError("it has no [project] table")
    if "dependencies" in project.get("dynamic", []):
        raise ValueError("its [project] dependencies are dynamic")
    quoted = [f'"{item}"' for item in added]
    if "dependencies" in project:
        if not _extend_array(lines, "project", "dependencies", quoted, newline):
            raise ValueError("[project] sets 'dependencies' in a form slugslim cannot add to")
    elif not _insert_after_header(lines, "project", [f"dependencies = [{', '.join(quoted)}]"], newline):
        raise ValueError("[project] is not a table slugslim can add to")


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
