"""Finish phase of the swap: whatever GPU TensorFlow got installed anyway, leave one CPU copy.

GPU ``tensorflow`` (or ``tensorflow-gpu``, ``tf-nightly``) gets in without requirements.txt naming it:
through ``tf-keras``/``tensorflow-text``/… which require ``tensorflow`` by name, through uv.lock,
poetry.lock or Pipfile.lock (which cannot be re-locked at build time), or next to ``tensorflow-cpu``.
The two builds share the ``tensorflow/`` package directory, so uninstalling one the usual way
deletes the other's files too. What we do instead, with the app's own interpreter:

1. ``pip install --no-deps tensorflow-cpu==<the GPU build's version>`` (or, when tensorflow-cpu is
   already there but the GPU build overwrote some of its files, the same with ``--force-reinstall``).
   The CPU wheel now owns every shared file.
2. Files only the GPU build had (in its RECORD, in no other distribution's) are moved out, and so are
   the CUDA wheels (``nvidia-*``, ``tensorrt*``) that only the GPU build required.
3. The GPU build's metadata is replaced so that every tool still agrees with what is installed, and so
   that the next build, which restores this site-packages from heroku/python's cache, has nothing to
   download. Which way depends on how the app installs:

   - pip and pipenv add what is missing and leave extra distributions alone. The GPU dist-info becomes
     a **metadata-only stand-in**: ``tensorflow-<v>.dist-info`` with no files of its own, ``Requires-Dist:
     tensorflow-cpu==<v>`` and ``INSTALLER: slugslim``. ``importlib.metadata.version("tensorflow")`` and
     ``pip check`` keep working, tf-keras's ``tensorflow>=…`` stays satisfied, and ``pip uninstall
     tensorflow`` removes only the stand-in.
   - uv and poetry sync site-packages *exactly* to their lock: a ``tensorflow-cpu`` the lock does not
     list would be uninstalled on the next build, taking ``tensorflow/`` with it. So when the lock did not
     install tensorflow-cpu itself, the CPU files stay registered **under the GPU name**: the
     ``tensorflow`` dist-info keeps its METADATA, its RECORD lists the CPU files, and a ``SLUGSLIM`` file
     in it says so. Removed CUDA wheels keep a metadata-only dist-info too, so the sync does not fetch
     them again.

Then ``import tensorflow``, ``importlib.metadata.version("tensorflow")`` and what ``pip check`` checks
run with the app's Python. Removed files wait in a quarantine next to BUILD_DIR until that passes; if it fails they
go back and the build stops with an error that names the way out.
"""

from __future__ import annotations

import base64
import csv
import email.parser
import hashlib
import io
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from slugslim import log, requirements
from slugslim.context import FinishContext
from slugslim.errors import FixupError, SlugslimError
from slugslim.frameworks import cpu_builds, is_cuda_runtime, kept, renamed_builds
from slugslim.plan import Removal
from slugslim.prune import quarantine as prune_quarantine
from slugslim.prune.engine import quarantine_location
from slugslim.sources import REQUIREMENTS, index_options, package_manager

STAND_IN_INSTALLER = "slugslim"
MARKER_FILE = "SLUGSLIM"
EXACT_SYNC_MANAGERS = frozenset({"uv", "poetry"})


@dataclass
class Dist:
    """An installed distribution, read from its dist-info."""

    name: str  # canonical
    version: str
    info: Path  # the .dist-info directory
    requires: list[Requirement]
    files: list[tuple[str, str]]  # (path relative to site-packages, "sha256=..." or "")
    installer: str = ""
    marked: bool = False  # a SLUGSLIM file: the files are already the CPU build's

    @property
    def is_stand_in(self) -> bool:
        return self.installer == STAND_IN_INSTALLER

    def paths(self) -> set[str]:
        return {os.path.normpath(p) for p, _ in self.files}


def read_dists(site_packages: Path) -> dict[str, Dist]:
    dists: dict[str, Dist] = {}
    for info in sorted(site_packages.glob("*.dist-info")):
        if info.is_symlink() or not (info / "METADATA").is_file():
            continue
        message = email.parser.Parser().parsestr((info / "METADATA").read_text(encoding="utf-8", errors="replace"),
                                                 headersonly=True)
        requires: list[Requirement] = []
        for text in message.get_all("Requires-Dist") or []:
            try:
                requires.append(Requirement(text))
            except InvalidRequirement:
                continue
        files: list[tuple[str, str]] = []
        record = info / "RECORD"
        if record.is_file():
            for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8", errors="replace"))):
                if row:
                    files.append((row[0], row[1] if len(row) > 1 else ""))
        installer = (info / "INSTALLER").read_text(encoding="utf-8").strip() if (info / "INSTALLER").is_file() else ""
        name = canonicalize_name(str(message.get("Name", "")))
        dists[name] = Dist(name=name, version=str(message.get("Version", "")), info=info, requires=requires,
                           files=files, installer=installer, marked=(info / MARKER_FILE).is_file())
    return dists


