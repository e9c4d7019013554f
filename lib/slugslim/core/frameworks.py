"""The catalogue of ML framework builds: one place for every GPU name slugslim knows.

Heroku dynos have no GPU, so for each framework the GPU build is replaced by its CPU build:

- **TensorFlow**: ``tensorflow`` (572 MB for 2.21.0), ``tensorflow-gpu``, ``tf-nightly`` → the
  ``tensorflow-cpu`` builds (274 MB), on PyPI. Both install the same ``tensorflow/`` package.
  ``tensorflow[and-cuda]`` only adds CUDA wheels.
- **PyTorch**: on Linux, PyPI's ``torch`` *is* the CUDA build (2.13.0 requires ``cuda-toolkit``,
  ``cuda-bindings``, ``nvidia-*-cu13`` and ``triton``; earlier ones ``nvidia-*-cu12``). The CPU build has
  the same name and version with a ``+cpu`` local label, on PyTorch's own index (176 MB against about
  3 GB with its CUDA wheels, torch 2.7.1). ``torchvision`` and ``torchaudio`` follow torch.
- **JAX**: ``jax`` from PyPI is CPU; ``jax[cuda12]``/``jax[cuda13]`` only add the ``jax-cuda*``
  plugin wheels, which are CUDA runtime.
- **ONNX Runtime**: ``onnxruntime-gpu`` → ``onnxruntime``; both install the ``onnxruntime/`` package.

The CUDA runtime distributions are the wheels only a GPU build loads; with the GPU build gone,
nothing else in a CPU app needs them. Packages with no CPU build at all (CuPy, RAPIDS, DALI) are
never changed: the app is warned instead.

The swap (requirements files), the fix-up (what got installed anyway), ``analyze`` and the report
all read this module.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from slugslim.core.config import SwapConfig
from slugslim.core.installed import Dist, requirers

PYPI = "pypi"
PYTORCH = "pytorch-cpu"  # PyTorch's CPU index, swap.torch_index (pytorch.org/get-started/locally)


@dataclass(frozen=True)
class Framework:
    name: str  # as users call it
    package: str  # the import name, checked after a fix-up
    builds: dict[str, str]  # GPU distribution -> its CPU build (the same name when only the index differs)
    cuda_extras: frozenset[str] = frozenset()  # extras that only add CUDA wheels
    index: str = PYPI  # where the CPU builds live: PyPI, or PyTorch's CPU index
    local_label: str = ""  # the CPU build's local version label ("cpu" for torch 2.13.0+cpu)

    def cpu_version(self, version: str) -> str:
        """The CPU build's version for a GPU build's version (``2.13.0`` -> ``2.13.0+cpu``)."""
        public = version.split("+", 1)[0]
        return f"{public}+{self.local_label}" if self.local_label else public


FRAMEWORKS: tuple[Framework, ...] = (
    Framework(name="TensorFlow", package="tensorflow",
              builds={"tensorflow": "tensorflow-cpu", "tensorflow-gpu": "tensorflow-cpu",
                      "tf-nightly": "tf-nightly-cpu", "tf-nightly-gpu": "tf-nightly-cpu"},
              cuda_extras=frozenset({"and-cuda"})),
    Framework(name="PyTorch", package="torch", index=PYTORCH, local_label="cpu",
              builds={"torch": "torch", "torchvision": "torchvision", "torchaudio": "torchaudio"}),
    Framework(name="JAX", package="jax",
              builds={"jax": "jax"},
              cuda_extras=frozenset({"cuda", "cuda11", "cuda12", "cuda13", "cuda11-pip", "cuda12-pip",
                                     "cuda12-local", "cuda13-local", "cuda11-local"})),
    Framework(name="ONNX Runtime", package="onnxruntime",
              builds={"onnxruntime-gpu": "onnxruntime"}),
)

# The wheels only a GPU build loads. CUDA 13's own wheels dropped the -cu13 suffix (nvidia-cublas,
# nvidia-cuda-runtime), so those are named one by one.
CUDA_RUNTIME = re.compile(
    r"^(nvidia-.+-cu1[123]"
    r"|nvidia-(cublas|cuda-[a-z0-9-]+|cudnn|cufft|cufile|curand|cusolver|cusparse|cusparselt|nccl|nvjitlink"
    r"|nvshmem|nvtx|nvvm|npp|nvjpeg|nvfatbin)"
    r"|cuda-toolkit|cuda-bindings|cuda-python|cuda-pathfinder|triton|pytorch-triton|tensorrt.*"
    r"|jax-cuda1[123]-(plugin|pjrt))$")

# GPU-only projects with no CPU build: never changed, only warned about. They may load the CUDA
# runtime wheels, so with one of them in the app those stay.
NO_CPU_BUILD = re.compile(r"^(cupy|cupy-cuda.*|cupy-rocm.*|cudf.*|cuml.*|cugraph.*|nvidia-dali.*|"
                          r"paddlepaddle-gpu|mxnet-cu.*|flash-attn|xformers|bitsandbytes)$")
# Projects with a CPU build that still require a CUDA runtime wheel on Linux (xgboost: nvidia-nccl-cu12).
OTHER_CUDA_USERS = re.compile(r"^(xgboost)$")


def canonical(name: str) -> str:
    return str(canonicalize_name(name))


def framework_of(name: str) -> Framework | None:
    """The framework a GPU (or same-name) distribution belongs to."""
    key = canonical(name)
    return next((f for f in FRAMEWORKS if key in f.builds), None)


def renamed_builds() -> dict[str, str]:
    """GPU distribution -> a CPU distribution of another name (tensorflow -> tensorflow-cpu, …)."""
    return {gpu: cpu for f in FRAMEWORKS for gpu, cpu in f.builds.items() if gpu != cpu}


def cpu_builds() -> frozenset[str]:
    """The CPU distributions of another name than their GPU build."""
    return frozenset(renamed_builds().values())


def is_cuda_runtime(name: str) -> bool:
    return CUDA_RUNTIME.match(canonical(name)) is not None


def has_no_cpu_build(name: str) -> bool:
    return NO_CPU_BUILD.match(canonical(name)) is not None


def may_load_cuda(name: str) -> bool:
    """A project that may load the CUDA runtime wheels and that slugslim does not swap."""
    key = canonical(name)
    return has_no_cpu_build(key) or OTHER_CUDA_USERS.match(key) is not None


def is_gpu_build(name: str, version: str = "", requires: Iterable[Requirement | str] = ()) -> bool:
    """An installed distribution that is a GPU build slugslim replaces.

    Renamed builds (tensorflow, onnxruntime-gpu) by name. Same-name builds (torch) by what they are:
    a version without a local label whose requirements name a CUDA runtime wheel (PyPI's Linux
    torch), or, for torchvision/torchaudio, any version without the CPU label next to a GPU torch.
    ``+cu…`` and ``+rocm…`` local versions are the user's own choice and stay. ``requires`` are
    the distribution's Requires-Dist, parsed or as lines.
    """
    framework = framework_of(name)
    if framework is None:
        return False
    key = canonical(name)
    if framework.builds[key] != key:
        return True
    if not framework.local_label or "+" in version:
        return False
    return any(is_cuda_runtime(_name_of(r)) for r in requires) or key != framework.package


def _name_of(requirement: Requirement | str) -> str:
    if isinstance(requirement, Requirement):
        return requirement.name
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return found.group(1) if found else ""


def kept(name: str, config: SwapConfig) -> bool:
    """``swap.keep`` names a project (or a glob such as ``nvidia-*``) that slugslim must leave alone."""
    key = canonical(name)
    return any(fnmatch.fnmatchcase(key, canonical(p) if "*" not in p else p.lower()) for p in config.keep)


def index_url(framework: Framework, config: SwapConfig) -> str | None:
    """The CPU build's index when it is not PyPI."""
    return config.torch_index.rstrip("/") if framework.index == PYTORCH else None


