"""The line-level passes of pip's requirements-file reader: decode, join, and the options grammar.

``slugslim.deps.requirements`` builds its entries from these (its docstring lists pip's four passes);
``slugslim.deps.reqedit`` writes lines back in the same grammar.
"""

from __future__ import annotations

import codecs
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# Order matters: the UTF-16 LE BOM is a prefix of the UTF-32 LE one.
BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
PEP263 = re.compile(rb"coding[:=]\s*([-\w.]+)")
COMMENT = re.compile(r"(^|\s+)#.*$")

# The options pip accepts in a requirements file, by long name; True when the option takes a value.
LONG_OPTIONS: dict[str, bool] = {
    "index-url": True,
    "extra-index-url": True,
    "no-index": False,
    "constraint": True,
    "requirement": True,
    "editable": True,
    "find-links": True,
    "no-binary": True,
    "only-binary": True,
    "prefer-binary": False,
    "require-hashes": False,
    "no-require-hashes": False,
    "pre": False,
    "all-releases": True,
    "only-final": True,
    "trusted-host": True,
    "use-feature": True,
    "hash": True,
    "config-settings": True,
}
SHORT_OPTIONS = {"i": "index-url", "c": "constraint", "r": "requirement", "e": "editable", "f": "find-links",
                 "C": "config-settings"}


@dataclass(frozen=True)
class Option:
    name: str  # long name without dashes, e.g. "index-url"
    value: str | None


def terminator(line: str) -> str:
    stripped = line.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    return line[len(stripped):]


def decode(raw: bytes) -> tuple[str, str, bytes]:
    """(text, encoding, bom) the way pip decodes a requirements file.

    Bytes that are not valid in the chosen encoding survive as surrogates, so an untouched line is
    written back byte for byte.
    """
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            return raw[len(bom):].decode(encoding, "surrogateescape"), encoding, bom
    for line in raw.split(b"\n")[:2]:
        if line[:1] == b"#":
            found = PEP263.search(line)
            if found:
                encoding = found.group(1).decode("ascii")
                try:
                    codecs.lookup(encoding)
                except LookupError:
                    break
                return raw.decode(encoding, "surrogateescape"), encoding, b""
    return raw.decode("utf-8", "surrogateescape"), "utf-8", b""


def join_lines(lines: Sequence[str]) -> Iterator[tuple[int, int, str]]:
    """(first index, last index, joined text) per logical line, as pip's ``join_lines``."""
    start: int | None = None
    parts: list[str] = []
    for index, raw in enumerate(lines):
        line = raw[: len(raw) - len(terminator(raw))]
        is_comment = COMMENT.match(line) is not None
        if not line.endswith("\\") or is_comment:
            if is_comment:
                line = " " + line
            if parts:
                parts.append(line)
                assert start is not None
                yield start, index, "".join(parts)
                parts = []
                start = None
            else:
                yield index, index, line
        else:
            if not parts:
                start = index
            parts.append(line.strip("\\"))
    if parts:
        assert start is not None
        yield start, len(lines) - 1, "".join(parts)


def split_args_options(line: str) -> tuple[str, str]:
    """pip's ``break_args_options``: args end at the first space-separated token starting with '-'."""
    tokens = line.split(" ")
    for index, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(tokens[:index]), " ".join(tokens[index:])
    return line, ""


def _long_option(word: str) -> str:
    """Resolve an abbreviated long option the way optparse does."""
    if word in LONG_OPTIONS:
        return word
    matches = [name for name in LONG_OPTIONS if name.startswith(word)]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"no such option: --{word}" if not matches else f"ambiguous option: --{word}")


def parse_options(text: str) -> tuple[Option, ...]:
    """Shell-split and parse the options part of a line; ValueError where pip would fail."""
    words = shlex.split(text)
    options: list[Option] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            name = _long_option(name)
            if LONG_OPTIONS[name]:
                if not eq:
                    if index >= len(words):
                        raise ValueError(f"--{name} option requires an argument")
                    value = words[index]
                    index += 1
                options.append(Option(name, value))
            else:
                if eq:
                    raise ValueError(f"--{name} option does not take a value")
                options.append(Option(name, None))
        elif word.startswith("-") and len(word) > 1:
            letter = word[1]
            if letter not in SHORT_OPTIONS:
                raise ValueError(f"no such option: -{letter}")
            value = word[2:]
            if not value:
                if index >= len(words):
                    raise ValueError(f"-{letter} option requires an argument")
                value = words[index]
                index += 1
            options.append(Option(SHORT_OPTIONS[letter], value))
        else:
            raise ValueError(f"unexpected argument {word!r}")
    return tuple(options)
