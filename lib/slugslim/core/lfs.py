"""Git LFS pointers: files that look committed but arrive as a 130-byte text stub.

Heroku does not fetch Git LFS objects, so a model tracked by LFS reaches the build as its pointer
(``version https://git-lfs.github.com/spec/v1``, ``oid sha256:<64 hex>``, ``size <bytes>``) and the
app fails at boot with ``OSError: Unable to open file (file signature not found)``. The prepare
phase finds every such file in the app (the same walk as the model discovery) and says so loudly;
``models.lfs: fail`` stops the build instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from slugslim.core import log
from slugslim.core.app import walk
from slugslim.core.errors import LfsPointerError
from slugslim.core.modelscan import SUFFIXES

SPEC_LINE = b"version https://git-lfs.github.com/spec/v1\n"
MAX_POINTER = 1024
_OID = re.compile(r"^oid sha256:[0-9a-f]{64}$")
_SIZE = re.compile(r"^size (0|[1-9][0-9]*)$")


@dataclass(frozen=True)
class Pointer:
    path: str  # relative to the app
    size: int  # the real file's size, from the pointer
    sha256: str  # the real file's sha256, from the pointer's oid
    model: bool  # named like a model file

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "model": self.model}


def parse(data: bytes) -> tuple[int, str] | None:
    """(real size, real sha256) if ``data`` is a well-formed LFS pointer, else None."""
    if len(data) >= MAX_POINTER or not data.startswith(SPEC_LINE):
        return None
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        return None
    oid = [line for line in lines if line.startswith("oid ")]
    sizes = [m for line in lines if (m := _SIZE.match(line))]
    if len(oid) != 1 or not _OID.match(oid[0]) or len(sizes) != 1:
        return None
    return int(sizes[0].group(1)), oid[0].removeprefix("oid sha256:")


def find(app_dir: Path) -> list[Pointer]:
    found = []
    for base, _, files in walk(app_dir):
        for name, size in sorted(files.items()):
            if size < len(SPEC_LINE) or size >= MAX_POINTER:
                continue
            try:
                real = parse((base / name).read_bytes())
            except OSError:
                continue
            if real is not None:
                relative = (base / name).relative_to(app_dir).as_posix()
                found.append(Pointer(relative, *real, PurePosixPath(name).suffix.lower() in SUFFIXES))
    return found


def check(app_dir: Path, policy: str) -> list[Pointer]:
    """Warn about every pointer (or raise LfsPointerError with ``models.lfs: fail``)."""
    pointers = find(app_dir)
    if not pointers:
        return pointers
    if policy == "fail":
        raise LfsPointerError([p.path for p in pointers], describe(pointers))
    log.warning("Warning: Git LFS pointers instead of files.\n\n" + describe(pointers) + "\n\n"
                "Set 'models: {lfs: fail}' in slugslim.yml to fail the build instead.")
    return pointers


def describe(pointers: list[Pointer]) -> str:
    listed = "\n".join(f"  {p.path}: a Git LFS pointer for a {log.human_bytes(p.size)} "
                       f"{'model ' if p.model else ''}file (sha256 {p.sha256})" for p in pointers[:20])
    more = f"\n  ... and {len(pointers) - 20} more" if len(pointers) > 20 else ""
    return (
        f"{listed}{more}\n"
        "Heroku does not download Git LFS files, so your app gets these small text stubs instead,\n"
        "and loading them fails at run time (for a model: 'file signature not found'). Either:\n"
        "  - commit the real file to Git (git lfs untrack, then add and commit it again);\n"
        "  - or upload the real file yourself to <models.source>/<its sha256>/<its name> and set\n"
        "    models.source in slugslim.yml (s3://bucket/prefix or https://host/prefix): slugslim then\n"
        "    leaves the stub out of the slug and fetches the real file when a dyno starts;\n"
        "  - or add a buildpack that fetches Git LFS objects, in front of this one."
    )
