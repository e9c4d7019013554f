"""The TensorFlow CPU swap: ask pip for the CPU build before heroku/python installs anything.

Heroku dynos have no GPU, yet ``tensorflow`` 2.21.0 is a 572 MB wheel against 274 MB for
``tensorflow-cpu``, and the two declare the same dependencies and ship the same ``tensorflow/``
package. So in requirements.txt (and every file it includes with -r/-c) we rewrite:

- ``tensorflow`` → ``tensorflow-cpu``; ``tensorflow[and-cuda]`` → ``tensorflow-cpu`` (the CUDA extra goes);
  ``tensorflow-gpu`` → ``tensorflow-cpu``; ``tf-nightly`` → ``tf-nightly-cpu``. Specifiers and markers stay.
- Pinned CUDA runtime wheels (``nvidia-*-cu11/12/13``, ``tensorrt*``, as ``pip freeze`` writes them) go,
  unless something else in the file (torch, jax, cupy, …) may load them.

Only lines whose markers hold on a Heroku dyno (Linux, x86_64, the app's Python) change: a
``tensorflow ; sys_platform == "darwin"`` line is for a laptop and stays. A GPU line that holds on Linux
next to a CPU line that also does is not swapped into a second CPU line; it gets
``and sys_platform != "linux"`` instead, so it keeps working elsewhere.

In hash-checking mode the swapped line gets the sha256 of the file pip will install (``slugslim.wheels``),
or, when the app uses pip-tools, the file is re-locked (``slugslim.relock``). Lock files of other tools
(uv.lock, poetry.lock, Pipfile.lock) cannot be re-locked at build time; the finish phase fixes those
installs up instead (``slugslim.fixup``).

A file that needs no change keeps its bytes; a changed one gets one comment line at the top. The
output depends only on the input (and, in hash mode, on the index), so heroku/python's cache, keyed
on requirements.txt, stays valid from build to build.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from slugslim import log, pyversion, requirements
from slugslim.config import Config, SwapConfig
from slugslim.errors import SwapHashError
from slugslim.wheels import Lookup, LookupFailed, NoLookup, PipLookup, WheelInfo

if TYPE_CHECKING:
    from slugslim.context import FinishContext
    from slugslim.fixup import FixupResult

# GPU distribution -> the CPU build that installs the same `tensorflow` package.
SWAPS: dict[str, str] = {
    "tensorflow": "tensorflow-cpu",
    "tensorflow-gpu": "tensorflow-cpu",
    "tf-nightly": "tf-nightly-cpu",
    "tf-nightly-gpu": "tf-nightly-cpu",
}
CPU_BUILDS = frozenset(SWAPS.values())
CUDA_EXTRAS = frozenset({"and-cuda"})
CUDA_WHEEL = re.compile(r"^(nvidia-.+-cu1[123]|tensorrt.*)$")
# Other projects that load CUDA wheels: with one of these in the file the CUDA pins stay.
OTHER_CUDA_USERS = re.compile(r"^(torch|torchvision|torchaudio|jax|jaxlib|jax-cuda.*|cupy.*|onnxruntime-gpu|"
                              r"paddlepaddle-gpu|mxnet-cu.*|xgboost|cudf.*|cuml.*|nvidia-dali.*)$")
REQUIREMENTS = "requirements.txt"
PIP_TOOLS_INPUT = "requirements.in"
OTHER_MANAGERS = ("uv.lock", "poetry.lock", "Pipfile.lock")


def is_cuda_wheel(name: str) -> bool:
    return CUDA_WHEEL.match(canonicalize_name(name)) is not None


def kept(name: str, config: SwapConfig) -> bool:
    """``swap.keep`` names a project (or a glob such as ``nvidia-*``) that slugslim must leave alone."""
    canonical = canonicalize_name(name)
    return any(fnmatch.fnmatchcase(canonical, canonicalize_name(p) if "*" not in p else p.lower()) for p in config.keep)


# --------------------------------------------------------------------------------------------------
# The dyno's marker environment (the app's Python comes from ``slugslim.pyversion``)
# --------------------------------------------------------------------------------------------------

def dyno_environment(python_version: str) -> dict[str, str]:
    """PEP 508 marker values on a Heroku dyno running the app's Python."""
    env = {key: str(value) for key, value in default_environment().items()}
    env.update(
        sys_platform="linux", platform_system="Linux", os_name="posix", platform_machine="x86_64",
        implementation_name="cpython", platform_python_implementation="CPython",
        python_version=python_version, python_full_version=f"{python_version}.0",
    )
    return env


