"""pip's requirements-file grammar, read faithfully and rewritten byte-minimally.

pip reads a requirements file in four passes (``pip/_internal/req/req_file.py``), and this module
follows the same passes so that it sees exactly the lines pip sees:

1. decode: a BOM picks the codec; else a PEP 263 ``coding:`` comment in the first two lines;
   else UTF-8. Lines are split with ``str.splitlines``.
2. join: a line ending in ``\\`` is joined with the next one, unless it is a comment line (one that
   starts with ``#`` after optional whitespace). A comment line ends a continuation and belongs to it.
3. strip comments: ``#`` at the start or after whitespace starts a comment (so ``url#egg=x`` is kept).
4. split args from options at the first space-separated token starting with ``-``; the options are
   shell-split and parsed like command-line options (abbreviated long options included).

Every logical line keeps the physical lines (with their own line endings) it came from, so an edit
replaces only those lines and everything else stays byte-identical, including CRLF and the BOM.
PEP 440/508 parsing is ``packaging``'s. Nested ``-r``/``-c`` files are resolved relative to the file
that includes them, as pip does, and each one is read (and later rewritten) in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from slugslim.core.errors import RequirementsError
from slugslim.deps.reqsyntax import (
    COMMENT,
    PEP263,
    Option,
    decode,
    join_lines,
    parse_options,
    split_args_options,
    terminator,
)

URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^(git|hg|svn|bzr)\+", re.I)
REMOTE_FILE = re.compile(r"^(https?|file):", re.I)
ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar", ".tar.lz")
DIRECT_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")
EGG_FRAGMENT = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass
class Entry:
    """One logical line of a requirements file: what pip parses after joining and stripping."""

    lineno: int  # 1-based number of its first physical line, as pip reports it
    first: int  # index of its first physical line in RequirementsFile.lines
    last: int  # index of its last physical line (inclusive)
    text: str  # joined, comment-free, stripped: the line pip parses ("" for comments and blank lines)
    args: str = ""
    options: tuple[Option, ...] = ()
    error: str = ""  # why pip would reject the options, if it would
    requirement: Requirement | None = None  # a PEP 508 requirement by name (no URL)
    kind: str = "blank"  # blank, option, nested, named, url, path, editable, invalid
    direct: Requirement | None = None  # a PEP 508 "name @ url" requirement

    @property
    def name(self) -> str | None:
        """The canonical project name of a named requirement."""
        return canonicalize_name(self.requirement.name) if self.requirement else None

    @property
    def hashes(self) -> tuple[str, ...]:
        return tuple(o.value for o in self.options if o.name == "hash" and o.value)

    @property
    def nested(self) -> tuple[str, str] | None:
        """("requirement" or "constraint", path as written) for a ``-r``/``-c`` line."""
        for option in self.options:
            if option.name in ("requirement", "constraint") and option.value and not self.args:
                return option.name, option.value
        return None

    def option_values(self, name: str) -> list[str]:
        return [o.value for o in self.options if o.name == name and o.value is not None]

    def has_flag(self, name: str) -> bool:
        return any(o.name == name for o in self.options)

    def target_name(self) -> str | None:
        """The project a URL, path or editable requirement installs, when its text says so."""
        if self.requirement is not None:
            return self.name
        if self.direct is not None:
            return canonicalize_name(self.direct.name)
        text = self.args or next(iter(self.option_values("editable")), "")
        if not text:
            return None
        egg = EGG_FRAGMENT.search(text)
        if egg:
            return canonicalize_name(egg.group(1))
        leaf = re.split(r"[/\\]", text.split(";")[0].split("#")[0].strip())[-1]
        if leaf.endswith(".whl"):
            try:
                return str(parse_wheel_filename(leaf)[0])
            except InvalidWheelFilename:
                return None
        return None


@dataclass
class RequirementsFile:
    """One file, decoded, split into physical lines (terminators kept) and logical entries."""

    path: Path
    raw: bytes
    encoding: str
    bom: bytes
    lines: list[str]  # physical lines, each with its own line terminator ("" on the last line)
    entries: list[Entry] = field(default_factory=list)
    constraint: bool = False  # read through -c

    @property
    def newline(self) -> str:
        """The file's line ending, for lines we write: the first one it uses, else LF."""
        for line in self.lines:
            ending = terminator(line)
            if ending:
                return ending
        return "\n"

    def content(self, index: int) -> str:
        """A physical line without its terminator."""
        line = self.lines[index]
        return line[: len(line) - len(terminator(line))]

    def coding_line(self) -> int:
        """Index of a PEP 263 coding comment in the first two lines, or -1."""
        for index, line in enumerate(self.lines[:2]):
            if line.startswith("#") and PEP263.search(line.encode(self.encoding, "surrogateescape")):
                return index
        return -1

    def render(self, edits: dict[int, list[str] | None], header: str | None = None) -> bytes:
        """The file with entries replaced (by physical lines without terminators) or removed (None).

        Untouched lines keep their bytes; new lines get the file's line ending. ``header`` becomes
        one comment line at the top (after the BOM, and after a PEP 263 coding line, which must stay
        in the first two lines).
        """
        out: list[str] = []
        replaced = {self.entries[i].first: i for i in edits}
        skip_until = -1
        for index, line in enumerate(self.lines):
            if index <= skip_until:
                continue
            if index in replaced:
                entry = self.entries[replaced[index]]
                skip_until = entry.last
                new_lines = edits[replaced[index]]
                if new_lines is None:
                    continue
                ending = terminator(self.lines[entry.last])
                out.extend(text + self.newline for text in new_lines[:-1])
                out.append(new_lines[-1] + ending)
                continue
            out.append(line)
        if header is not None:
            at = self.coding_line() + 1
            # A coding line that is also the last line needs a line ending before our header follows it.
            if at > 0 and at == len(out) and not terminator(out[-1]):
                out[-1] += self.newline
            out.insert(at, header + self.newline)
        return self.bom + "".join(out).encode(self.encoding, "surrogateescape")


