"""Edits shared by the manifests: a table of packages and an array of sources (Poetry, Pipenv), and
``[project] dependencies`` (uv, Poetry).

``[tool.poetry.dependencies]`` and the Pipfile's ``[packages]`` both map a package name to a version
string or an inline table (``{ version = "...", source = "..." }``, ``{version = "...", index = "..."}``);
both declare their indexes as an array of tables (``[[tool.poetry.source]]``, ``[[source]]``). Each
function takes the text and returns it with one change, through ``deps.tomledit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from packaging.utils import canonicalize_name

from slugslim.core import frameworks
from slugslim.deps.tomledit import Document, Statement, TomlEditError, dump_key, dumps
from slugslim.prepare.swap.pytorch import same_index

Table = tuple[str, ...]


def package(doc: Document, table: Table, name: str) -> Statement | None:
    """The statement that declares ``name`` (any spelling) in ``[table]``, or None."""
    if any(s.header and len(s.table) == len(table) + 1 and s.table[:-1] == table
           and canonicalize_name(s.table[-1]) == name for s in doc.statements):
        raise TomlEditError(f"{name} is declared in a table of its own ([{'.'.join((*table, name))}])")
    found = [s for s in doc.entries(table) if canonicalize_name(s.key[0]) == name]
    if any(len(s.key) != 1 for s in found):
        raise TomlEditError(f"{name} is declared with a dotted key")
    return found[0] if found else None


def pin(text: str, table: Table, name: str, fields: Mapping[str, str]) -> str:
    """``name`` in ``[table]`` as an inline table with ``fields`` set (version, source or index), its other
    keys kept; added at the end of the table when it is not there."""
    doc = Document(text)
    statement = package(doc, table, name)
    if statement is None:
        return doc.insert_entry(table, f"{dump_key(name)} = {dumps(dict(fields))}")
    return doc.set_value(statement, {**_as_table(_value(doc, table, statement), name), **fields})


def rename(text: str, table: Table, old: str, new: str, version: str, drop_extras: Sequence[str]) -> str:
    """``old`` in ``[table]`` renamed ``new``, at ``version``, without the extras ``drop_extras``."""
    doc = Document(text)
    statement = package(doc, table, old)
    if statement is None:
        raise TomlEditError(f"{old} is not in [{'.'.join(table)}]")
    value = _value(doc, table, statement)
    if isinstance(value, Mapping):
        value = {**value, "version": version}
        extras = [e for e in value.get("extras", []) if canonicalize_name(str(e)) not in drop_extras]
        value = {k: v for k, v in value.items() if k != "extras"} | ({"extras": extras} if extras else {})
    else:
        value = version
    renamed = Document(doc.rename(statement, new))
    return renamed.set_value(renamed.statements[doc.statements.index(statement)], value)


def source(text: str, array: Table, name: str, url: str, fields: Mapping[str, Any]) -> str:
    """A ``[[array]]`` entry named ``name`` for ``url``, appended at the end of the file; nothing when the
    file has it already. Another entry of that name for another URL is a ``TomlEditError``."""
    doc = Document(text)
    node: Any = doc.data
    for key in array:
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    entries = node if isinstance(node, list) else []
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            if same_index(str(entry.get("url", "")), url):
                return text
            raise TomlEditError(f"it already has a source named {name} for another URL ({entry.get('url')})")
    if node and not isinstance(node, list):
        raise TomlEditError(f"'{'.'.join(array)}' is not an array of tables")
    return doc.append_block([f"[[{'.'.join(array)}]]", f"name = {dumps(name)}", f"url = {dumps(url)}",
                             *(f"{dump_key(k)} = {dumps(v)}" for k, v in fields.items())])


def listed(doc: Document) -> Statement:
    """``[project] dependencies``, written as a key of the ``[project]`` table."""
    found = next((s for s in doc.entries(("project",)) if s.key == ("dependencies",)), None)
    if found is None:
        raise TomlEditError("[project] dependencies is not written in the [project] table")
    return found


def cuda_extras(name: str) -> list[str]:
    """The extras of a GPU build that only add CUDA wheels (tensorflow's ``and-cuda``)."""
    framework = frameworks.framework_of(name)
    return sorted(framework.cuda_extras) if framework else []


def _value(doc: Document, table: Table, statement: Statement) -> Any:
    node: Any = doc.data
    for key in (*table, statement.key[0]):
        node = node[key]
    return node


def _as_table(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"version": value}
    if isinstance(value, Mapping):
        if any(k in value for k in ("git", "path", "url", "file")):
            raise TomlEditError(f"{name} is declared from a URL, path or repository, not from an index")
        return dict(value)
    raise TomlEditError(f"{name} is declared in a form slugslim cannot edit (several constraints?)")