def applies_on_dyno(requirement: Requirement, environment: Mapping[str, str]) -> bool:
    if requirement.marker is None:
        return True
    try:
        return requirement.marker.evaluate(dict(environment))
    except (UndefinedEnvironmentName, UndefinedComparison):
        # A marker we cannot decide: assume it holds, as pip on the dyno might.
        return True


# --------------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------------

@dataclass
class Swap:
    """One change to one requirement line (or one warning about a line we must not change)."""

    file: str  # relative to the app dir
    line: int
    action: str  # "swap", "remove", "exclude-linux" or "warn"
    old: str  # the requirement as written (without options)
    new: str = ""
    source: str = ""  # canonical name before
    target: str = ""  # canonical name after
    version: str | None = None  # the version pip installs, when known
    old_wheel: WheelInfo | None = None
    new_wheel: WheelInfo | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.action == "swap":
            return f"{_short(self.old)} → {_short(self.new)} ({self._sizes()})"
        if self.action == "remove":
            return f"{_short(self.old)} removed ({self.reason})"
        if self.action == "exclude-linux":
            return f"{_short(self.old)} kept off Linux ({self.reason})"
        return f"{_short(self.old)} left as written ({self.reason})"

    def _sizes(self) -> str:
        old = self.old_wheel.size if self.old_wheel else None
        new = self.new_wheel.size if self.new_wheel else None
        version = ""
        if self.version and f"=={self.version}" not in self.old.replace(" ", ""):
            version = f"{self.version}: "
        if old is None and new is None:
            return f"{version}wheel sizes unknown"
        return (f"{version}{log.human_bytes(old) if old is not None else 'unknown'} → "
                f"{log.human_bytes(new) if new is not None else 'unknown'} wheel")

    @property
    def saved_bytes(self) -> int | None:
        if self.old_wheel and self.new_wheel and self.old_wheel.size is not None and self.new_wheel.size is not None:
            return self.old_wheel.size - self.new_wheel.size
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "line": self.line, "action": self.action, "old": self.old, "new": self.new,
            "source": self.source, "target": self.target, "version": self.version, "reason": self.reason,
            "old_wheel": self.old_wheel.to_json() if self.old_wheel else None,
            "new_wheel": self.new_wheel.to_json() if self.new_wheel else None,
            "saved_bytes": self.saved_bytes,
        }


def _short(requirement_text: str) -> str:
    return " ".join(requirement_text.split())


@dataclass
class FilePlan:
    parsed: requirements.RequirementsFile
    edits: dict[int, list[str] | None] = field(default_factory=dict)
    swaps: list[Swap] = field(default_factory=list)
    replacement: bytes | None = None  # the whole new file, when it was re-locked rather than edited

    @property
    def changed(self) -> bool:
        return bool(self.edits) or self.replacement is not None

    def header(self) -> str:
        changes = [f"line {s.line} {_header_change(s)}" for s in self.swaps if s.action != "warn"]
        return ("# slugslim (Heroku buildpack) changed this file at build time, dynos have no GPU: "
                + "; ".join(changes) + ". Set 'swap: false' in slugslim.yml to turn this off.")

    def render(self) -> bytes:
        if self.replacement is not None:
            return self.replacement
        if not self.edits:
            return self.parsed.raw
        return self.parsed.render(self.edits, header=self.header())


def _header_change(swap: Swap) -> str:
    if swap.action == "swap":
        return f"{swap.source} -> {swap.target}"
    if swap.action == "remove":
        return f"removed {swap.source}"
    return f"{swap.source} not on Linux"


@dataclass
class SwapPlan:
    app_dir: Path
    python_version: str
    python_origin: str
    files: list[FilePlan] = field(default_factory=list)
    hash_mode: bool = False
    skipped: list[str] = field(default_factory=list)  # warnings about files we could not read

    @property
    def swaps(self) -> list[Swap]:
        return [s for f in self.files for s in f.swaps]


def _relative(path: Path, app_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(app_dir.resolve()))
    except ValueError:
        return str(path)


def _requirement_text(entry: requirements.Entry) -> str:
    return entry.args


