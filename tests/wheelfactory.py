"""Build tiny but real wheels on the fly, so tests pip-install them from a local find-links dir.

A wheel is a zip with ``<name>-<ver>.dist-info/{METADATA,WHEEL,RECORD}``; pip installs it like
any other. ``build_wheel`` writes one; ``WheelSpec`` describes it with the dependency shapes we
need (the ``and-cuda`` extra, packages sharing a directory, ELF files, tests/ trees).
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FileContent = bytes | str


@dataclass
class WheelSpec:
    name: str
    version: str = "1.0.0"
    requires: list[str] = field(default_factory=list)
    # extra name -> requirements that the extra adds
    extras: dict[str, list[str]] = field(default_factory=dict)
    # path inside the wheel (relative to site-packages) -> content
    files: Mapping[str, FileContent] = field(default_factory=dict)
    top_level: list[str] | None = None
    requires_python: str | None = None
    tag: str = "py3-none-any"
    summary: str = "A tiny test distribution built by the slugslim test suite."
    entry_points: dict[str, str] = field(default_factory=dict)  # console script -> "mod:func"
    # Files that go into <name>-<ver>.data/scripts (installed into bin/).
    scripts: Mapping[str, FileContent] = field(default_factory=dict)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_name(name: str) -> str:
    """The file-name form of a distribution name (PEP 427)."""
    return re.sub(r"[-_.]+", "_", name)


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _as_bytes(content: FileContent) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def metadata_text(spec: WheelSpec) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {spec.name}", f"Version: {spec.version}", f"Summary: {spec.summary}"]
    if spec.requires_python:
        lines.append(f"Requires-Python: {spec.requires_python}")
    for req in spec.requires:
        lines.append(f"Requires-Dist: {req}")
    for extra, reqs in spec.extras.items():
        lines.append(f"Provides-Extra: {extra}")
        for req in reqs:
            marker = f'extra == "{extra}"'
            if ";" in req:
                base, _, existing = req.partition(";")
                lines.append(f"Requires-Dist: {base.strip()} ; ({existing.strip()}) and {marker}")
            else:
                lines.append(f"Requires-Dist: {req} ; {marker}")
    return "\n".join(lines) + "\n\n"


def build_wheel(spec: WheelSpec, out_dir: Path) -> Path:
    """Write the wheel into out_dir and return its path. Deterministic for the same spec."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = f"{dist_name(spec.name)}-{spec.version}"
    info = f"{base}.dist-info"
    entries: dict[str, bytes] = {path: _as_bytes(content) for path, content in spec.files.items()}
    for script, content in spec.scripts.items():
        entries[f"{base}.data/scripts/{script}"] = _as_bytes(content)
    entries[f"{info}/METADATA"] = metadata_text(spec).encode()
    entries[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: slugslim-tests\nRoot-Is-Purelib: true\nTag: {spec.tag}\n\n"
    ).encode()
    top_level = spec.top_level
    if top_level is None:
        top_level = sorted(
            {p.split("/", 1)[0].removesuffix(".py") for p in spec.files if "/" in p or p.endswith(".py")}
        )
    entries[f"{info}/top_level.txt"] = ("\n".join(top_level) + "\n").encode()
    if spec.entry_points:
        body = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in spec.entry_points.items())
        entries[f"{info}/entry_points.txt"] = body.encode()
    record = [_record_line(path, data) for path, data in entries.items()]
    record.append(f"{info}/RECORD,,")
    entries[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()

    wheel_path = out_dir / f"{base}-{spec.tag}.whl"
    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in entries.items():
            zinfo = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            zinfo.external_attr = (0o755 if "/scripts/" in path or path.endswith(".so") else 0o644) << 16
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(zinfo, data)
    return wheel_path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashed_lock(path: Path, wheels: list[Path]) -> Path:
    """A lock as ``make lock`` writes lib/runtime.lock (``name==version`` and the sha256 of each file),
    for wheels of this factory: the real lock's hashes are those of the real wheels."""
    lines = [f"{normalize(w.name.split('-')[0])}=={w.name.split('-')[1]} \\\n    --hash=sha256:{sha256_of(w)}\n"
             for w in sorted(wheels)]
    path.write_text("# A lock of runtime packages made by the slugslim tests.\n" + "".join(lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Ready-made shapes of the real TensorFlow family, scaled down to bytes.
# ---------------------------------------------------------------------------------------------

TF_INIT = '''"""Fake TensorFlow for the slugslim tests."""
import os as _os
__version__ = "{version}"
BUILD = "{build}"
from tensorflow._api.v2.__internal__ import test as _internal_test  # runtime code imports a 'test' package
from tensorflow.python.framework import test_util as _test_util  # and a module named test_*
from tensorflow.python.data.ops import test_mode as _test_mode
'''


SAVED_MODEL_CLI = "def main():\n    import tensorflow\n    print('saved_model_cli', tensorflow.BUILD)\n"
# Console scripts both builds install into bin/, as the real ones do (saved_model_cli, tflite_convert, ...).
TF_SCRIPTS = {"saved_model_cli": "tensorflow.python.tools.saved_model_cli:main"}


def tensorflow_files(version: str, build: str, payload: int = 2048) -> dict[str, FileContent]:
    """The shared ``tensorflow/`` package dir of tensorflow and tensorflow-cpu, with the traps."""
    return {
        "tensorflow/__init__.py": TF_INIT.format(version=version, build=build),
        "tensorflow/_api/__init__.py": "",
        "tensorflow/_api/v2/__init__.py": "",
        "tensorflow/_api/v2/__internal__/__init__.py": "",
        "tensorflow/_api/v2/__internal__/test/__init__.py": "VALUE = 1\n",
        "tensorflow/python/__init__.py": "",
        "tensorflow/python/framework/__init__.py": "",
        "tensorflow/python/framework/test_util.py": "def helper():\n    return 1\n",
        "tensorflow/python/data/__init__.py": "",
        "tensorflow/python/data/ops/__init__.py": "",
        "tensorflow/python/data/ops/test_mode.py": "MODE = 'test'\n",
        "tensorflow/python/kernel_tests/__init__.py": "",
        "tensorflow/python/kernel_tests/tests/__init__.py": "",
        "tensorflow/python/kernel_tests/tests/test_math.py": "def test_add():\n    assert 1 + 1 == 2\n",
        "tensorflow/include/tensorflow/core/framework/tensor.h": "// header\n" * 64,
        "tensorflow/python/tools/__init__.py": "",
        "tensorflow/python/tools/saved_model_cli.py": SAVED_MODEL_CLI,
        f"tensorflow/libtensorflow_{build}.so.2": (build.encode() * payload)[:payload],
    }


def tensorflow_spec(version: str = "2.21.0", payload: int = 4096) -> WheelSpec:
    return WheelSpec(
        name="tensorflow",
        version=version,
        requires=["numpy-fake>=1.0"],
        extras={"and-cuda": ["nvidia-cublas-cu12==12.5.3.2", "nvidia-cudnn-cu12==9.3.0.75"]},
        files=tensorflow_files(version, "gpu", payload),
        top_level=["tensorflow"],
        entry_points=TF_SCRIPTS,
        tag="py3-none-any",
    )


def tensorflow_cpu_spec(version: str = "2.21.0", payload: int = 1024) -> WheelSpec:
    return WheelSpec(
        name="tensorflow-cpu",
        version=version,
        requires=["numpy-fake>=1.0"],
        files=tensorflow_files(version, "cpu", payload),
        top_level=["tensorflow"],
        entry_points=TF_SCRIPTS,
    )


def tf_keras_spec(version: str = "2.21.0") -> WheelSpec:
    major_minor = ".".join(version.split(".")[:2])
    upper = f"{major_minor.split('.')[0]}.{int(major_minor.split('.')[1]) + 1}"
    return WheelSpec(
        name="tf-keras",
        version=version,
        requires=[f"tensorflow<{upper},>={major_minor}"],
        files={"tf_keras/__init__.py": f"import tensorflow\n__version__ = '{version}'\n"},
    )


def nvidia_spec(name: str, version: str) -> WheelSpec:
    # nvidia-cublas-cu12 -> nvidia/cublas/lib/libnvidia_cublas.so (strip only the trailing -cuNN)
    module = re.sub(r"_cu\d+$", "", normalize(name).replace("-", "_"))
    return WheelSpec(
        name=name,
        version=version,
        files={f"nvidia/{module.removeprefix('nvidia_')}/lib/lib{module}.so": b"\x7fELF" + b"\0" * 256},
        top_level=["nvidia"],
    )


def tf_family(out_dir: Path, version: str = "2.21.0") -> dict[str, Path]:
    """Write the whole fake TensorFlow family into a find-links dir; return name -> wheel path."""
    specs = [
        tensorflow_spec(version),
        tensorflow_cpu_spec(version),
        tf_keras_spec(version),
        nvidia_spec("nvidia-cublas-cu12", "12.5.3.2"),
        nvidia_spec("nvidia-cudnn-cu12", "9.3.0.75"),
        WheelSpec(name="numpy-fake", version="1.26.4", files={"numpy_fake/__init__.py": "VALUE = 1\n"}),
    ]
    return {spec.name: build_wheel(spec, out_dir) for spec in specs}


# ---------------------------------------------------------------------------------------------
# The PyTorch family: PyPI's Linux torch is the CUDA build; the +cpu builds live on another index.
# ---------------------------------------------------------------------------------------------

TORCH_INIT = '__version__ = "{version}"\nBUILD = "{build}"\n'
# What PyPI's torch 2.13.0 (cp311, Linux) requires, scaled down to two CUDA toolkit extras.
TORCH_CUDA_REQUIRES = [
    "filelock-fake",
    'cuda-toolkit[cublas,cudart]==13.0.3 ; platform_system == "Linux"',
    'cuda-bindings<14,>=13.0.3 ; platform_system == "Linux"',
    'nvidia-cudnn-cu13==9.13.0.50 ; platform_system == "Linux"',
    'nvidia-nccl-cu13==2.28.3 ; platform_system == "Linux"',
    'triton==3.7.1 ; platform_system == "Linux"',
]


def torch_spec(version: str, build: str, payload: int = 2048, tag: str = "py3-none-any") -> WheelSpec:
    """torch ``version`` (``2.13.0`` for PyPI's CUDA build, ``2.13.0+cpu`` for the CPU one)."""
    files: dict[str, FileContent] = {
        "torch/__init__.py": TORCH_INIT.format(version=version, build=build),
        "torch/lib/libtorch_cpu.so": b"\x7fELF" + b"c" * 512,
        "torchgen/__init__.py": "",
    }
    if build == "cuda":
        files["torch/lib/libtorch_cuda.so"] = b"\x7fELF" + b"g" * payload
    return WheelSpec(name="torch", version=version, files=files, top_level=["torch", "torchgen"], tag=tag,
                     requires=TORCH_CUDA_REQUIRES if build == "cuda" else ["filelock-fake"])


def torch_pypi(out_dir: Path, version: str = "2.13.0") -> dict[str, Path]:
    """A fake PyPI: CUDA torch and torchvision, the CUDA runtime they pull, and a package needing torch."""
    specs = [
        torch_spec(version, "cuda"),
        WheelSpec(name="torchvision", version="0.28.0", requires=[f"torch=={version}"],
                  files={"torchvision/__init__.py": 'import torch\nBUILD = "cuda"\n'}),
        WheelSpec(name="cuda-toolkit", version="13.0.3", files={},
                  extras={"cublas": ["nvidia-cublas==13.0.0.19"], "cudart": ["nvidia-cuda-runtime==13.0.96"]}),
        nvidia_spec("nvidia-cublas", "13.0.0.19"),
        nvidia_spec("nvidia-cuda-runtime", "13.0.96"),
        nvidia_spec("nvidia-cudnn-cu13", "9.13.0.50"),
        nvidia_spec("nvidia-nccl-cu13", "2.28.3"),
        WheelSpec(name="cuda-bindings", version="13.0.3", files={"cuda/bindings/__init__.py": ""}, top_level=["cuda"]),
        WheelSpec(name="triton", version="3.7.1",
                  files={"triton/__init__.py": "", "triton/_C/libtriton.so": b"\x7fELF"}),
        WheelSpec(name="filelock-fake", version="3.16.1", files={"filelock_fake/__init__.py": ""}),
        WheelSpec(name="sentence-transformers", version="5.0.0", requires=["torch>=1.11.0"],
                  files={"sentence_transformers/__init__.py": "import torch\n"}),
    ]
    return {spec.name: build_wheel(spec, out_dir) for spec in specs}


def torch_cpu_index(out_dir: Path, version: str = "2.13.0") -> dict[str, Path]:
    """A fake PyTorch CPU index: +cpu torch and torchvision, and a release built for CPython 3.11 only."""
    specs = [
        torch_spec(f"{version}+cpu", "cpu"),
        WheelSpec(name="torchvision", version="0.28.0+cpu", requires=[f"torch=={version}"],
                  files={"torchvision/__init__.py": 'import torch\nBUILD = "cpu"\n'}),
        WheelSpec(name="torchvision", version="0.27.0+cpu", requires=["torch==2.12.0"],
                  files={"torchvision/__init__.py": 'import torch\nBUILD = "cpu"\n'}),
        torch_spec("2.12.0+cpu", "cpu", tag="cp311-cp311-manylinux_2_28_x86_64"),
    ]
    return {f"{spec.name}-{spec.version}": build_wheel(spec, out_dir) for spec in specs}