def _hash_ok(site_packages: Path, path: str, expected: str) -> bool:
    algorithm, _, digest = expected.partition("=")
    target = site_packages / path
    if algorithm != "sha256" or not target.is_file():
        return target.is_file()
    actual = base64.urlsafe_b64encode(hashlib.sha256(target.read_bytes()).digest()).rstrip(b"=").decode()
    return actual == digest


@dataclass
class FixupResult:
    enabled: bool = True
    layout: str = ""  # "stand-in" or "merged"
    actions: list[dict[str, Any]] = field(default_factory=list)
    bytes_removed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "layout": self.layout, "actions": self.actions,
                "bytes_removed": self.bytes_removed}

    def add(self, action: str, package: str, detail: str, **extra: Any) -> None:
        self.actions.append({"action": action, "package": package, "detail": detail, **extra})
        log.detail(f"  {detail}")


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

    def commit(self) -> None:
        if self._box is not None:
            self._box.discard()
        self.entries.clear()


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def pip_command(ctx: FinishContext) -> list[str]:
    """The app's pip; heroku/python leaves none with uv, so then our own pip, aimed at the app's Python."""
    if ctx.site_packages is not None and (ctx.site_packages / "pip" / "__init__.py").is_file():
        return [str(ctx.python), "-m", "pip"]
    import sys

    return [sys.executable, "-m", "pip", "--python", str(ctx.python)]


def _pip_env(ctx: FinishContext, command: list[str]) -> dict[str, str]:
    env = ctx.python_env()
    if command[0] != str(ctx.python):
        from slugslim.wheels import pip_environment

        env["PYTHONPATH"] = pip_environment({})["PYTHONPATH"]
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _index_options(ctx: FinishContext) -> list[str]:
    root = ctx.build_dir / REQUIREMENTS
    if not root.is_file():
        return []
    try:
        return index_options(requirements.read_tree(root, ctx.build_dir).files)
    except SlugslimError:
        return []


def _requirers(dists: dict[str, Dist], name: str, exclude: set[str]) -> list[str]:
    return sorted(d.name for d in dists.values() if d.name not in exclude and not d.is_stand_in
                  and any(canonicalize_name(r.name) == name for r in d.requires))


def run(ctx: FinishContext) -> FixupResult:
    result = FixupResult(enabled=ctx.config.swap.enabled)
    if not ctx.config.swap.enabled or ctx.site_packages is None:
        ctx.results["fixup"] = result.to_json()
        return result
    site = ctx.site_packages
    dists = read_dists(site)
    gpu = [d for d in dists.values() if d.name in renamed_builds() and not d.is_stand_in and not d.marked]
    if not gpu:
        ctx.results["fixup"] = result.to_json()
        return result
    log.detail("GPU TensorFlow found after the install; replacing it with the CPU build:")
    manager = str(ctx.state.get("swap", {}).get("manager") or package_manager(ctx.build_dir))
    quarantine = Quarantine(ctx.build_dir, site)
    pip = pip_command(ctx)
    before, _ = _check(ctx, [], [])
    try:
        for dist in gpu:
            _replace(ctx, dist, dists, manager, quarantine, pip, result)
            dists = read_dists(site)
        _verify(ctx, sorted(d.name for d in gpu if d.name in dists), before)
    except BaseException:
        quarantine.restore()
        raise
    quarantine.commit()
    result.bytes_removed = quarantine.bytes
    if quarantine.bytes:
        log.detail(f"  {log.human_bytes(quarantine.bytes)} of GPU-only files removed")
    ctx.results["fixup"] = result.to_json()
    return result


