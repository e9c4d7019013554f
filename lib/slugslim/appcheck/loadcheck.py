"""Whether shared objects still load after ``strip``: each one opened with ctypes in the app's Python."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

# Runs in the app's interpreter: load each shared object with ctypes, one line per result,
# so a crash still tells which file did it.
_LOADER = r"""
import ctypes, sys
for index, path in enumerate(sys.argv[1:]):
    print("BEGIN", index, flush=True)
    try:
        ctypes.CDLL(path)
        print("OK", index, flush=True)
    except OSError as exc:
        print("ERR", index, str(exc).replace("\n", " ")[:300], flush=True)
"""


def load_check(python: Path | str, env: Mapping[str, str], paths: list[Path], timeout: float = 300) -> dict[Path, str]:
    """Which shared objects fail to load, with why. A crash blames the file being loaded."""
    failures: dict[Path, str] = {}
    remaining = list(paths)
    while remaining:
        try:
            proc = subprocess.run([str(python), "-c", _LOADER, *map(str, remaining)], env=dict(env),
                                  capture_output=True, text=True, errors="replace", timeout=timeout)
            lines, code = proc.stdout.splitlines(), proc.returncode
        except subprocess.TimeoutExpired as exc:
            raw = exc.stdout or b""
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            lines, code = text.splitlines(), -9
        last = -1
        for line in lines:
            word, _, rest = line.partition(" ")
            index_text, _, message = rest.partition(" ")
            if not index_text.isdigit():
                continue
            index = int(index_text)
            last = max(last, index)
            if word == "ERR":
                failures[remaining[index]] = message
            elif word == "OK":
                last = max(last, index)
        finished = {int(line.split(" ")[1]) for line in lines if line.startswith(("OK ", "ERR "))}
        if code == 0 and len(finished) == len(remaining):
            break
        crashed = next((i for i in range(len(remaining)) if i not in finished), None)
        if crashed is None:
            break
        failures[remaining[crashed]] = f"loading it crashed the interpreter (exit status {code})"
        remaining = remaining[crashed + 1 :]
    return failures
