"""The CPU swap: ask pip for the CPU builds before heroku/python installs anything.

Heroku dynos have no GPU. In requirements.txt (and every file it includes with -r/-c) the GPU
builds of the catalogue (``slugslim.core.frameworks``) become CPU builds:

- ``tensorflow`` → ``tensorflow-cpu``; ``tensorflow[and-cuda]`` → ``tensorflow-cpu`` (the CUDA extra goes);
  ``tensorflow-gpu`` → ``tensorflow-cpu``; ``tf-nightly`` → ``tf-nightly-cpu``; ``onnxruntime-gpu`` →
  ``onnxruntime``. Specifiers and markers stay. (tensorflow 2.21.0 is a 572 MB wheel, tensorflow-cpu 274 MB.)
- ``torch``, ``torchvision``, ``torchaudio`` → their ``+cpu`` builds on PyTorch's CPU index
  (``slugslim.prepare.swap.pytorch``).
- ``jax[cuda12]``/``jax[cuda13]`` → ``jax``: the extras only add the CUDA plugins.
- Pinned CUDA runtime wheels (``nvidia-*``, ``cuda-toolkit``, ``triton``, ``tensorrt*``, ``jax-cuda*``, as
  ``pip freeze`` writes them) go, unless something else in the file (cupy, a build left as it is) may load them.
- Packages with no CPU build (CuPy, …) stay, with a warning.

Only lines whose markers hold on a Heroku dyno (Linux, x86_64, the app's Python) change: a
``tensorflow ; sys_platform == "darwin"`` line is for a laptop and stays. A GPU line that holds on Linux
next to a CPU line that also does is not swapped into a second CPU line; it gets
``and sys_platform != "linux"`` instead, so it keeps working elsewhere.

In hash-checking mode the swapped line gets the sha256 of the file pip will install (``slugslim.deps.wheels``),
or, when the app uses pip-tools, the file is re-locked (``slugslim.prepare.swap.relock``). Lock files of other tools
(uv.lock, poetry.lock, Pipfile.lock) cannot be re-locked at build time; the finish phase fixes those
installs up instead (``slugslim.finish.fixup``). ``slugslim.prepare.swap.rewrite`` writes the plan made here.

A file that needs no change keeps its bytes; a changed one gets one comment line at the top. The
output depends only on the input (and, in hash mode, on the index), so heroku/python's cache, keyed
on requirements.txt, stays valid from build to build.
"""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from slugslim.core import frameworks
from slugslim.core.config import SwapConfig
from slugslim.core.errors import LookupFailed, SwapHashError
from slugslim.core.frameworks import kept
from slugslim.deps import pyversion, reqedit, requirements
from slugslim.deps.markers import applies_on_dyno, dyno_environment
from slugslim.deps.sources import MANAGERS, OTHER_MANAGERS, REQUIREMENTS, package_manager
from slugslim.deps.wheels import Lookup, NoLookup
from slugslim.prepare.swap.locks import flow
from slugslim.prepare.swap.plan import FilePlan, Swap, SwapPlan, pinned_version, replace_args, without_marker
from slugslim.prepare.swap.pytorch import TorchIndex, TorchRewrite, is_torch_family

# --------------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------------

def relative(path: Path, app_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(app_dir.resolve()))
    except ValueError:
        return str(path)


