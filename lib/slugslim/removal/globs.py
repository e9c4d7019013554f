"""prune.keep / prune.remove globs: relative to site-packages, '**' spans directories.

A glob is matched against the paths of the one scan, never against the filesystem, so it
cannot follow a symlink. One that is absolute or climbs out with '..' is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from slugslim.core.errors import PruneGlobError


def _segment(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = text.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = text[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def compile_glob(glob: str) -> re.Pattern[str]:
    parts = [p for p in glob.strip("/").split("/") if p not in ("", ".")]
    pieces: list[str] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            pieces.append("(?:.*)" if last else "(?:[^/]+/)*")
        else:
            pieces.append(_segment(part) + ("" if last else "/"))
    return re.compile("".join(pieces) + r"\Z")


def check(key: str, glob: str, source: str) -> None:
    """Refuse a glob that is absolute or that escapes site-packages."""
    path = PurePosixPath(glob.replace("\\", "/"))
    if path.is_absolute() or glob.startswith("~") or ".." in path.parts or not glob.strip("/. "):
        raise PruneGlobError(key, glob, source)


@dataclass(frozen=True)
class GlobSet:
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, key: str, globs: Iterable[str], source: str) -> GlobSet:
        compiled = []
        for glob in globs:
            check(key, glob, source)
            compiled.append(compile_glob(glob))
        return cls(tuple(compiled))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        return any(p.match(path) for p in self.patterns)

