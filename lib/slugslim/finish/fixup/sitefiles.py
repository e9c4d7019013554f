"""What the fix-up reads and writes in site-packages: dist-info, stand-ins, and its quarantine.

``slugslim.finish.fixup.fixup`` decides what to replace; this module does the file work it needs, the same for
every framework: read each installed distribution's METADATA and RECORD, move files aside through
the prune engine's journaled quarantine, write metadata-only stand-ins and stubs, and take out the
CUDA runtime wheels only a GPU build required.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path

from slugslim.core import log
from slugslim.core.context import FinishContext
from slugslim.core.frameworks import cuda_removals, framework_of
from slugslim.core.installed import MARKER_FILE, STAND_IN_INSTALLER, Dist, requirers
from slugslim.core.plan import Removal
from slugslim.core.results import FixupResult
from slugslim.removal import quarantine as prune_quarantine
from slugslim.removal.engine import quarantine_location


def hash_ok(site_packages: Path, path: str, expected: str) -> bool:
    algorithm, _, digest = expected.partition("=")
    target = site_packages / path
    if algorithm != "sha256" or not target.is_file():
        return target.is_file()
    actual = base64.urlsafe_b64encode(hashlib.sha256(target.read_bytes()).digest()).rstrip(b"=").decode()
    return actual == digest


class Quarantine:
    """GPU-only files moved aside until verification passes, journaled by the prune engine's quarantine.

    It sits next to BUILD_DIR on the same filesystem, like the prune step's, under its own name; a
    fix-up killed half-way is put back by the next one (``recover``) before it starts again.
    """

    def __init__(self, build_dir: Path, site: Path) -> None:
        self.site = site
        prune_location = quarantine_location(build_dir, site)
        self.location = prune_location.with_name(f"{prune_location.name}-fixup")
        prune_quarantine.recover(self.location)
        self._box: prune_quarantine.Quarantine | None = None
        self.entries: list[prune_quarantine.Entry] = []
        self.installed: list[Path] = []  # written where nothing was taken (a +cpu dist-info): goes on restore
        self.bytes = 0

    def take(self, path: Path) -> int:
        """Move one file or directory of site-packages aside (never through a symlink). Returns bytes."""
        if not (path.exists() or path.is_symlink()):
            return 0
        if not path.parent.resolve().is_relative_to(self.site.resolve()):
            return 0
        if self._box is None:
            self._box = prune_quarantine.Quarantine(self.location, self.site)
        size = _size(path)
        relative = path.relative_to(self.site).as_posix()
        applied, failed = self._box.apply([Removal(relative, size, "fixup", "only the GPU build had it")])
        if failed:
            raise OSError(f"could not move {relative} aside: {failed[relative]}")
        self.entries.extend(applied)
        self.bytes += size
        return size

    def restore(self) -> None:
        """Put back what was taken. A stand-in written where an original was taken gives way to it."""
        if self._box is not None:
            for entry in self.entries:
                written = self._box.target(entry.removal)
                if written.is_dir() and not written.is_symlink():
                    shutil.rmtree(written)
                elif written.exists() or written.is_symlink():
                    written.unlink()
            self._box.restore(self.entries)
            self._box.discard()
        self.entries.clear()
        for path in self.installed:
            if path.parent.resolve().is_relative_to(self.site.resolve()):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
        self.installed.clear()

    def commit(self) -> None:
        if self._box is not None:
            self._box.discard()
        self.entries.clear()
        self.installed.clear()


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def stand_in(gpu: Dist, target: str, quarantine: Quarantine) -> None:
    """Replace the GPU dist-info with a metadata-only one that the CPU build satisfies."""
    framework = framework_of(gpu.name)
    package = framework.package if framework else gpu.name
    info = gpu.info
    quarantine.take(info)
    info.mkdir()
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {gpu.name}\n"
        f"Version: {gpu.version}\n"
        f"Summary: Metadata-only stand-in: the CPU build {target} {gpu.version} provides this package "
        "(replaced by the slugslim buildpack; Heroku dynos have no GPU).\n"
        f"Requires-Dist: {target}=={gpu.version}\n\n"
        f"slugslim replaced the GPU build of {gpu.name} {gpu.version} with {target} {gpu.version}, which installs\n"
        f"the same '{package}' package. This distribution keeps what required it satisfied.\n"
    )
    files = {"METADATA": metadata, "INSTALLER": f"{STAND_IN_INSTALLER}\n",
             "WHEEL": "Wheel-Version: 1.0\nGenerator: slugslim\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    _write_info(info, files)


def _write_info(info: Path, files: dict[str, str]) -> None:
    rows = []
    for name, text in files.items():
        data = text.encode("utf-8")
        (info / name).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{info.name}/{name},sha256={digest},{len(data)}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n", encoding="utf-8")


def merge_into_gpu_name(site: Path, gpu: Dist, cpu: Dist, quarantine: Quarantine) -> None:
    """The CPU build's files, registered under the GPU name (for locks synced exactly)."""
    cpu_info = os.path.normpath(cpu.info.name)
    rows = [f"{p},{h}," for p, h in cpu.files
            if not (os.path.normpath(p) == cpu_info or os.path.normpath(p).startswith(cpu_info + os.sep))]
    marker = f"The files of this distribution are {cpu.name} {cpu.version}'s (the CPU build), put here by slugslim.\n"
    (gpu.info / MARKER_FILE).write_text(marker, encoding="utf-8")
    own = [f"{gpu.info.name}/{f.name},," for f in sorted(gpu.info.iterdir()) if f.is_file() and f.name != "RECORD"]
    (gpu.info / "RECORD").write_text("\n".join([*rows, *own, f"{gpu.info.name}/RECORD,,"]) + "\n", encoding="utf-8")
    quarantine.take(cpu.info)


