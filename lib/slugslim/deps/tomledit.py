"""Small edits of a TOML file's text (pyproject.toml, Pipfile) that keep the user's formatting and comments.

``tomlfile.loads`` says what a document means; this module finds where each thing is written and
changes only those characters: one key's value, one key's name, one item of an array, an item
appended to an array, a key line added at the end of its table, a block appended at the end of the
file. Everything else keeps its bytes, line endings included.

A document these edits cannot follow (a table made by dotted keys, a value over several lines that
is not an array) raises ``TomlEditError``; callers then leave the file as the user wrote it. A
caller checks the result with ``tomlfile.loads``: an edit that would make a file TOML rejects, or
mean something else than intended, is caught there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from slugslim.deps import tomlfile

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_OTHER = re.compile(r"[^\s\"'\[\]{},#=]+")


class TomlEditError(ValueError):
    """The text is not written in a way these edits can change safely."""


@dataclass(frozen=True)
class Statement:
    """One logical line: a table header, a key/value pair (with a value over several lines, for an
    array), or a blank or comment line. Offsets index the document's text; ``end`` is past the newline."""

    start: int
    end: int
    table: tuple[str, ...]  # the table it belongs to; for a header, the table it opens
    header: str = ""  # "[" or "[[" for a header, "" otherwise
    key: tuple[str, ...] = ()  # a key/value pair's dotted key, relative to its table
    key_span: tuple[int, int] = (0, 0)
    value_span: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class _Token:
    kind: str  # "str", "open", "close", "comma", "comment", "newline", "other", "equals"
    start: int
    end: int


class Document:
    """A TOML text and where its statements are. Edits return the new text; parse it again to go on."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = tomlfile.loads(text)
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.statements = list(_statements(text))

    # -- reading -----------------------------------------------------------------------------------

    def has_header(self, table: tuple[str, ...]) -> bool:
        return any(s.header == "[" and s.table == table for s in self.statements)

    def entries(self, table: tuple[str, ...]) -> list[Statement]:
        """The key/value statements written in ``[table]`` (keys relative to it)."""
        return [s for s in self.statements if s.key and s.table == table]

    def value_text(self, statement: Statement) -> str:
        return self.text[statement.value_span[0]: statement.value_span[1]]

    def array_items(self, statement: Statement) -> list[tuple[int, int]]:
        """Where each item of an array value is written (the value must be an array)."""
        items, _close = _array_layout(self.text, statement.value_span)
        return items

    # -- edits -------------------------------------------------------------------------------------

    def replace(self, span: tuple[int, int], new: str) -> str:
        return self.text[: span[0]] + new + self.text[span[1]:]

    def set_value(self, statement: Statement, value: object) -> str:
        """The statement's value written anew (an inline table keeps its spacing style)."""
        spaced = not self.value_text(statement).startswith("{") or self.value_text(statement).startswith("{ ")
        return self.replace(statement.value_span, dumps(value, spaced=spaced))

    def rename(self, statement: Statement, new_key: str) -> str:
        if len(statement.key) != 1:
            raise TomlEditError(f"'{'.'.join(statement.key)}' is a dotted key")
        return self.replace(statement.key_span, dump_key(new_key))

    def insert_entry(self, table: tuple[str, ...], *lines: str, first: bool = False) -> str:
        """``lines`` (``key = value``) as the last keys of ``[table]`` (the first, with ``first``); the table is
        appended at the end of the file when there is none."""
        if not self.has_header(table):
            # A table that only sub-tables made may get its own header; one made by dotted keys or written
            # inline may not, and TOML says so.
            appended = self.append_block([f"[{'.'.join(dump_key(k) for k in table)}]", *lines])
            try:
                tomlfile.loads(appended)
            except tomlfile.TomlError as exc:
                raise TomlEditError(f"[{'.'.join(table)}] is written without a header of its own") from exc
            return appended
        header = next(i for i, s in enumerate(self.statements) if s.header == "[" and s.table == table)
        at = self.statements[header].end
        for statement in [] if first else self.statements[header + 1:]:
            if statement.header:
                break
            if statement.key:
                at = statement.end
        prefix = "" if at == 0 or self.text[at - 1] == "\n" else self.newline
        return self.text[:at] + prefix + "".join(line + self.newline for line in lines) + self.text[at:]

    def append_block(self, lines: Sequence[str]) -> str:
        """Lines at the end of the file, after a blank line."""
        text = self.text
        if text and not text.endswith("\n"):
            text += self.newline
        if text.strip() and not text.endswith(self.newline * 2):
            text += self.newline
        return text + "".join(line + self.newline for line in lines)

    def append_item(self, statement: Statement, item: str) -> str:
        """An item (TOML text) appended to an array value, in the array's own layout."""
        items, close = _array_layout(self.text, statement.value_span)
        opening = statement.value_span[0]
        if not items:
            inside = self.text[opening + 1: close]
            if "\n" in inside:
                indent = _indent_of(self.text, close) + "    "
                return self.replace((opening + 1, close), f"{self.newline}{indent}{item},{self.newline}"
                                    f"{_indent_of(self.text, close)}")
            return self.replace((opening + 1, close), item)
        last_end = items[-1][1]
        between = self.text[last_end:close]
        if "\n" not in between:
            return self.text[:last_end] + ", " + item + self.text[last_end:]
        trailing_comma = between.lstrip(" \t").startswith(",")
        indent = _indent_of(self.text, items[-1][0])
        line_end = self.text.index("\n", last_end)
        if self.text[line_end - 1] == "\r":
            line_end -= 1
        comma = "" if trailing_comma else ","
        text = self.text[:last_end] + comma + self.text[last_end:line_end]
        return text + self.newline + indent + item + ("," if trailing_comma else "") + self.text[line_end:]