def _replace(ctx: FinishContext, gpu: Dist, dists: dict[str, Dist], manager: str, quarantine: Quarantine,
             pip: list[str], result: FixupResult) -> None:
    site = ctx.site_packages
    assert site is not None
    if kept(gpu.name, ctx.config.swap):
        result.add("kept", gpu.name, f"{gpu.name} {gpu.version} kept as installed (swap.keep)")
        return
    target = renamed_builds()[gpu.name]
    requirers = _requirers(dists, gpu.name, {gpu.name, *cpu_builds()})
    why = f"required by {', '.join(requirers)}" if requirers else f"installed from {manager}"
    cpu = dists.get(target)
    if cpu is not None and cpu.version != gpu.version:
        result.add("skipped", gpu.name, f"{gpu.name} {gpu.version} left in place: {target} {cpu.version} is "
                   "installed too, at another version; pin both to one version", level="warning")
        log.warning(f"Warning: both {gpu.name} {gpu.version} and {target} {cpu.version} are installed. "
                    f"Pin {target} to {gpu.version}, or remove what requires {gpu.name}.")
        return
    cpu_was_installed = cpu is not None
    gpu_hashes = dict((os.path.normpath(p), h) for p, h in gpu.files)
    if cpu is None:
        _pip_install(ctx, pip, [f"{target}=={gpu.version}"])
        result.add("installed", target, f"{gpu.name} {gpu.version} ({why}) → {target} {gpu.version}, "
                   "installed with --no-deps", version=gpu.version, replaced=gpu.name)
    else:
        # Both installed: whichever came last wrote the shared files. Keep the CPU copy if it is intact.
        damaged = [p for p, h in cpu.files if h and gpu_hashes.get(os.path.normpath(p), h) != h
                   and not _hash_ok(site, p, h)]
        if damaged:
            _pip_install(ctx, pip, ["--force-reinstall", f"{target}=={gpu.version}"])
            result.add("reinstalled", target, f"{gpu.name} {gpu.version} ({why}) had overwritten {len(damaged)} "
                       f"files of {target}; reinstalled {target} {gpu.version}", version=gpu.version)
        else:
            result.add("kept-cpu", target, f"{gpu.name} {gpu.version} ({why}) removed; {target} {gpu.version} "
                       "was installed too and is intact", version=gpu.version)
    fresh = read_dists(site)
    cpu = fresh[target]
    others = set().union(*(d.paths() for d in fresh.values() if d.name not in (gpu.name, target)))
    keep_paths = cpu.paths() | others
    info_prefix = os.path.normpath(gpu.info.name)
    for path in sorted(gpu.paths() - keep_paths):
        if path == info_prefix or path.startswith(info_prefix + os.sep):
            continue
        quarantine.take(site / path)
    _prune_empty_dirs(site, {Path(p).parts[0] for p in gpu.paths() if not p.startswith("..")})

    merged = manager in EXACT_SYNC_MANAGERS and not cpu_was_installed
    result.layout = "merged" if merged else "stand-in"
    if merged:
        _merge_into_gpu_name(site, gpu, cpu, quarantine)
    else:
        _stand_in(gpu, target, quarantine)
    _remove_cuda(ctx, gpu, fresh, quarantine, result, stub=merged)