def remove_cuda(ctx: FinishContext, gpu: Dist, dists: dict[str, Dist], quarantine: Quarantine,
                 result: FixupResult, stub: bool) -> None:
    """CUDA wheels the GPU build required (by any extra) and nothing else installed needs."""
    site = ctx.site_packages
    assert site is not None
    removable, needed = cuda_removals(gpu, dists, ctx.config.swap)
    for name in removable:
        dist = dists[name]
        size = 0
        info_prefix = os.path.normpath(dist.info.name)
        for path in sorted(dist.paths()):
            if path == info_prefix or path.startswith(info_prefix + os.sep):
                continue
            size += quarantine.take(site / path)
        if stub:
            _write_info_stub(dist)
        else:
            size += quarantine.take(dist.info)
        prune_empty_dirs(site, {Path(p).parts[0] for p in dist.paths() if not p.startswith("..")})
        result.add("removed", name, f"{name} {dist.version} removed ({log.human_bytes(size)}): a CUDA library only "
                   f"{gpu.name} used", bytes=size)
    for name in needed:
        result.add("kept", name, f"{name} kept: {', '.join(requirers(dists, name, {gpu.name}))} needs it")


def _write_info_stub(dist: Dist) -> None:
    (dist.info / MARKER_FILE).write_text("slugslim removed this CUDA library's files (dynos have no GPU) and kept "
                                         "its metadata so the lock stays satisfied.\n", encoding="utf-8")
    own = [f"{dist.info.name}/{f.name},," for f in sorted(dist.info.iterdir()) if f.is_file() and f.name != "RECORD"]
    (dist.info / "RECORD").write_text("\n".join([*own, f"{dist.info.name}/RECORD,,"]) + "\n", encoding="utf-8")


def prune_empty_dirs(site: Path, tops: set[str]) -> None:
    """Remove directories the moves left empty (namespace dirs such as nvidia/), bottom up."""
    for top in tops:
        root = site / top
        if not root.is_dir() or root.is_symlink():
            continue
        for directory in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
                                key=lambda p: len(p.parts), reverse=True):
            if not any(directory.iterdir()):
                directory.rmdir()
        if not any(root.iterdir()):
            root.rmdir()