def _pinned_version(requirement: Requirement) -> str | None:
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def build_plan(app_dir: Path, config: SwapConfig, root: Path | None = None, python_version: str | None = None,
               lookup: Lookup | None = None, strip_hashes: bool = False) -> SwapPlan:
    """Decide every change to requirements.txt and its nested files. Writes nothing.

    ``lookup`` answers which wheel pip would pick (for versions, sizes and hashes); without one,
    versions come from ``==`` pins and sizes are unknown. In hash mode the lookup is required.
    """
    if python_version is None:
        decided = pyversion.app_python(app_dir)
        python_version, origin = decided.minor, decided.where
    else:
        origin = "given"
    root = root if root is not None else app_dir / REQUIREMENTS
    plan = SwapPlan(app_dir=app_dir, python_version=python_version, python_origin=origin)
    if not root.is_file():
        return plan
    tree = requirements.read_tree(root, app_dir)
    plan.hash_mode = tree.hash_mode
    for including, line, target, why in tree.skipped:
        plan.skipped.append(f"{_relative(including, app_dir)} line {line} includes '{target}', which slugslim "
                            f"did not read: {why}.")
    environment = dyno_environment(python_version)
    lookup = lookup or NoLookup()

    named = [(parsed, index, entry) for parsed, index, entry in tree.entries() if entry.requirement is not None]
    on_dyno = [(p, i, e) for p, i, e in named if e.requirement is not None and applies_on_dyno(e.requirement,
                                                                                               environment)]
    # CPU builds the app already installs on a dyno (from requirement files, not constraints).
    cpu_on_dyno = {e.name for p, _, e in on_dyno if e.name in CPU_BUILDS and not p.constraint}
    names_on_dyno = {e.name for _, _, e in on_dyno}
    other_cuda_users = sorted(n for n in names_on_dyno if n and OTHER_CUDA_USERS.match(n))
    is_tf_app = any(n in SWAPS or n in CPU_BUILDS for n in names_on_dyno)

    plans: dict[Path, FilePlan] = {p.path: FilePlan(parsed=p) for p in tree.files}
    for parsed, index, entry in tree.entries():
        file_plan = plans[parsed.path]
        where = _relative(parsed.path, app_dir)
        if entry.requirement is None:
            target_name = entry.target_name() if entry.kind in ("url", "path", "editable") else None
            if target_name in SWAPS and not kept(target_name, config):
                file_plan.swaps.append(Swap(
                    file=where, line=entry.lineno, action="warn", old=entry.text, source=target_name,
                    reason="it installs the GPU build from a URL, path or -e; point it at the "
                           f"{SWAPS[target_name]} file instead to save the download"))
            continue
        requirement = entry.requirement
        name = entry.name or ""
        if not applies_on_dyno(requirement, environment):
            continue
        if name in SWAPS and not kept(name, config):
            target = SWAPS[name]
            if target in cpu_on_dyno and not parsed.constraint:
                new_text = requirements.with_marker(requirement, 'sys_platform != "linux"')
                swap = Swap(file=where, line=entry.lineno, action="exclude-linux", old=_requirement_text(entry),
                            new=new_text, source=name, target=name,
                            reason=f"{target} is already asked for on Linux, so a second TensorFlow must not be")
                file_plan.edits[index] = _replace_args(parsed, entry, new_text)
                file_plan.swaps.append(swap)
                continue
            requirers = [v for v in requirements.via(parsed, index) if not v.startswith("-")]
            if requirers:
                # Swapping a line that something else pins for itself still lets the GPU build in (with a
                # second download); the finish phase replaces it after the install instead.
                file_plan.swaps.append(Swap(
                    file=where, line=entry.lineno, action="warn", old=_without_marker(requirement), source=name,
                    reason=f"{', '.join(requirers)} requires {requirement.name} itself, so the swap happens "
                           "after the install"))
                continue
            lines = requirements.edit_name(parsed, entry, target, drop_extras=sorted(CUDA_EXTRAS))
            new_requirement = Requirement(str(requirement))
            new_requirement.name = target
            new_requirement.extras = {e for e in requirement.extras if canonicalize_name(e) not in CUDA_EXTRAS}
            new_requirement.marker = None
            swap = Swap(file=where, line=entry.lineno, action="swap", old=_without_marker(requirement),
                        new=str(new_requirement), source=name, target=target, version=_pinned_version(requirement))
            if strip_hashes:
                file_plan.edits[index] = requirements.with_hashes(lines, [])
                file_plan.swaps.append(swap)
                continue
            # A constraint line needs hashes only if it had some: pip checks hashes of what it installs.
            needs_hash = plan.hash_mode and (bool(entry.hashes) or not parsed.constraint)
            if needs_hash or not parsed.constraint:  # a constraint installs nothing: no sizes to show
                _look_up(swap, requirement, lookup, needs_hash)
            if needs_hash:
                if swap.new_wheel is None or not swap.new_wheel.sha256:
                    raise SwapHashError(where, entry.lineno, entry.args, target,
                                        swap.reason or "the index did not give the file's sha256.")
                lines = requirements.with_hashes(lines, [f"sha256:{swap.new_wheel.sha256}"])
            file_plan.edits[index] = lines
            file_plan.swaps.append(swap)
        elif is_cuda_wheel(name) and is_tf_app and not kept(name, config) and _pinned_version(requirement):
            if other_cuda_users:
                file_plan.swaps.append(Swap(
                    file=where, line=entry.lineno, action="warn", old=_without_marker(requirement), source=name,
                    reason=f"{', '.join(other_cuda_users)} may load it; add it to swap.keep to hide this note"))
                continue
            file_plan.edits[index] = None
            file_plan.swaps.append(Swap(file=where, line=entry.lineno, action="remove",
                                        old=_without_marker(requirement), source=name,
                                        reason="a CUDA library only a GPU can use"))
    plan.files = list(plans.values())
    return plan


