"""The CPU swap for a uv, Poetry or Pipenv app, the same for each: edit the manifest, re-lock, check.

heroku/python installs such an app with ``uv sync --locked``, ``poetry sync`` or ``pipenv install
--deploy``: exactly what the lock says, so a GPU build in the lock is downloaded and installed
before the fix-up (``slugslim.finish.fixup``) can replace it. PyPI's ``torch==2.13.0`` alone brings
15 ``nvidia-*`` wheels, ``triton`` and ``cuda-toolkit``, about 2.7 GB. So before the install:

1. Read the lock (the manager's adapter, ``locks.uv``, ...) and find the GPU builds in it through
   the framework catalogue (``core.frameworks``): PyTorch packages locked without a local label
   (PyPI's CUDA builds), and renamed GPU builds such as ``tensorflow``.
2. Edit the manifest: the torch packages come from an explicit index at ``swap.torch_index``
   (named ``pytorch-cpu``) at their locked public version, as direct dependencies; ``tensorflow``
   gives way to ``tensorflow-cpu`` at the same version.
3. Re-lock with the manager at heroku/python's version (``deps.lockers``), seeing the index
   settings heroku/python's installer will see and no other config var.
4. Compare the locks: every package except the swapped ones and the CUDA runtime wheels that only
   their GPU builds required (``frameworks.is_cuda_runtime``: ``nvidia-*``, ``triton``, ``cuda-*``,
   gone from the new lock) must keep its version, hashes and index.

Anything else (the locker cannot be installed or run, an index does not answer, the re-lock
fails or would move another package, an unexpected error) puts both files back byte for byte and
warns, naming the step; the build goes on, and the fix-up replaces the GPU builds after the install.

A re-lock that passed is kept in the build cache, keyed by both files as pushed, the change, the
locker's version and the config vars: the next build of the same files (a cached rebuild, another
push that changes only code) writes the same pair again without running the locker or asking an
index.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slugslim.core import failopen, log, words
from slugslim.core.config import SwapConfig
from slugslim.core.errors import RelockFailed
from slugslim.core.frameworks import framework_of, is_cuda_runtime, is_gpu_build, kept
from slugslim.deps import lockers, locksnippets
from slugslim.deps.pyversion import AppPython
from slugslim.prepare.swap._write import write_bytes
from slugslim.prepare.swap.locks import pipenv, poetry, uv
from slugslim.prepare.swap.locks.model import Adapter, Locked, ManifestChange, Relock, Renamed, TorchPin
from slugslim.prepare.swap.plan import Swap
from slugslim.prepare.swap.pytorch import is_torch_family

ADAPTERS: dict[str, Adapter] = {"uv": uv.ADAPTER, "poetry": poetry.ADAPTER, "pipenv": pipenv.ADAPTER}


@dataclass
class LockPlan:
    """What the swap would do to one app's lock, read from the files; nothing run, nothing written."""

    adapter: Adapter
    manifest: bytes
    lock: bytes
    before: dict[str, Locked]
    change: ManifestChange | None
    notes: list[str] = field(default_factory=list)  # GPU builds left alone, and why

    @property
    def swaps(self) -> list[Swap]:
        if self.change is None:
            return []
        lock = self.adapter.lock
        return ([Swap(file=lock, line=0, action="swap", old=f"{p.name}=={p.version}", new=f"{p.name}=={p.version}+cpu",
                      source=p.name, target=p.name, version=f"{p.version}+cpu",
                      reason=f"from {log.redact(self.change.index_url)}") for p in self.change.torch]
                + [Swap(file=lock, line=0, action="swap", old=f"{r.gpu}=={r.version}", new=f"{r.cpu}=={r.version}",
                        source=r.gpu, target=r.cpu, version=r.version) for r in self.change.renamed])


@dataclass
class LockSwap:
    """What the swap did, for ``rewrite.SwapResult``."""

    swaps: list[Swap] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    relocked: bool = False
    notes: list[str] = field(default_factory=list)