def build_plan(app_dir: Path, config: SwapConfig, root: Path | None = None, python_version: str | None = None,
               lookup: Lookup | None = None, strip_hashes: bool = False,
               torch_index: TorchIndex | None = None) -> SwapPlan:
    """Decide every change to requirements.txt and its nested files. Writes nothing.

    ``lookup`` answers which wheel pip would pick (for versions, sizes and hashes); without one,
    versions come from ``==`` pins and sizes are unknown. In hash mode the lookup is required.
    ``torch_index`` does the same for PyTorch's CPU index; without it the ``+cpu`` pins are not checked.
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
        plan.skipped.append(f"{relative(including, app_dir)} line {line} includes '{target}', which slugslim "
                            f"did not read: {why}.")
    environment = dyno_environment(python_version)
    lookup = lookup or NoLookup()
    renamed = frameworks.renamed_builds()
    on_dyno = [(p, e) for p, _, e in tree.entries()
               if e.requirement is not None and applies_on_dyno(e.requirement, environment)]
    # CPU builds the app already installs on a dyno (from requirement files, not constraints).
    cpu_on_dyno = {e.name for p, e in on_dyno if e.name in frameworks.cpu_builds() and not p.constraint}
    names_on_dyno = {e.name for _, e in on_dyno if e.name}
    cuda_users = {n for n in names_on_dyno if frameworks.may_load_cuda(n)}
    cuda_users |= {n for n in names_on_dyno if frameworks.framework_of(n) and kept(n, config)}
    ml_app = any(frameworks.framework_of(n) or n in frameworks.cpu_builds() for n in names_on_dyno)
    torch = TorchRewrite(config=config, tree=tree, index=torch_index, app_lookup=lookup,
                         python_version=python_version)

    plans: dict[Path, FilePlan] = {p.path: FilePlan(parsed=p) for p in tree.files}
    cuda_lines: list[tuple[FilePlan, int, requirements.Entry]] = []
    for parsed, index, entry in tree.entries():
        file_plan = plans[parsed.path]
        where = relative(parsed.path, app_dir)
        if entry.requirement is None:
            target_name = entry.target_name() if entry.kind in ("url", "path", "editable") else None
            if target_name in renamed and not kept(target_name, config):
                file_plan.swaps.append(Swap(
                    file=where, line=entry.lineno, action="warn", old=entry.text, source=target_name,
                    reason="it installs the GPU build from a URL, path or -e; point it at the "
                           f"{renamed[target_name]} file instead to save the download"))
            continue
        requirement = entry.requirement
        name = entry.name or ""
        if not applies_on_dyno(requirement, environment) or kept(name, config):
            continue
        framework = frameworks.framework_of(name)
        if is_torch_family(name):
            torch.plan(file_plan, where, index, entry, plan.hash_mode, strip_hashes)
        elif name in renamed:
            _plan_renamed(plan, file_plan, where, index, entry, cpu_on_dyno, lookup, strip_hashes)
        elif framework is not None and {canonicalize_name(e) for e in requirement.extras} & framework.cuda_extras:
            lines = reqedit.edit_name(parsed, entry, name, drop_extras=sorted(framework.cuda_extras))
            file_plan.edits[index] = lines
            new_requirement = Requirement(str(requirement))
            new_requirement.extras = {e for e in requirement.extras
                                      if canonicalize_name(e) not in framework.cuda_extras}
            file_plan.swaps.append(Swap(file=where, line=entry.lineno, action="swap", old=without_marker(requirement),
                                        new=without_marker(new_requirement), source=name, target=name,
                                        version=pinned_version(requirement)))
        elif frameworks.is_cuda_runtime(name) and pinned_version(requirement):
            cuda_lines.append((file_plan, index, entry))
        elif frameworks.has_no_cpu_build(name):
            file_plan.swaps.append(Swap(file=where, line=entry.lineno, action="warn", old=without_marker(requirement),
                                        source=name, reason=f"{name} has no CPU build and needs a GPU, which "
                                        "dynos do not have; remove it if the app runs without it"))
    torch.check_pairs()
    users = sorted(cuda_users | set(torch.gpu_left))
    for file_plan, index, entry in cuda_lines if ml_app else []:
        assert entry.requirement is not None
        where, old = relative(file_plan.parsed.path, app_dir), without_marker(entry.requirement)
        if users:
            file_plan.swaps.append(Swap(
                file=where, line=entry.lineno, action="warn", old=old, source=entry.name or "",
                reason=f"{', '.join(users)} may load it; add it to swap.keep to hide this note"))
            continue
        file_plan.edits[index] = None
        file_plan.swaps.append(Swap(file=where, line=entry.lineno, action="remove", old=old, source=entry.name or "",
                                    reason="a CUDA library only a GPU can use"))
    plan.files = list(plans.values())
    return plan


def _plan_renamed(plan: SwapPlan, file_plan: FilePlan, where: str, index: int, entry: requirements.Entry,
                  cpu_on_dyno: set[str], lookup: Lookup, strip_hashes: bool) -> None:
    """A GPU build with a CPU build of another name: tensorflow -> tensorflow-cpu, onnxruntime-gpu -> onnxruntime."""
    parsed, requirement = file_plan.parsed, entry.requirement
    assert requirement is not None
    name = entry.name or ""
    framework = frameworks.framework_of(name)
    assert framework is not None
    target = framework.builds[name]
    if target in cpu_on_dyno and not parsed.constraint:
        new_text = reqedit.with_marker(requirement, 'sys_platform != "linux"')
        file_plan.edits[index] = replace_args(parsed, entry, new_text)
        file_plan.swaps.append(Swap(
            file=where, line=entry.lineno, action="exclude-linux", old=entry.args, new=new_text, source=name,
            target=name, reason=f"{target} is already asked for on Linux, so a second {framework.name} must not be"))
        return
    requirers = [v for v in reqedit.via(parsed, index) if not v.startswith("-")]
    if requirers:
        # Swapping a line that something else pins for itself still lets the GPU build in (with a
        # second download); the finish phase replaces it after the install instead.
        file_plan.swaps.append(Swap(
            file=where, line=entry.lineno, action="warn", old=without_marker(requirement), source=name,
            reason=f"{', '.join(requirers)} requires {requirement.name} itself, so the swap happens "
                   "after the install"))
        return
    lines = reqedit.edit_name(parsed, entry, target, drop_extras=sorted(framework.cuda_extras))
    new_requirement = Requirement(str(requirement))
    new_requirement.name = target
    new_requirement.extras = {e for e in requirement.extras if canonicalize_name(e) not in framework.cuda_extras}
    new_requirement.marker = None
    swap = Swap(file=where, line=entry.lineno, action="swap", old=without_marker(requirement),
                new=str(new_requirement), source=name, target=target, version=pinned_version(requirement))
    if strip_hashes:
        file_plan.edits[index] = reqedit.with_hashes(lines, [])
        file_plan.swaps.append(swap)
        return
    # A constraint line needs hashes only if it had some: pip checks hashes of what it installs.
    needs_hash = plan.hash_mode and (bool(entry.hashes) or not parsed.constraint)
    if needs_hash or not parsed.constraint:  # a constraint installs nothing: no sizes to show
        _look_up(swap, requirement, lookup, needs_hash)
    if needs_hash:
        if swap.new_wheel is None or not swap.new_wheel.sha256:
            raise SwapHashError(where, entry.lineno, entry.args, target,
                                swap.reason or "the index did not give the file's sha256.")
        lines = reqedit.with_hashes(lines, [f"sha256:{swap.new_wheel.sha256}"])
    file_plan.edits[index] = lines
    file_plan.swaps.append(swap)


def _look_up(swap: Swap, requirement: Requirement, lookup: Lookup, hash_mode: bool) -> None:
    """Fill in the version and wheels pip would pick, for the log line and for hash mode."""
    target = Requirement(str(requirement))
    target.name = swap.target
    target.extras = set()
    target.marker = None
    if hash_mode and swap.version is None:
        swap.reason = (f"'{without_marker(requirement)}' is not pinned to one version with ==, "
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


def plan_swaps(app_dir: Path, config: SwapConfig, *, lookup: Lookup | None = None) -> list[Swap]:
    """Dry run for ``analyze``: what the swap would change in the app's requirements, or in its uv,
    Poetry or Pipenv lock (planned from the lock, without running the locker). Writes nothing.

    Without a lookup no index is asked, so sizes are unknown and hash mode is only reported.
    """
    if not config.enabled:
        return []
    manager = package_manager(app_dir)
    if manager in MANAGERS:
        try:
            planned = flow.plan(app_dir, manager, config)
        except ValueError as exc:
            return [Swap(file=OTHER_MANAGERS[MANAGERS.index(manager)], line=0, action="warn", old="", reason=str(exc))]
        return planned.swaps if planned is not None else []
    try:
        return build_plan(app_dir, config, lookup=lookup).swaps
    except SwapHashError as exc:
        return [Swap(file=exc.file, line=exc.line, action="warn", old=exc.requirement, reason=exc.why)]