def _without_marker(requirement: Requirement) -> str:
    bare = Requirement(str(requirement))
    bare.marker = None
    return str(bare)


def _look_up(swap: Swap, requirement: Requirement, lookup: Lookup, hash_mode: bool) -> None:
    """Fill in the version and wheels pip would pick, for the log line and for hash mode."""
    target = Requirement(str(requirement))
    target.name = swap.target
    target.extras = set()
    target.marker = None
    if hash_mode and swap.version is None:
        swap.reason = (f"'{_without_marker(requirement)}' is not pinned to one version with ==, "
                       "which hash-checking mode requires.")
        return
    if swap.version is not None:
        # Pinned: both files in one pip run, for the log line's sizes.
        try:
            found = lookup.find_all([str(target), f"{swap.source}=={swap.version}"])
            swap.new_wheel, swap.old_wheel = found.get(swap.target), found.get(swap.source)
        except LookupFailed:
            pass
        if swap.new_wheel is not None:
            return
    try:
        swap.new_wheel = lookup.find(str(target))
        swap.version = swap.version or swap.new_wheel.version
    except LookupFailed as exc:
        swap.reason = f"slugslim could not find the {swap.target} file: {exc}"
        return
    try:
        swap.old_wheel = lookup.find(f"{swap.source}=={swap.new_wheel.version}")
    except LookupFailed:
        swap.old_wheel = None


def _replace_args(parsed: requirements.RequirementsFile, entry: requirements.Entry, new_args: str) -> list[str]:
    lines = [parsed.content(i) for i in range(entry.first, entry.last + 1)]
    for position, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(entry.args):
            lines[position] = line[: len(line) - len(stripped)] + new_args + stripped[len(entry.args):]
            return lines
        if stripped.strip(" \t\\"):
            break
    options = " ".join(f"--{o.name}" if o.value is None else f"--{o.name}={o.value}" for o in entry.options)
    return [f"{new_args}{' ' + options if options else ''}"]


def index_options(tree_files: Iterable[requirements.RequirementsFile]) -> list[str]:
    """The options lines that change where pip looks, as command-line options, in file order.

    A relative --find-links is taken relative to the requirements file when that path exists,
    as pip does.
    """
    options: list[str] = []
    for parsed in tree_files:
        for entry in parsed.entries:
            if entry.args:
                continue
            for option in entry.options:
                if option.name in ("index-url", "extra-index-url", "trusted-host") and option.value:
                    options += [f"--{option.name}", option.value]
                elif option.name == "find-links" and option.value:
                    local = parsed.path.parent / option.value
                    options += ["--find-links", str(local) if local.exists() else option.value]
                elif option.name in ("no-index", "pre"):
                    options.append(f"--{option.name}")
    return options


def plan_swaps(app_dir: Path, config: SwapConfig, *, lookup: Lookup | None = None) -> list[Swap]:
    """Dry run for ``analyze``: what the swap would change in the app's requirements. Writes nothing.

    Without a lookup no index is asked, so sizes are unknown and hash mode is only reported.
    """
    if not config.enabled:
        return []
    try:
        return build_plan(app_dir, config, lookup=lookup).swaps
    except SwapHashError as exc:
        return [Swap(file=exc.file, line=exc.line, action="warn", old=exc.requirement, reason=exc.why)]


# --------------------------------------------------------------------------------------------------
# Prepare phase
# --------------------------------------------------------------------------------------------------

