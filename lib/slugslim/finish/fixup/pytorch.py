"""Finish phase for PyTorch: a CUDA torch that got installed anyway becomes the ``+cpu`` build.

torch comes in without requirements.txt asking for it by name (sentence-transformers, transformers,
ultralytics, timm require it), or from a uv, Poetry or Pipenv lock. PyPI's Linux torch is the CUDA
build, and its CPU build has the same name, so, unlike TensorFlow, there is no second distribution to
install next to it. With the app's interpreter:

1. Every file of the CUDA build (its RECORD: ``torch/``, ``torchgen/``, its dist-info) goes into the
   fix-up's quarantine, whole top-level directories where nothing else owns a file in them.
2. ``pip install --no-deps torch==<version>+cpu`` from ``swap.torch_index``.
3. The metadata, so that the next build (site-packages restored from heroku/python's cache) has
   nothing to download:

   - pip and pipenv: ``torch-2.13.0+cpu`` satisfies ``torch==2.13.0`` and every ``torch>=…`` (PEP 440
     ignores the local label), so the CPU build's own dist-info stays.
   - uv and Poetry sync exactly to the lock's ``2.13.0``: the CUDA build's dist-info is written back
     with the CPU files in its RECORD and a ``SLUGSLIM`` file, and the removed CUDA wheels keep a
     metadata-only dist-info (the "merged" layout of ``slugslim.finish.fixup.fixup``).
4. The CUDA runtime wheels only the CUDA build required go (``sitefiles.remove_cuda``).

torchvision and torchaudio from PyPI are CUDA builds too and follow, torch first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from slugslim.core import frameworks, log
from slugslim.core.context import FinishContext
from slugslim.core.errors import FixupError
from slugslim.core.installed import Dist, read_dists, requirers
from slugslim.core.results import FixupResult
from slugslim.deps.simpleindex import index_answers
from slugslim.deps.sources import EXACT_SYNC_MANAGERS, LOCK_MANAGERS
from slugslim.finish.fixup.sitefiles import (
    Quarantine,
    merge_into_gpu_name,
    prune_empty_dirs,
    remove_cuda,
)

Install = Callable[[list[str]], None]


def take_all(site: Path, dist: Dist, dists: dict[str, Dist], quarantine: Quarantine) -> None:
    """Move every file of ``dist`` aside: whole top-level directories only it has files in."""
    others: set[str] = set()
    for other in dists.values():
        if other.name != dist.name:
            others |= {Path(p).parts[0] for p in other.paths() if not p.startswith("..")}
    tops = sorted({Path(p).parts[0] for p in dist.paths() if not p.startswith("..")})
    for top in tops:
        if top not in others and (site / top).is_dir():
            quarantine.take(site / top)
    for path in sorted(dist.paths()):
        if not path.startswith("..") and Path(path).parts[0] in others:
            quarantine.take(site / path)
    prune_empty_dirs(site, {t for t in tops if t in others})


def replace(ctx: FinishContext, gpu: Dist, dists: dict[str, Dist], manager: str, quarantine: Quarantine,
            install: Install, result: FixupResult) -> bool:
    """Replace one CUDA build; False when the CPU index does not answer (then it stays as installed)."""
    site = ctx.site_packages
    assert site is not None
    framework = frameworks.framework_of(gpu.name)
    assert framework is not None
    index = frameworks.index_url(framework, ctx.config.swap)
    if index and not index_answers(index, "torch"):
        result.add("skipped", gpu.name, f"{gpu.name} {gpu.version} (the CUDA build) left as installed: PyTorch's "
                   f"CPU index {index} did not answer", level="warning")
        log.warning(f"Warning: PyTorch's CPU index {index} (swap.torch_index) did not answer, so {gpu.name} "
                    f"{gpu.version} stays the CUDA build, several GB. Build again, or set swap.torch_index to a "
                    "mirror that answers.")
        return False
    version = framework.cpu_version(gpu.version)
    needed_by = requirers(dists, gpu.name, {gpu.name})
    why = f"required by {', '.join(needed_by)}" if needed_by else f"installed from {manager}"
    saved_info = {f.name: f.read_bytes() for f in gpu.info.iterdir() if f.is_file()}
    take_all(site, gpu, dists, quarantine)
    try:
        install([*(["--extra-index-url", index] if index else []), f"{gpu.name}=={version}"])
    except FixupError as exc:
        raise FixupError(exc.what, exc.output, framework=framework.name, package=gpu.name,
                         cpu_build=f"{gpu.name}=={version}") from exc
    fresh = read_dists(site)
    cpu = fresh[gpu.name]
    quarantine.installed.append(cpu.info)
    merged = manager in EXACT_SYNC_MANAGERS
    result.layout = "merged" if merged else "stand-in"
    if merged:
        gpu.info.mkdir()
        for name, data in saved_info.items():
            if name != "RECORD":
                (gpu.info / name).write_bytes(data)
        merge_into_gpu_name(site, gpu, cpu, quarantine)
    result.add("installed", gpu.name, f"{gpu.name} {gpu.version} ({why}, the CUDA build) → {gpu.name} {version}, "
               f"installed with --no-deps from {index or 'PyPI'}", version=version, replaced=gpu.name)
    remove_cuda(ctx, gpu, read_dists(site), quarantine, result, stub=manager in LOCK_MANAGERS)
    return True


def order(gpus: list[Dist]) -> list[Dist]:
    """torch before torchvision and torchaudio, which pip checks against the torch installed."""
    return sorted(gpus, key=lambda d: (d.name != "torch", d.name))