def plan(app_dir: Path, manager: str, config: SwapConfig) -> LockPlan | None:
    """The lock's GPU builds and the manifest change that swaps them; None when slugslim has no
    adapter for the manager or the app lacks one of its two files. Raises ValueError for a file
    that cannot be read (the message names it)."""
    adapter = ADAPTERS.get(manager)
    if adapter is None or not (app_dir / adapter.manifest).is_file() or not (app_dir / adapter.lock).is_file():
        return None
    manifest, lock = (app_dir / adapter.manifest).read_bytes(), (app_dir / adapter.lock).read_bytes()
    try:
        before = adapter.read_lock(lock.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{adapter.lock} could not be read: {exc}") from exc
    try:
        direct = adapter.direct(manifest.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{adapter.manifest} could not be read: {exc}") from exc
    result = LockPlan(adapter, manifest, lock, before, None)
    torch: list[TorchPin] = []
    renamed: list[Renamed] = []
    for name, locked in sorted(before.items()):
        framework = framework_of(name)
        if framework is None or kept(name, config):
            continue
        if ", " in locked.version:
            result.notes.append(f"{name} is locked at several versions ({locked.version}); left as locked")
            continue
        if not is_gpu_build(name, locked.version, locked.requires):
            continue
        if is_torch_family(name):
            torch.append(TorchPin(name, locked.version, name in direct))
        elif adapter.overrides or (name in direct and not _required_by(name, before)):
            renamed.append(Renamed(name, framework.builds[name], locked.version, name in direct))
        else:
            through = ", ".join(_required_by(name, before)) or "another package"
            result.notes.append(f"{name} {locked.version} is required by {through}, and {adapter.manifest} cannot "
                                f"replace a package that another one requires; it is replaced by "
                                f"{framework.builds[name]} after the install")
    if torch or renamed:
        result.change = ManifestChange(index_name=locksnippets.INDEX_NAME, index_url=config.torch_index.rstrip("/"),
                                       torch=tuple(torch), renamed=tuple(renamed))
    return result


def _required_by(name: str, locked: Mapping[str, Locked]) -> list[str]:
    return sorted(other for other, entry in locked.items() if other != name and name in entry.requires)


def swap(build_dir: Path, manager: str, config: SwapConfig, env: Mapping[str, str], cache_dir: Path,
         python: AppPython) -> LockSwap:
    """Swap the lock's GPU builds at the source; on any failure both files stay as written (warned)."""
    done = LockSwap()
    step = "reading the lock"
    adapter = ADAPTERS.get(manager)
    lock_name = adapter.lock if adapter else manager
    try:
        planned = plan(build_dir, manager, config)
    except ValueError as exc:
        log.warning(words.lock_not_swapped(lock_name, adapter.manifest if adapter else "", f"{exc}."))
        done.notes.append(str(exc))
        return done
    if planned is None:
        return done
    for note in planned.notes:
        log.detail(f"CPU swap: {note}")
    done.notes.extend(planned.notes)
    if planned.change is None:
        log.detail(f"CPU swap: no GPU build in {planned.adapter.lock}")
        return done
    adapter, change = planned.adapter, planned.change
    manifest_path, lock_path = build_dir / adapter.manifest, build_dir / adapter.lock
    entries = set(os.listdir(build_dir))
    backup = failopen.Backup(build_dir, [Path(adapter.manifest), Path(adapter.lock)])
    memo = _memo_dir(cache_dir, manager, planned, env)
    try:
        reused = _reuse(memo, adapter, build_dir, manifest_path, lock_path)
    except OSError:  # put back what was written; the re-lock below runs as if nothing were kept
        _put_back(backup, build_dir, entries)
        shutil.rmtree(memo, ignore_errors=True)
        reused = None
    if reused is not None:
        done.swaps, done.files_changed, done.relocked = planned.swaps, [adapter.manifest, adapter.lock], True
        _log(adapter, manager, lockers.pinned_version(manager), change, planned.before, reused, reused_from_cache=True)
        return done
    try:
        step = f"installing {manager} {lockers.pinned_version(manager)}"
        locker = lockers.ensure(manager, cache_dir, env)
        step = f"editing {adapter.manifest}"
        edited = adapter.edit(planned.manifest.decode("utf-8"), change).encode("utf-8")
        write_bytes(manifest_path, edited, build_dir)
        step = f"re-locking with {manager} {locker.version}"
        adapter.relock(Relock(app_dir=build_dir, locker=locker, cache_dir=cache_dir / "slugslim" / f"{manager}-cache",
                              config_vars=env, python=python))
        step = f"checking the new {adapter.lock}"
        after = adapter.read_lock(lock_path.read_text(encoding="utf-8"))
        moved = changes_beyond(planned.before, after, change)
        if moved:
            raise RelockFailed(step, "the re-lock would also have moved " + "; ".join(moved))
    except Exception as exc:  # any failure leaves the files as the user wrote them
        _put_back(backup, build_dir, entries)
        why = exc.why if isinstance(exc, RelockFailed) else f"{type(exc).__name__}: {exc}"
        where = exc.step if isinstance(exc, RelockFailed) else step
        log.warning(words.lock_not_swapped(adapter.lock, adapter.manifest, f"{where}: {why}."))
        done.notes.append(f"{adapter.lock} not re-locked ({where}: {why})")
        return done
    _remove_new_entries(build_dir, entries)
    _remember(memo, manifest_path, lock_path)
    done.swaps = planned.swaps
    done.files_changed = [adapter.manifest, adapter.lock]
    done.relocked = True
    _log(adapter, locker.manager, locker.version, change, planned.before, after)
    return done


def _memo_dir(cache_dir: Path, manager: str, planned: LockPlan, env: Mapping[str, str]) -> Path:
    """Where a passed re-lock of exactly these inputs is kept in the build cache."""
    key = hashlib.sha256()
    for part in (manager, lockers.pinned_version(manager), repr(planned.change), json.dumps(dict(env), sort_keys=True)):
        key.update(part.encode("utf-8") + b"\0")
    key.update(planned.manifest + b"\0" + planned.lock)
    return cache_dir / "slugslim" / "lock-swaps" / f"{manager}-{key.hexdigest()[:32]}"


def _reuse(memo: Path, adapter: Adapter, build_dir: Path, manifest_path: Path,
           lock_path: Path) -> dict[str, Locked] | None:
    """Write the remembered pair and return the new lock's packages; None when there is none or it cannot be
    read (the files are then untouched and the re-lock runs)."""
    if not (memo / "done").is_file():
        return None
    try:
        manifest, lock = (memo / "manifest").read_bytes(), (memo / "lock").read_bytes()
        after = adapter.read_lock(lock.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        shutil.rmtree(memo, ignore_errors=True)
        return None
    write_bytes(manifest_path, manifest, build_dir)
    write_bytes(lock_path, lock, build_dir)
    return after


def _remember(memo: Path, manifest_path: Path, lock_path: Path) -> None:
    """Keep the pair for the next build; only the latest one per manager (the cache is not an archive)."""
    try:
        for old in memo.parent.glob(f"{memo.name.split('-', 1)[0]}-*"):
            if old != memo:
                shutil.rmtree(old, ignore_errors=True)
        memo.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest_path, memo / "manifest")
        shutil.copyfile(lock_path, memo / "lock")
        (memo / "done").touch()
    except OSError:  # the cache is an optimisation: the swap itself is done
        shutil.rmtree(memo, ignore_errors=True)


def changes_beyond(before: Mapping[str, Locked], after: Mapping[str, Locked], change: ManifestChange) -> list[str]:
    """What moved in the lock besides the swap: each package, old -> new. Empty when only the swapped
    packages changed (each to its CPU build) and CUDA runtime wheels left."""
    moved: list[str] = []
    for name in sorted(set(before) | set(after)):
        if name in change.swapped:
            continue
        old, new = before.get(name), after.get(name)
        if old is None and new is not None:
            moved.append(f"{name} {new.version} (added)")
        elif new is None and old is not None:
            if not is_cuda_runtime(name):
                moved.append(f"{name} {old.version} (removed)")
        elif old is not None and new is not None and not old.same(new):
            moved.append(f"{name} {old.version} -> {new.version}" if old.version != new.version
                         else f"{name} {old.version} (other files or index)")
    for pin in change.torch:
        got = after.get(pin.name)
        want = f"{pin.version}+cpu"
        if got is None or want not in got.version.split(", "):
            moved.append(f"{pin.name} -> {got.version if got else 'nothing'} (instead of {want})")
    for renamed in change.renamed:
        if renamed.gpu in after:
            moved.append(f"{renamed.gpu} {after[renamed.gpu].version} (still locked)")
        got = after.get(renamed.cpu)
        if got is None or got.version != renamed.version:
            moved.append(f"{renamed.cpu} -> {got.version if got else 'nothing'} (instead of {renamed.version})")
    return moved


def _put_back(backup: failopen.Backup, build_dir: Path, entries: set[str]) -> None:
    """Both files as the user wrote them, and nothing the re-lock left beside them."""
    backup.restore()
    _remove_new_entries(build_dir, entries)


def _remove_new_entries(build_dir: Path, entries: set[str]) -> None:
    """What the locker made in the app dir (a virtualenv, a cache), never anything that was there."""
    for name in set(os.listdir(build_dir)) - entries:
        failopen.remove(build_dir / name)


def _log(adapter: Adapter, manager: str, version: str, change: ManifestChange, before: Mapping[str, Locked],
         after: Mapping[str, Locked], reused_from_cache: bool = False) -> None:
    again = ", as in the last build" if reused_from_cache else ""
    log.detail(f"CPU swap ({adapter.lock}, re-locked with {manager} {version}{again}):")
    for pin in change.torch:
        log.detail(f"  {pin.name} {pin.version} -> {pin.version}+cpu, from {log.redact(change.index_url)}")
    for renamed in change.renamed:
        log.detail(f"  {renamed.gpu} {renamed.version} -> {renamed.cpu} {renamed.version}")
    gone = sorted(n for n in set(before) - set(after) if is_cuda_runtime(n))
    if gone:
        log.detail(f"  {len(gone)} CUDA packages are no longer locked: {', '.join(gone)}")
    for line in locksnippets.advice(adapter.manager, change.index_url, {p.name: p.version for p in change.torch},
                                    {r.gpu: (r.cpu, r.version) for r in change.renamed}, relocked=True):
        log.detail(line)