@dataclass
class SwapResult:
    enabled: bool
    manager: str  # pip, uv, poetry, pipenv or none
    python_version: str = ""
    python_origin: str = ""
    swaps: list[Swap] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    hash_mode: bool = False
    relocked: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled, "manager": self.manager, "python_version": self.python_version,
            "python_origin": self.python_origin, "swaps": [s.to_json() for s in self.swaps],
            "files_changed": self.files_changed, "hash_mode": self.hash_mode, "relocked": self.relocked,
            "notes": self.notes,
        }


def package_manager(app_dir: Path) -> str:
    if (app_dir / REQUIREMENTS).is_file():
        return "pip"
    for name, manager in zip(OTHER_MANAGERS, ("uv", "poetry", "pipenv"), strict=True):
        if (app_dir / name).is_file():
            return manager
    return "none"


def prepare(build_dir: Path, config: Config, env: dict[str, str], lookup: Lookup | None = None,
            python: pyversion.AppPython | None = None) -> SwapResult:
    """Rewrite requirements.txt (and the files it includes) to the CPU build. Logs each change.

    ``python`` is the app's Python as the prepare phase decided it (``slugslim.pyversion``).
    """
    manager = package_manager(build_dir)
    if not config.swap.enabled:
        log.detail("TensorFlow CPU swap: off ('swap: false')")
        return SwapResult(enabled=False, manager=manager)
    python = python or pyversion.app_python(build_dir)
    python_version, origin = python.minor, python.where
    result = SwapResult(enabled=True, manager=manager, python_version=python_version, python_origin=origin)
    if manager != "pip":
        if manager != "none":
            lock = OTHER_MANAGERS[("uv", "poetry", "pipenv").index(manager)]
            result.notes.append(f"{lock} cannot be re-locked at build time; any GPU TensorFlow it installs "
                                "is replaced by the CPU build after the install")
            log.detail(f"TensorFlow CPU swap: {result.notes[-1]}")
        return result
    root = build_dir / REQUIREMENTS
    if lookup is None:
        tree_files = requirements.read_tree(root, build_dir).files
        lookup = PipLookup(python_version, env, index_options(tree_files))
    relock_input = build_dir / PIP_TOOLS_INPUT
    plan = build_plan_or_relock(build_dir, config.swap, root, python_version, lookup, relock_input, env, result)
    result.hash_mode = plan.hash_mode
    for warning in plan.skipped:
        log.warning(f"Warning: {warning}")
    for file_plan in plan.files:
        for swap in file_plan.swaps:
            if swap.action == "warn":
                log.warning(f"Warning: {swap.file} line {swap.line}: {swap.describe()}.")
        if file_plan.changed:
            write_bytes(file_plan.parsed.path, file_plan.render(), build_dir)
            result.files_changed.append(_relative(file_plan.parsed.path, build_dir))
    result.swaps = plan.swaps
    changes = [s for s in plan.swaps if s.action != "warn"]
    if changes:
        log.detail(f"TensorFlow CPU swap (Python {python_version}, from {origin}):")
        for swap in changes:
            log.detail(f"  {swap.file} line {swap.line}: {swap.describe()}")
    elif not plan.swaps:
        log.detail("TensorFlow CPU swap: no GPU TensorFlow in requirements.txt")
    return result


def build_plan_or_relock(build_dir: Path, config: SwapConfig, root: Path, python_version: str, lookup: Lookup,
                         relock_input: Path, env: Mapping[str, str], result: SwapResult) -> SwapPlan:
    """Hash mode with pip-tools: re-lock from the swapped requirements.in; otherwise plan line edits."""
    if relock_input.is_file() and root.is_file() and requirements.read_tree(root, build_dir).hash_mode:
        from slugslim import relock

        plan = relock.relock(build_dir, config, root, relock_input, python_version, env)
        result.relocked = bool(plan.swaps)
        return plan
    return build_plan(build_dir, config, root=root, python_version=python_version, lookup=lookup)


def write_bytes(path: Path, data: bytes, boundary: Path) -> None:
    """Replace a file atomically, keeping its mode; never outside the app dir or through a symlink out."""
    resolved = path.resolve()
    if not resolved.is_relative_to(boundary.resolve()):
        raise ValueError(f"refusing to write outside the app: {path}")
    mode = resolved.stat().st_mode & 0o7777
    handle, temp = tempfile.mkstemp(dir=resolved.parent, prefix=f".{resolved.name}.slugslim-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, mode)
        os.replace(temp, resolved)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def fixup(ctx: FinishContext) -> FixupResult:
    """Finish phase: leave exactly one CPU TensorFlow, whatever got installed. See ``slugslim.fixup``."""
    from slugslim import fixup as fixup_module

    return fixup_module.run(ctx)
