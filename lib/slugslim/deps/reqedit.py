"""Edits of a requirements file that change only what they must: a project's name, its hashes, a marker.

Each function returns an entry's new physical lines (without line endings) for
``RequirementsFile.render``; ``via`` reads pip-compile's ``# via`` notes after an entry.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from slugslim.deps.reqsyntax import COMMENT, Option
from slugslim.deps.requirements import Entry, RequirementsFile

# A requirement's leading name and optional extras, as they appear on the physical line.
NAME_AND_EXTRAS = re.compile(
    r"^(?P<indent>\s*)(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?P<extras>\s*\[[^\]]*\])?"
)


def edit_name(parsed: RequirementsFile, entry: Entry, new_name: str, drop_extras: Sequence[str] = ()) -> list[str]:
    """The entry's physical lines with the project name replaced (and some extras dropped).

    Only the name (and the extras bracket) changes; specifiers, markers, options, comments,
    indentation and continuations stay exactly as written.
    """
    assert entry.requirement is not None
    lines = [parsed.content(i) for i in range(entry.first, entry.last + 1)]
    for position, line in enumerate(lines):
        if not line.strip(" \t\\"):
            continue
        match = NAME_AND_EXTRAS.match(line)
        if match is None or canonicalize_name(match.group("name")) != canonicalize_name(entry.requirement.name):
            break
        extras = match.group("extras") or ""
        if extras and drop_extras:
            dropped = {canonicalize_name(e) for e in drop_extras}
            kept = [e.strip() for e in extras.strip()[1:-1].split(",") if e.strip()]
            kept = [e for e in kept if canonicalize_name(e) not in dropped]
            extras = f"[{','.join(kept)}]" if kept else ""
        lines[position] = match.group("indent") + new_name + extras + line[match.end():]
        return lines
    # The name is not where a hand-written line has it (say, split by a continuation): write the line anew.
    requirement = Requirement(str(entry.requirement))
    requirement.name = new_name
    requirement.extras = {e for e in requirement.extras if canonicalize_name(e) not in
                          {canonicalize_name(d) for d in drop_extras}}
    options = " ".join(_render_option(o) for o in entry.options)
    return [f"{requirement}{' ' + options if options else ''}"]


def _render_option(option: Option) -> str:
    return f"--{option.name}" if option.value is None else f"--{option.name}={shlex.quote(option.value)}"


def with_hashes(lines: Sequence[str], hashes: Sequence[str]) -> list[str]:
    """Replace the ``--hash`` options in an entry's physical lines with ``hashes`` (``sha256:<hex>``).

    Keeps the file's style: one hash per continuation line, indented like the first one was (the
    pip-compile layout), or all hashes on the requirement line when they were written that way.
    """
    body = list(lines)
    tail: list[str] = []
    # Comment lines that closed the continuation stay after the requirement.
    while len(body) > 1 and COMMENT.match(body[-1]):
        tail.insert(0, body.pop())
    hash_option = re.compile(r"\s*--hash(?:=|\s+)\S+")
    first_hash = next((i for i, line in enumerate(body) if hash_option.search(line)), None)
    rendered = [f"--hash={h}" for h in hashes]
    if first_hash == 0 or (first_hash is None and len(body) == 1):
        line = body[0]
        found = COMMENT.search(line)
        code, comment = (line[: found.start()], line[found.start():]) if found else (line, "")
        code = hash_option.sub("", code).rstrip()
        if code.endswith("\\"):
            code = code[:-1].rstrip()
            return [" ".join([code, *rendered]) + " \\" + comment, *body[1:], *tail]
        return [" ".join([code, *rendered]) + comment, *body[1:], *tail]
    indent = "    "
    if first_hash is not None:
        indent = body[first_hash][: len(body[first_hash]) - len(body[first_hash].lstrip())] or indent
    code_lines = [hash_option.sub("", line).rstrip() for line in body]
    code_lines = [line for i, line in enumerate(code_lines) if i == 0 or line.strip(" \t\\")]
    code_lines = [line.rstrip(" \t\\").rstrip() for line in code_lines]
    out = [*code_lines, *(indent + h for h in rendered)]
    return [line + " \\" for line in out[:-1]] + [out[-1], *tail]


def with_marker(requirement: Requirement, clause: str) -> str:
    """The requirement text with ``clause`` and-ed to its marker."""
    new = Requirement(str(requirement))
    new.marker = Marker(f"({requirement.marker}) and {clause}" if requirement.marker else clause)
    return str(new)


def via(parsed: RequirementsFile, index: int) -> list[str]:
    """What a pip-compile ``# via`` annotation after entry ``index`` names (files as ``-r file``)."""
    names: list[str] = []
    started = False
    for entry in parsed.entries[index + 1:]:
        if entry.text:
            break
        comment = "".join(parsed.content(i) for i in range(entry.first, entry.last + 1)).strip()
        if not comment.startswith("#"):
            break
        body = comment.lstrip("#").strip()
        if not started:
            if not body.startswith("via"):
                break
            started = True
            body = body[3:].strip()
        elif not comment.startswith("#   "):
            break
        if body:
            names.append(body)
    return names