def _classify(args: str) -> tuple[str, Requirement | None]:
    """Which kind of requirement pip would make of the args: named, url, path or invalid."""
    if URL_SCHEME.match(args):
        return "url", None
    if DIRECT_REFERENCE.match(args):
        # "name @ url" is a PEP 508 requirement by URL, whatever the URL looks like (pip does the same).
        try:
            return "url", Requirement(args)
        except InvalidRequirement:
            return "invalid", None
    spec = args.split(";", 1)[0].strip()
    if "/" in spec.split("@", 1)[0] or "\\" in spec or spec.startswith(".") or spec.lower().endswith(ARCHIVE_SUFFIXES):
        return "path", None
    try:
        requirement = Requirement(args)
    except InvalidRequirement:
        return "invalid", None
    if requirement.url:
        return "url", requirement
    return "named", requirement


def parse_entry(first: int, last: int, joined: str) -> Entry:
    text = COMMENT.sub("", joined).strip()
    entry = Entry(lineno=first + 1, first=first, last=last, text=text)
    if not text:
        return entry
    args, options_text = split_args_options(text)
    entry.args = args
    try:
        entry.options = parse_options(options_text)
    except ValueError as exc:
        entry.error = str(exc)
    if args:
        entry.kind, requirement = _classify(args)
        entry.requirement = requirement if entry.kind == "named" else None
        entry.direct = requirement if entry.kind == "url" else None
    elif entry.has_flag("editable"):
        entry.kind = "editable"
    elif entry.nested:
        entry.kind = "nested"
    else:
        entry.kind = "option"
    return entry


def parse_text(path: Path, raw: bytes, constraint: bool = False) -> RequirementsFile:
    text, encoding, bom = decode(raw)
    lines = text.splitlines(keepends=True)
    parsed = RequirementsFile(path=path, raw=raw, encoding=encoding, bom=bom, lines=lines, constraint=constraint)
    parsed.entries = [parse_entry(first, last, joined) for first, last, joined in join_lines(lines)]
    return parsed


def read(path: Path, constraint: bool = False) -> RequirementsFile:
    return parse_text(path, path.read_bytes(), constraint)


@dataclass
class Tree:
    """A requirements file and every file it includes through -r and -c, in the order pip reads them."""

    root: Path
    files: list[RequirementsFile]
    # Files that are included but that we cannot or must not read: (including file, line, target, why).
    skipped: list[tuple[Path, int, str, str]] = field(default_factory=list)

    def entries(self) -> Iterator[tuple[RequirementsFile, int, Entry]]:
        for parsed in self.files:
            for index, entry in enumerate(parsed.entries):
                yield parsed, index, entry

    @property
    def hash_mode(self) -> bool:
        """pip's hash-checking mode: any requirement with --hash, or --require-hashes anywhere."""
        return any(entry.hashes or entry.has_flag("require-hashes") for _, _, entry in self.entries())


def read_tree(root: Path, boundary: Path) -> Tree:
    """Read ``root`` and its nested files. Files outside ``boundary`` (the app dir) are not read.

    Like pip, a file that includes itself again is an error.
    """
    tree = Tree(root=root, files=[])
    boundary = boundary.resolve()

    def visit(path: Path, constraint: bool, stack: tuple[Path, ...]) -> None:
        parsed = read(path, constraint)
        tree.files.append(parsed)
        for entry in parsed.entries:
            nested = entry.nested
            if nested is None:
                continue
            flag, target = nested
            where = (path, entry.lineno, target)
            if REMOTE_FILE.match(target):
                tree.skipped.append((*where, "it is a URL, so it cannot be changed at build time"))
                continue
            child = path.parent / target
            resolved = child.resolve()
            if not resolved.is_relative_to(boundary):
                tree.skipped.append((*where, "it is outside the app directory"))
                continue
            if resolved in stack:
                raise RequirementsError(
                    str(path.relative_to(boundary) if path.resolve().is_relative_to(boundary) else path),
                    entry.lineno,
                    f"'{target}' includes itself again, so pip would refuse this file too.",
                    "Remove the circular -r/-c reference.",
                )
            if not resolved.is_file():
                tree.skipped.append((*where, "the file does not exist"))
                continue
            if any(f.path.resolve() == resolved for f in tree.files):
                continue
            visit(child, constraint or flag == "constraint", (*stack, resolved))

    visit(root, False, (root.resolve(),))
    return tree
