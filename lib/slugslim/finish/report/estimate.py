"""How big the slug will be once Heroku gzips it, without gzipping all of it.

Heroku makes the slug with ``tar czf`` (GNU tar, gzip level 6). Compressing 1.6 GB of
TensorFlow site-packages that way takes about a minute on a dyno-sized machine, far too long to
do twice per build just to print two numbers. Fixed ratios are no good either: ELF libraries,
``.pyc`` files and C headers compress anywhere from 1.2× to 8×.

So we lay out the exact byte stream tar would write (512-byte headers, GNU long-name blocks,
data padded to 512 bytes, the end-of-archive blocks and the 10 KiB record), and deflate a
systematic sample of it with real zlib at level 6: in every ``step`` bytes of the stream, one
32 KiB window at a (seeded) random place. Each window is primed with the 32 KiB of stream that precede it (deflate's own
window size, passed as ``zdict``), so it compresses exactly as well as it would in the middle of
the real stream. The compressed-to-raw ratio of the sample, times the stream length, is the
estimate. Sampling 1/16 of the stream costs about 1/16 of compressing it, plus reading.

Measured on a real tensorflow-cpu 2.21.0 site-packages (with flask, gunicorn, pillow; 1.6 GB,
22,508 files): 366,305,502 bytes estimated against 366,125,640 from ``tar czf`` (+0.05 %), in
5.0 s of CPU against 71 s (0.07×). Other sampling rates on the same tree stayed within ±1.5 %.

Small trees (under ``EXACT_BELOW`` bytes) are simply compressed whole: that is exact, and fast.
"""

from __future__ import annotations

import bisect
import os
import random
import stat
import tarfile
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 512
RECORD = 20 * BLOCK  # GNU tar's default blocking factor pads the archive to 10 KiB records
HISTORY = 32 * 1024  # deflate's window: how far back a match can reach
SAMPLE = 32 * 1024  # bytes per sample
LEVEL = 6  # gzip's default, and what `tar czf` uses
GZIP_FRAMING = 18  # gzip header (10) and trailer (8)
# Sample at least this share of the stream, and at least MIN_SAMPLES windows of it.
RATE = 1 / 16
MIN_SAMPLES = 384
EXACT_BELOW = 8 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One member of the tar stream, as GNU tar would write it."""

    path: str  # absolute path on disk
    arcname: str
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    size: int  # bytes of data in the stream (0 for everything but regular files)
    mode: int
    mtime: float
    uid: int
    gid: int
    linkname: str = ""
    read_limit: int = -1  # read at most this many bytes (a file planned to shrink in place)

    @property
    def header_bytes(self) -> int:
        return BLOCK + _long_name_bytes(self.arcname) + _long_name_bytes(self.linkname)

    @property
    def stream_bytes(self) -> int:
        return self.header_bytes + _padded(self.size)

    def header(self) -> bytes:
        info = tarfile.TarInfo(self.arcname)
        info.size = self.size
        info.mode = stat.S_IMODE(self.mode)
        info.mtime = int(self.mtime)
        info.uid, info.gid = self.uid, self.gid
        info.uname = info.gname = "root" if self.uid == 0 else ""
        info.type = {
            "file": tarfile.REGTYPE,
            "dir": tarfile.DIRTYPE,
            "symlink": tarfile.SYMTYPE,
            "hardlink": tarfile.LNKTYPE,
        }.get(self.kind, tarfile.FIFOTYPE)
        info.linkname = self.linkname
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _long_name_bytes(name: str) -> int:
    """GNU tar stores names of 100 bytes or more in an extra ``././@LongLink`` member."""
    length = len(name.encode("utf-8", "surrogateescape"))
    if length < 100:
        return 0
    return BLOCK + _padded(length + 1)


@dataclass
class Estimate:
    """The compressed size of a tree as ``tar czf`` would make it, and how we got it."""

    bytes: int  # uncompressed: the sum of regular files' sizes
    files: int
    stream_bytes: int  # the uncompressed tar stream, headers and padding included
    compressed_bytes: int
    sampled_bytes: int
    exact: bool
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "compressed_bytes": self.compressed_bytes,
            "files": self.files,
            "tar_bytes": self.stream_bytes,
            "sampled_bytes": self.sampled_bytes,
            "exact": self.exact,
        }


@dataclass
class Layout:
    """The tar stream of a tree: entries with their offsets."""

    entries: list[Entry] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    length: int = 0

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        self.offsets.append(self.length)
        self.length += entry.stream_bytes

    def total(self) -> int:
        """With the two zero blocks that end an archive, padded to a whole record."""
        return -(-(self.length + 2 * BLOCK) // RECORD) * RECORD


def layout(
    root: Path,
    arcroot: str = ".",
    exclude: Iterable[str] = (),
    shrink: Mapping[str, int] | None = None,
) -> Layout:
    """Walk ``root`` the way tar does (directory order, never following symlinks).

    ``exclude`` holds paths relative to root (files or directories) to leave out, as if already
    removed. ``shrink`` maps relative file paths to bytes that will be cut from them in place
    (symbol stripping); such a file counts as its first ``size - n`` bytes, which is where an
    ELF file's code lives: the symbol tables that stripping removes sit at its end.
    """
    excluded = {p.strip("/") for p in exclude}
    shrinks = {k.strip("/"): v for k, v in (shrink or {}).items()}
    result = Layout()
    seen: dict[tuple[int, int], str] = {}

    def visit(path: str, rel: str, st: os.stat_result) -> None:
        arcname = f"{arcroot}/{rel}" if rel else arcroot
        mode = st.st_mode
        common: dict[str, Any] = {"mode": mode, "mtime": st.st_mtime, "uid": st.st_uid, "gid": st.st_gid}
        if stat.S_ISDIR(mode):
            result.add(Entry(path, arcname.rstrip("/") + "/", "dir", 0, **common))
            try:
                with os.scandir(path) as it:
                    children = list(it)
            except OSError:
                return
            for child in children:
                child_rel = f"{rel}/{child.name}" if rel else child.name
                if child_rel in excluded:
                    continue
                try:
                    child_st = child.stat(follow_symlinks=False)
                except OSError:
                    continue
                visit(child.path, child_rel, child_st)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in seen:
                result.add(Entry(path, arcname, "hardlink", 0, linkname=seen[key], **common))
                return
            if st.st_nlink > 1:
                seen[key] = arcname
            size = st.st_size
            cut = shrinks.get(rel, 0)
            if cut:
                size = max(0, size - cut)
            result.add(Entry(path, arcname, "file", size, read_limit=size if cut else -1, **common))
        elif stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError:
                target = ""
            result.add(Entry(path, arcname, "symlink", 0, linkname=target, **common))
        else:
            result.add(Entry(path, arcname, "other", 0, **common))

    root_st = os.lstat(root)
    visit(str(root), "", root_st)
    return result


class StreamReader:
    """Reads any byte range of the virtual tar stream described by a Layout."""

    def __init__(self, plan: Layout) -> None:
        self.plan = plan

    def read(self, start: int, end: int) -> bytes:
        plan = self.plan
        end = min(end, plan.total())
        parts: list[bytes] = []
        index = max(0, bisect.bisect_right(plan.offsets, start) - 1)
        position = start
        while position < end and index < len(plan.entries):
            entry = plan.entries[index]
            base = plan.offsets[index]
            if base >= end:
                break
            header_len = entry.header_bytes
            data_start = base + header_len
            data_end = data_start + entry.size
            member_end = base + entry.stream_bytes
            if position < data_start:
                header = entry.header()
                parts.append(header[position - base : min(end, data_start) - base])
                position = min(end, data_start)
            if position < data_end and position < end:
                upto = min(end, data_end)
                parts.append(_read_file(entry.path, position - data_start, upto - position))
                position = upto
            if position < member_end and position < end:
                upto = min(end, member_end)
                parts.append(bytes(upto - position))
                position = upto
            index += 1
        if position < end:
            parts.append(bytes(end - position))  # end-of-archive blocks and record padding
        return b"".join(parts)


def _read_file(path: str, offset: int, length: int) -> bytes:
    """File bytes as tar would read them; a file that shrank or vanished reads as zeros, like tar pads."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
    except OSError:
        data = b""
    return data + bytes(length - len(data)) if len(data) < length else data