def _pip_install(ctx: FinishContext, pip: list[str], args: list[str]) -> None:
    command = [*pip, "install", "--no-deps", "--no-cache-dir", "--no-input", "--quiet", *_index_options(ctx), *args]
    done = subprocess.run(command, env=_pip_env(ctx, pip), cwd=ctx.build_dir, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise FixupError(f"'pip install --no-deps {' '.join(args)}' failed.", done.stderr + done.stdout)


def _stand_in(gpu: Dist, target: str, quarantine: Quarantine) -> None:
    """Replace the GPU dist-info with a metadata-only one that the CPU build satisfies."""
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
        "the same 'tensorflow' package. This distribution keeps what required it satisfied.\n"
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


def _merge_into_gpu_name(site: Path, gpu: Dist, cpu: Dist, quarantine: Quarantine) -> None:
    """The CPU build's files, registered under the GPU name (for locks synced exactly)."""
    cpu_info = os.path.normpath(cpu.info.name)
    rows = [f"{p},{h}," for p, h in cpu.files
            if not (os.path.normpath(p) == cpu_info or os.path.normpath(p).startswith(cpu_info + os.sep))]
    marker = f"The files of this distribution are {cpu.name} {cpu.version}'s (the CPU build), put here by slugslim.\n"
    (gpu.info / MARKER_FILE).write_text(marker, encoding="utf-8")
    own = [f"{gpu.info.name}/{f.name},," for f in sorted(gpu.info.iterdir()) if f.is_file() and f.name != "RECORD"]
    (gpu.info / "RECORD").write_text("\n".join([*rows, *own, f"{gpu.info.name}/RECORD,,"]) + "\n", encoding="utf-8")
    quarantine.take(cpu.info)


def _remove_cuda(ctx: FinishContext, gpu: Dist, dists: dict[str, Dist], quarantine: Quarantine,
                 result: FixupResult, stub: bool) -> None:
    """CUDA wheels the GPU build required (by any extra) and nothing else installed needs."""
    site = ctx.site_packages
    assert site is not None
    wanted = {canonicalize_name(r.name) for r in gpu.requires}
    candidates = {n for n in wanted if n in dists and is_cuda_runtime(n) and not kept(n, ctx.config.swap)}
    # A CUDA wheel that CUDA wheels require goes too, when only the GPU build's CUDA wheels need it.
    changed = True
    while changed:
        changed = False
        for dist in dists.values():
            if dist.name in candidates:
                for requirement in dist.requires:
                    name = canonicalize_name(requirement.name)
                    if name in dists and name not in candidates and is_cuda_runtime(name) \
                            and not kept(name, ctx.config.swap):
                        candidates.add(name)
                        changed = True
    removable = set(candidates)
    changed = True
    while changed:
        changed = False
        for name in sorted(removable):
            users = _requirers(dists, name, {gpu.name, *removable})
            if users:
                removable.discard(name)
                changed = True
    for name in sorted(removable):
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
        _prune_empty_dirs(site, {Path(p).parts[0] for p in dist.paths() if not p.startswith("..")})
        result.add("removed", name, f"{name} {dist.version} removed ({log.human_bytes(size)}): a CUDA library only "
                   f"{gpu.name} used", bytes=size)
    for name in sorted(candidates - removable):
        result.add("kept", name, f"{name} kept: {', '.join(_requirers(dists, name, {gpu.name}))} needs it")


def _write_info_stub(dist: Dist) -> None:
    (dist.info / MARKER_FILE).write_text("slugslim removed this CUDA library's files (dynos have no GPU) and kept "
                                         "its metadata so the lock stays satisfied.\n", encoding="utf-8")
    own = [f"{dist.info.name}/{f.name},," for f in sorted(dist.info.iterdir()) if f.is_file() and f.name != "RECORD"]
    (dist.info / "RECORD").write_text("\n".join([*own, f"{dist.info.name}/RECORD,,"]) + "\n", encoding="utf-8")


def _prune_empty_dirs(site: Path, tops: set[str]) -> None:
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


# Run by the app's Python: what `pip check` checks (every installed distribution's requirements, markers
# evaluated, are installed at a matching version), and `import tensorflow` plus the metadata of the
# names we replaced. `packaging` comes from slugslim's own tools (pure Python), since uv-managed apps
# have no pip to borrow it from. It takes a tenth of a second where two `pip check` runs take seconds.
CHECK_SCRIPT = r"""
import importlib, importlib.metadata as md, json, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
problems = []
installed = {}
for dist in md.distributions():
    name = dist.metadata["Name"]
    if name:
        installed.setdefault(canonicalize_name(name), dist)
for key, dist in sorted(installed.items()):
    for text in dist.requires or []:
        try:
            req = Requirement(text)
        except Exception:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        other = installed.get(canonicalize_name(req.name))
        if other is None:
            problems.append(f"{key} {dist.version} requires {req.name}, which is not installed.")
        elif req.specifier and not req.specifier.contains(other.version, prereleases=True):
            problems.append(f"{key} {dist.version} has requirement {req}, but you have {req.name} {other.version}.")
errors = []
for module in sys.argv[1].split(",") if sys.argv[1] else []:
    try:
        importlib.import_module(module)
    except Exception as exc:
        errors.append(f"import {module}: {type(exc).__name__}: {exc}")
for name in sys.argv[2].split(",") if sys.argv[2] else []:
    try:
        md.version(name)
    except Exception as exc:
        errors.append(f"importlib.metadata.version({name!r}): {type(exc).__name__}: {exc}")
print(json.dumps({"problems": problems, "errors": errors}))
"""


def _check(ctx: FinishContext, imports: list[str], names: list[str]) -> tuple[set[str], list[str]]:
    """(dependency problems as pip check words them, import/metadata errors), from the app's Python."""
    import json

    import packaging

    env = ctx.python_env()
    env["PYTHONPATH"] = os.pathsep.join([str(Path(packaging.__file__).parent.parent), str(ctx.build_dir)])
    done = subprocess.run([str(ctx.python), "-c", CHECK_SCRIPT, ",".join(imports), ",".join(names)], env=env,
                          cwd=ctx.build_dir, capture_output=True, text=True, check=False, timeout=600)
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise FixupError("slugslim could not check the installed packages with the app's Python.",
                         done.stderr) from exc
    return set(answer["problems"]), list(answer["errors"])


def _verify(ctx: FinishContext, names: list[str], before: set[str]) -> None:
    """import tensorflow, the metadata of every name we replaced, and no new dependency problem."""
    problems, errors = _check(ctx, ["tensorflow"], names)
    if errors:
        raise FixupError("After the swap, the app's Python cannot use TensorFlow.", "\n".join(errors))
    new = sorted(problems - before)
    if new:
        raise FixupError("After the swap, an installed package's requirement is no longer met (as 'pip check' "
                         "would report).", "\n".join(new))