def dump_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else dumps(key)


def dumps(value: object, spaced: bool = True) -> str:
    """A value as TOML: strings, booleans, integers, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(v, spaced) for v in value) + "]"
    if isinstance(value, Mapping):
        body = ", ".join(f"{dump_key(str(k))} = {dumps(v, spaced)}" for k, v in value.items())
        return ("{ " + body + " }" if body else "{}") if spaced else "{" + body + "}"
    raise TomlEditError(f"cannot write {type(value).__name__} values")


def _indent_of(text: str, position: int) -> str:
    line_start = text.rfind("\n", 0, position) + 1
    line = text[line_start:position]
    return line[: len(line) - len(line.lstrip(" \t"))]


# --------------------------------------------------------------------------------------------------
# The scanner: statements, and the tokens of a value
# --------------------------------------------------------------------------------------------------

def _statements(text: str) -> Iterator[Statement]:
    table: tuple[str, ...] = ()
    position = 0
    while position < len(text):
        newline = text.find("\n", position)
        line_end = len(text) if newline < 0 else newline + 1
        line = text[position:line_end]
        content = line.lstrip(" \t")
        start = position + len(line) - len(content)
        if not content.strip() or content.startswith("#"):
            yield Statement(position, line_end, table)
            position = line_end
            continue
        if content.startswith("["):
            array = content.startswith("[[")
            table, after = _key(text, start + (2 if array else 1))
            closing = "]]" if array else "]"
            rest = text[after:line_end].lstrip(" \t")
            tail = rest[len(closing):].strip()
            if not rest.startswith(closing) or (tail and not tail.startswith("#")):
                raise TomlEditError(f"cannot read the table header at offset {start}")
            yield Statement(position, line_end, table, header="[[" if array else "[")
            position = line_end
            continue
        key, key_end = _key(text, start)
        equals = _skip_blank(text, key_end)
        if equals >= len(text) or text[equals] != "=":
            raise TomlEditError(f"cannot read the key at offset {start}")
        value_start = _skip_blank(text, equals + 1)
        value_end, end = _value_end(text, value_start)
        yield Statement(position, end, table, key=key, key_span=(start, key_end), value_span=(value_start, value_end))
        position = end


def _skip_blank(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t":
        position += 1
    return position


def _key(text: str, position: int) -> tuple[tuple[str, ...], int]:
    """A dotted key from ``position``: its parts, and the offset just after its last part."""
    parts: list[str] = []
    while True:
        position = _skip_blank(text, position)
        if position < len(text) and text[position] in "\"'":
            end = _string_end(text, position)
            parts.append(tomlfile.loads(f"k = {text[position:end]}")["k"])
        else:
            match = _BARE_KEY.match(text, position)
            if match is None:
                raise TomlEditError(f"cannot read the key at offset {position}")
            parts.append(match.group())
            end = match.end()
        following = _skip_blank(text, end)
        if following < len(text) and text[following] == ".":
            position = following + 1
            continue
        return tuple(parts), end


def _string_end(text: str, position: int) -> int:
    """The offset just after the string that starts at ``position``."""
    quote = text[position]
    if text.startswith(quote * 3, position):
        index = position + 3
        while index < len(text):
            if quote == '"' and text[index] == "\\":
                index += 2
                continue
            if text.startswith(quote * 3, index):
                end = index + 3
                while end < len(text) and text[end] == quote and end - index < 5:
                    end += 1
                return end
            index += 1
        raise TomlEditError(f"unterminated string at offset {position}")
    index = position + 1
    while index < len(text) and text[index] != "\n":
        if quote == '"' and text[index] == "\\":
            index += 2
            continue
        if text[index] == quote:
            return index + 1
        index += 1
    raise TomlEditError(f"unterminated string at offset {position}")


# The one-character tokens, by kind.
_PUNCTUATION = {"[": "open", "{": "open", "]": "close", "}": "close", ",": "comma", "=": "equals", "\n": "newline"}


def _tokens(text: str, position: int) -> Iterator[_Token]:
    while position < len(text):
        char = text[position]
        if char in " \t\r":
            position += 1
            continue
        if char in _PUNCTUATION:
            kind, end = _PUNCTUATION[char], position + 1
        elif char in "\"'":
            kind, end = "str", _string_end(text, position)
        elif char == "#":
            newline = text.find("\n", position)
            kind, end = "comment", len(text) if newline < 0 else newline
        else:
            match = _OTHER.match(text, position)
            assert match is not None
            kind, end = "other", match.end()
        yield _Token(kind, position, end)
        position = end


def _value_end(text: str, position: int) -> tuple[int, int]:
    """Where the value that starts at ``position`` ends, and where its statement ends (past the newline)."""
    depth = 0
    last = position
    for token in _tokens(text, position):
        if token.kind == "newline":
            if depth == 0:
                return last, token.end
            continue
        if token.kind == "comment":
            continue
        depth += {"open": 1, "close": -1}.get(token.kind, 0)
        last = token.end
    if depth:
        raise TomlEditError(f"unclosed bracket in the value at offset {position}")
    return last, len(text)


def _array_layout(text: str, span: tuple[int, int]) -> tuple[list[tuple[int, int]], int]:
    """The spans of an array's items and the offset of its closing bracket."""
    if not text.startswith("[", span[0]):
        raise TomlEditError(f"the value at offset {span[0]} is not an array")
    items: list[tuple[int, int]] = []
    depth = 0
    current: list[int] = []
    for token in _tokens(text, span[0]):
        if token.kind in ("newline", "comment"):
            continue
        if token.kind == "open":
            depth += 1
            if depth == 1:
                continue
        if token.kind == "close":
            depth -= 1
            if depth == 0:
                if current:
                    items.append((current[0], current[1]))
                return items, token.start
        if depth == 1 and token.kind == "comma":
            if current:
                items.append((current[0], current[1]))
            current = []
            continue
        current = [current[0] if current else token.start, token.end]
    raise TomlEditError(f"unclosed array at offset {span[0]}")