def _compressed_window(data: bytes, history: bytes) -> int:
    if history:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, history)
    else:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return len(compressor.compress(data)) + len(compressor.flush())


def _compress_all(reader: StreamReader, total: int) -> int:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    size = 0
    chunk = 1024 * 1024
    for start in range(0, total, chunk):
        size += len(compressor.compress(reader.read(start, min(total, start + chunk))))
    return size + len(compressor.flush()) + GZIP_FRAMING


def estimate_layout(plan: Layout, rate: float | None = None) -> Estimate:
    """Estimate the ``tar czf`` size of a laid-out stream (see the module docstring)."""
    started = time.monotonic()
    total = plan.total()
    reader = StreamReader(plan)
    files = [e for e in plan.entries if e.kind == "file"]
    uncompressed = sum(e.size for e in files)
    if rate is None:
        rate = 1.0 if total < EXACT_BELOW else min(1.0, max(RATE, MIN_SAMPLES * SAMPLE / total))
    if rate >= 1.0:
        compressed = _compress_all(reader, total)
        return Estimate(uncompressed, len(files), total, compressed, total, True, time.monotonic() - started)

    step = max(SAMPLE, int(SAMPLE / rate))
    raw = packed = 0
    # One window at a random place in every stretch of `step` bytes (jittered systematic
    # sampling): spread like a grid, but a tree whose files repeat at some period cannot line
    # up with the grid and bias it. Seeded by the stream, so the same tree gives the same answer.
    rng = random.Random(total)
    for stretch in range(0, total, step):
        start = stretch + rng.randrange(max(1, min(step, total - stretch) - SAMPLE + 1))
        end = min(total, start + SAMPLE)
        history = reader.read(max(0, start - HISTORY), start)
        packed += _compressed_window(reader.read(start, end), history)
        raw += end - start
    compressed = round(total * packed / raw) + GZIP_FRAMING if raw else GZIP_FRAMING
    return Estimate(uncompressed, len(files), total, compressed, raw, False, time.monotonic() - started)


def estimate(
    root: Path,
    arcroot: str = ".",
    exclude: Iterable[str] = (),
    shrink: Mapping[str, int] | None = None,
    rate: float | None = None,
) -> Estimate:
    """The expected ``tar czf`` size of ``root`` (minus ``exclude``, with ``shrink`` applied)."""
    started = time.monotonic()
    result = estimate_layout(layout(root, arcroot, exclude, shrink), rate)
    result.seconds = time.monotonic() - started
    return result
