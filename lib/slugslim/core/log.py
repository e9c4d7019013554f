"""The build log, in Heroku's grammar.

``-----> `` starts a step, seven spaces indent its details, `` !     `` marks warnings
and errors. Steps print their duration when they finish, as heroku/python does.
"""

from __future__ import annotations

import sys
import urllib.parse
from typing import TextIO

STEP = "-----> "
DETAIL = "       "
ALERT = " !     "


def _out(stream: TextIO | None = None) -> TextIO:
    return stream if stream is not None else sys.stdout


_steps_printed = 0


def step(text: str, stream: TextIO | None = None) -> None:
    global _steps_printed
    _steps_printed += 1
    print(f"{STEP}{text}", file=_out(stream), flush=True)


def steps_printed() -> int:
    """How many steps have been printed so far; lets a caller tell whether a function opened one."""
    return _steps_printed


def detail(text: str, stream: TextIO | None = None) -> None:
    for line in text.splitlines() or [""]:
        print(f"{DETAIL}{line}".rstrip(), file=_out(stream), flush=True)


def _alert(text: str) -> None:
    print(file=sys.stderr)
    for line in text.splitlines():
        print(f"{ALERT}{line}".rstrip(), file=sys.stderr)
    print(file=sys.stderr, flush=True)


def warning(text: str) -> None:
    """A multi-line warning; the first line should start with ``Warning:``."""
    _alert(text)


def error(text: str) -> None:
    """A multi-line error; the first line should start with ``Error:``."""
    _alert(text)


def seconds(elapsed: float) -> str:
    return f"{elapsed:.1f}s" if elapsed < 60 else f"{int(elapsed // 60)}m {elapsed % 60:.0f}s"


def human_bytes(size: float) -> str:
    """Sizes as Heroku prints them: decimal units, one decimal place above 1 MB."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(size) >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{int(size)} B"


def redact(url: str) -> str:
    """``url`` without credentials, query or fragment (where tokens travel): what the build log, the
    report and the models manifest show. The dyno gets credentials from config vars, never from here."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
