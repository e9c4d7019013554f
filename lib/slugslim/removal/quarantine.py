"""Apply a plan by moving things aside, with a journal, so every step can be undone.

The quarantine is a directory outside BUILD_DIR on the same filesystem, so a removal is one
``rename`` (no copy, no data at risk) and a rollback renames it back, byte-identical, with
its mode and timestamps. Strips put the stripped copy in place and move the original aside.

The journal is written and flushed before anything moves. A build killed halfway leaves a
quarantine whose journal says where every item came from; the next run puts each item back
(``recover``) before it plans again, so no package stays half-removed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slugslim.core.plan import Removal
from slugslim.removal.symbols import NAME as STRIP_RULE

JOURNAL = "journal.jsonl"
ITEMS = "items"
STAGING = "staging"
TRASH = ".trash-"


@dataclass
class Entry:
    id: int
    removal: Removal
    kind: str  # "move" or "strip"
    saved: int = 0  # bytes actually saved


def _writable_parent(path: Path) -> int | None:
    """Make a read-only parent directory writable for a rename; return its old mode."""
    parent = path.parent
    mode = parent.stat().st_mode
    if mode & stat.S_IWUSR:
        return None
    parent.chmod(mode | stat.S_IWUSR)
    return mode


def _rename(src: Path, dst: Path, replace: bool = False) -> None:
    """rename(2), tolerating read-only parent directories (restored afterwards)."""
    mover = os.replace if replace else os.rename
    try:
        mover(src, dst)
        return
    except PermissionError:
        pass
    modes = [(p.parent, _writable_parent(p)) for p in (src, dst)]
    try:
        mover(src, dst)
    finally:
        for parent, mode in modes:
            if mode is not None:
                parent.chmod(mode)


def _make_deletable(path: Path) -> None:
    """Read-only directories (a non-root build) would refuse the deletion of their entries."""
    for top, dirnames, _files in os.walk(path):
        for name in dirnames:
            sub = os.path.join(top, name)
            if not os.path.islink(sub):
                os.chmod(sub, os.lstat(sub).st_mode | stat.S_IRWXU)
    path.chmod(path.stat().st_mode | stat.S_IRWXU)


def _rmtree(path: Path) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink():
        _make_deletable(path)
        shutil.rmtree(path)
    else:
        path.unlink()


class Quarantine:
    """Items moved aside from ``anchor`` (site-packages); paths in removals are relative to it."""

    def __init__(self, location: Path, anchor: Path, strip: str | None = None) -> None:
        self.location = location
        self.anchor = anchor
        self.strip = strip
        self._next = 0
        location.mkdir(parents=True, exist_ok=False)
        (location / ITEMS).mkdir()
        (location / STAGING).mkdir()
        self._journal({"anchor": str(anchor)})

    def _journal(self, *records: dict[str, object]) -> None:
        with (self.location / JOURNAL).open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def target(self, removal: Removal) -> Path:
        return Path(os.path.normpath(self.anchor / removal.path))

    def apply(self, removals: Iterable[Removal]) -> tuple[list[Entry], dict[str, str]]:
        """Move (or strip) each removal; return what was applied and what failed, with why."""
        entries = []
        for removal in removals:
            kind = "strip" if removal.rule == STRIP_RULE else "move"
            entries.append(Entry(self._next, removal, kind))
            self._next += 1
        failed: dict[str, str] = {}
        staged = self._stage_strips([e for e in entries if e.kind == "strip"], failed)
        todo = [e for e in entries if e.kind == "move" or e.id in staged]
        self._journal(*({"id": e.id, "path": e.removal.path, "kind": e.kind} for e in todo))
        applied: list[Entry] = []
        for entry in todo:
            src = self.target(entry.removal)
            item = self.location / ITEMS / str(entry.id)
            try:
                if entry.kind == "strip":
                    _rename(src, item)
                    _rename(staged[entry.id], src)
                    entry.saved = item.stat().st_size - src.stat().st_size
                else:
                    _rename(src, item)
                    entry.saved = entry.removal.bytes
            except OSError as exc:
                if entry.kind == "strip" and item.exists() and not src.exists():
                    _rename(item, src)
                failed[entry.removal.path] = f"{type(exc).__name__}: {exc.strerror or exc}"
                continue
            applied.append(entry)
        return applied, failed

    def _stage_strips(self, entries: list[Entry], failed: dict[str, str]) -> dict[int, Path]:
        """Strip into the staging area in parallel; originals stay untouched until the journal says so."""
        if not entries or not self.strip:
            for entry in entries:
                failed[entry.removal.path] = "strip is not available"
            return {}
        strip = self.strip

        def one(entry: Entry) -> tuple[Entry, Path | None, str]:
            src = self.target(entry.removal)
            out = self.location / STAGING / str(entry.id)
            try:
                proc = subprocess.run(
                    [strip, "--strip-unneeded", "-p", "-o", str(out), str(src)],
                    capture_output=True, text=True, errors="replace", timeout=600,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return entry, None, str(exc)
            if proc.returncode != 0 or not out.is_file():
                out.unlink(missing_ok=True)
                lines = proc.stderr.strip().splitlines()
                return entry, None, lines[-1] if lines else f"strip exited with {proc.returncode}"
            original = src.stat()
            if out.stat().st_size >= original.st_size:
                out.unlink()
                return entry, None, "nothing to strip"
            os.chmod(out, stat.S_IMODE(original.st_mode))
            return entry, out, ""

        staged: dict[int, Path] = {}
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            for entry, out, why in pool.map(one, entries):
                if out is None:
                    failed[entry.removal.path] = why
                else:
                    staged[entry.id] = out
        return staged

    def restore(self, entries: Iterable[Entry]) -> None:
        """Put entries back exactly as they were, newest first."""
        for entry in sorted(entries, key=lambda e: e.id, reverse=True):
            item = self.location / ITEMS / str(entry.id)
            if item.exists() or item.is_symlink():
                target = self.target(entry.removal)
                # Its directory may be gone since: a pip install that replaced the distribution (the fix-up).
                target.parent.mkdir(parents=True, exist_ok=True)
                _rename(item, target, replace=entry.kind == "strip")

    def discard(self, background: bool = False) -> None:
        """Commit: the removals become final.

        With ``background``, the quarantine is renamed out of the way (atomically, so it can no
        longer be "recovered") and deleted by a detached process: deleting tens of thousands of
        files took 40 s on a busy disk, and nothing in it can reach the slug (it is outside
        BUILD_DIR), so the build need not wait for it.
        """
        if not background:
            _rmtree(self.location)
            return
        trash = self.location.with_name(f"{self.location.name}{TRASH}{os.getpid()}-{time.monotonic_ns()}")
        _make_deletable(self.location)
        os.rename(self.location, trash)
        _delete_detached(trash)


def empty_trash(location: Path) -> None:
    """Delete, in the background, what an earlier background commit may have left (a killed build)."""
    for trash in location.parent.glob(f"{location.name}{TRASH}*"):
        _delete_detached(trash)


def _delete_detached(path: Path) -> None:
    subprocess.Popen(
        [sys.executable, "-c", "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)", str(path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def recover(location: Path) -> int:
    """Put back everything a killed run left in its quarantine; then remove it. Returns items restored."""
    journal = location / JOURNAL
    if not location.exists():
        return 0
    restored = 0
    anchor: Path | None = None
    records: list[dict[str, object]] = []
    if journal.is_file():
        for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by the kill; its rename never happened
            if isinstance(record, dict):
                records.append(record)
    for record in records:
        if "anchor" in record:
            anchor = Path(str(record["anchor"]))
    if anchor is not None and anchor.is_dir():
        for record in reversed(records):
            if "id" not in record:
                continue
            item = location / ITEMS / str(record["id"])
            if not (item.exists() or item.is_symlink()):
                continue
            target = Path(os.path.normpath(anchor / str(record["path"])))
            if record.get("kind") == "strip":
                _rename(item, target, replace=True)
            elif target.exists() or target.is_symlink():
                continue  # something newer is already there (e.g. pip reinstalled it)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                _rename(item, target)
            restored += 1
    _rmtree(location)
    return restored