def advice(name: str) -> str | None:
    """What shrinks a big installed GPU distribution, for the report; None if not a GPU name."""
    key = canonical(name)
    framework = framework_of(key)
    if framework is not None and framework.builds[key] != key:
        return f"let slugslim swap it for {framework.builds[key]} (swap.enabled: true; check swap.keep)"
    if framework is not None and framework.index == PYTORCH:
        return "only the +cpu build from PyTorch's CPU index belongs on a dyno (check swap.keep and swap.torch_index)"
    if is_cuda_runtime(key):
        return "GPU libraries are useless on dynos: drop the GPU extra or build that pulls it in"
    if has_no_cpu_build(key):
        return "a GPU-only package with no CPU build: dynos have no GPU, remove it if the app can run without"
    return None


def cuda_removals(gpu: Dist, dists: Mapping[str, Dist], config: SwapConfig,
                  replaced: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """The one decision on CUDA wheels, for the fix-up and for ``analyze``: (removable, needed).

    Removable: the CUDA wheels the GPU build ``gpu`` required (by any extra), directly or through
    other CUDA wheels, that nothing else installed needs, apart from ``gpu`` and the GPU builds in
    ``replaced``. Needed: those candidates something else requires. ``swap.keep`` wins over both.
    """
    wanted = {canonicalize_name(r.name) for r in gpu.requires}
    candidates = {n for n in wanted if n in dists and is_cuda_runtime(n) and not kept(n, config)}
    # A CUDA wheel that CUDA wheels require goes too, when only the GPU build's CUDA wheels need it.
    changed = True
    while changed:
        changed = False
        for dist in dists.values():
            if dist.name in candidates:
                for requirement in dist.requires:
                    name = canonicalize_name(requirement.name)
                    if name in dists and name not in candidates and is_cuda_runtime(name) and not kept(name, config):
                        candidates.add(name)
                        changed = True
    removable = set(candidates)
    changed = True
    while changed:
        changed = False
        for name in sorted(removable):
            if requirers(dists, name, {gpu.name, *replaced, *removable}):
                removable.discard(name)
                changed = True
    return sorted(removable), sorted(candidates - removable)
