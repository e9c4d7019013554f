"""Finish phase of the swap: whatever GPU build got installed anyway, leave one CPU copy.

This module decides and verifies; ``slugslim.finish.fixup.sitefiles`` does the file work. TensorFlow and ONNX
Runtime, whose CPU builds are distributions of another name, are handled here as described below;
PyTorch, whose CPU build has the same name on another index, in ``slugslim.finish.fixup.pytorch``.

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

import os
import subprocess
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name

from slugslim.core import log, pip
from slugslim.core.context import FinishContext
from slugslim.core.errors import FixupError, SlugslimError
from slugslim.core.frameworks import (
    FRAMEWORKS,
    cpu_builds,
    framework_of,
    is_cuda_runtime,
    is_gpu_build,
    kept,
    renamed_builds,
)
from slugslim.core.installed import Dist, read_dists, requirers
from slugslim.core.results import FixupResult, snapshot
from slugslim.deps import locksnippets, requirements
from slugslim.deps.sources import (
    EXACT_SYNC_MANAGERS,
    LOCK_MANAGERS,
    MANAGERS,
    REQUIREMENTS,
    index_options,
    package_manager,
)
from slugslim.finish.fixup import pytorch
from slugslim.finish.fixup.sitefiles import (
    Quarantine,
    hash_ok,
    merge_into_gpu_name,
    prune_empty_dirs,
    remove_cuda,
    stand_in,
)


def _index_options(ctx: FinishContext) -> list[str]:
    root = ctx.build_dir / REQUIREMENTS
    if not root.is_file():
        return []
    try:
        return index_options(requirements.read_tree(root, ctx.build_dir).files)
    except SlugslimError:
        return []


def run(ctx: FinishContext) -> FixupResult:
    result = FixupResult(enabled=ctx.config.swap.enabled)
    if not ctx.config.swap.enabled or ctx.site_packages is None:
        ctx.results.fixup = snapshot(result)
        return result
    site = ctx.site_packages
    dists = read_dists(site)
    gpu = pytorch.order([d for d in dists.values() if not d.is_stand_in and not d.marked
                            and is_gpu_build(d.name, d.version, d.requires)])
    plugged = [d for d in dists.values() if not kept(d.name, ctx.config.swap) and _cuda_plugins(d, dists)]
    if not gpu and not plugged:
        ctx.results.fixup = snapshot(result)
        return result
    log.detail("GPU builds found after the install; replacing them with the CPU builds:")
    manager = ctx.state.swap.manager or package_manager(ctx.build_dir)
    quarantine = Quarantine(ctx.build_dir, site)
    pip_run = pip.for_app(ctx.python, ctx.site_packages, ctx.env)
    before, _ = _check(ctx, [], [])
    replaced: list[Dist] = []
    try:
        for dist in gpu:
            if kept(dist.name, ctx.config.swap):
                result.add("kept", dist.name, f"{dist.name} {dist.version} kept as installed (swap.keep)")
                continue
            if dist.name in renamed_builds():
                _replace(ctx, dist, dists, manager, quarantine, pip_run, result)
            elif not pytorch.replace(ctx, dist, dists, manager, quarantine,
                                        lambda args: _pip_install(ctx, pip_run, args), result):
                continue
            replaced.append(dist)
            dists = read_dists(site)
        for dist in plugged:
            # jax[cuda12]: jax itself is the CPU build; only the CUDA plugins its extra pulled in go.
            remove_cuda(ctx, dist, dists, quarantine, result, stub=manager in LOCK_MANAGERS)
            replaced.append(dist)
            dists = read_dists(site)
        _verify(ctx, replaced, dists, before)
    except BaseException:
        quarantine.restore()
        raise
    quarantine.commit()
    same_name = {d.name: d.version.split("+", 1)[0] for d in replaced if d.name not in renamed_builds()}
    if same_name and manager in MANAGERS:
        result.lock_snippet = locksnippets.advice(manager, ctx.config.swap.torch_index.rstrip("/"), same_name)
        for line in result.lock_snippet:
            log.detail(line)
    result.bytes_removed = quarantine.bytes
    if quarantine.bytes:
        log.detail(f"  {log.human_bytes(quarantine.bytes)} of GPU-only files removed")
    ctx.results.fixup = snapshot(result)
    return result


def _cuda_plugins(dist: Dist, dists: dict[str, Dist]) -> bool:
    """A framework that is CPU as installed but whose CUDA extra pulled in CUDA wheels (jax[cuda12])."""
    framework = framework_of(dist.name)
    if framework is None or not framework.cuda_extras or framework.builds[dist.name] != dist.name:
        return False
    return any(is_cuda_runtime(r.name) and canonicalize_name(r.name) in dists for r in dist.requires)


def _replace(ctx: FinishContext, gpu: Dist, dists: dict[str, Dist], manager: str, quarantine: Quarantine,
             pip_run: tuple[list[str], dict[str, str]], result: FixupResult) -> None:
    site = ctx.site_packages
    assert site is not None
    target = renamed_builds()[gpu.name]
    needed_by = requirers(dists, gpu.name, {gpu.name, *cpu_builds()})
    why = f"required by {', '.join(needed_by)}" if needed_by else f"installed from {manager}"
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
        _pip_install(ctx, pip_run, [f"{target}=={gpu.version}"])
        result.add("installed", target, f"{gpu.name} {gpu.version} ({why}) → {target} {gpu.version}, "
                   "installed with --no-deps", version=gpu.version, replaced=gpu.name)
    else:
        # Both installed: whichever came last wrote the shared files. Keep the CPU copy if it is intact.
        damaged = [p for p, h in cpu.files if h and gpu_hashes.get(os.path.normpath(p), h) != h
                   and not hash_ok(site, p, h)]
        if damaged:
            _pip_install(ctx, pip_run, ["--force-reinstall", f"{target}=={gpu.version}"])
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
    prune_empty_dirs(site, {Path(p).parts[0] for p in gpu.paths() if not p.startswith("..")})

    merged = manager in EXACT_SYNC_MANAGERS and not cpu_was_installed
    result.layout = "merged" if merged else "stand-in"
    if merged:
        merge_into_gpu_name(site, gpu, cpu, quarantine)
    else:
        stand_in(gpu, target, quarantine)
    remove_cuda(ctx, gpu, fresh, quarantine, result, stub=manager in LOCK_MANAGERS)


def _pip_install(ctx: FinishContext, pip_run: tuple[list[str], dict[str, str]], args: list[str]) -> None:
    pip_command, env = pip_run
    command = [*pip_command, "install", "--no-deps", "--no-cache-dir", "--no-input", "--quiet", *_index_options(ctx),
               *args]
    ctx.timeout(0)  # no install starts past the budget; one that has started is never cut short halfway
    done = subprocess.run(command, env=env, cwd=ctx.build_dir, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise FixupError(f"'pip install --no-deps {' '.join(args)}' failed.", done.stderr + done.stdout)


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

    # Our packaging, and nothing else of slugslim's environment: the check reads every distribution on the
    # path, and must import the app's frameworks, not ones slugslim's tools may have beside packaging.
    with tempfile.TemporaryDirectory(prefix="slugslim-check-") as ours:
        (Path(ours) / "packaging").symlink_to(Path(packaging.__file__).parent, target_is_directory=True)
        env = ctx.python_env()
        env["PYTHONPATH"] = os.pathsep.join([ours, str(ctx.build_dir)])
        done = subprocess.run([str(ctx.python), "-c", CHECK_SCRIPT, ",".join(imports), ",".join(names)], env=env,
                              cwd=ctx.build_dir, capture_output=True, text=True, check=False,
                              timeout=ctx.timeout(600))
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise FixupError("slugslim could not check the installed packages with the app's Python.",
                         done.stderr) from exc
    return set(answer["problems"]), list(answer["errors"])


def _verify(ctx: FinishContext, replaced: list[Dist], dists: dict[str, Dist], before: set[str]) -> None:
    """Import each framework replaced, the metadata of every name replaced, and no new dependency problem."""
    found = [f for f in FRAMEWORKS if any(d.name in f.builds for d in replaced)]
    problems, errors = _check(ctx, [f.package for f in found], sorted(d.name for d in replaced if d.name in dists))
    if errors:
        names = " and ".join(f.name for f in found)
        raise FixupError(f"After the swap, the app's Python cannot use {names}.", "\n".join(errors),
                         framework=names, package=found[0].package, cpu_build=found[0].builds[replaced[0].name])
    new = sorted(problems - before)
    if new:
        raise FixupError("After the swap, an installed package's requirement is no longer met (as 'pip check' "
                         "would report).", "\n".join(new))
