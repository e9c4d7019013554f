"""The ONNX converter's export tools go into a build-only directory from slugslim's hashed lock.

Real pip (``--target``, ``--require-hashes``) installs wheels from the wheel factory, in a find-links
directory, for an app's venv that has torch and numpy; ``lib/onnx-export.lock`` itself is checked
for its shape.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from slugslim.core.config import Config
from slugslim.core.context import FinishContext
from slugslim.core.errors import NotShipped
from slugslim.core.installed import read_dists
from slugslim.deps import requirements
from slugslim.finish.runtime import tools
from tests.wheelfactory import WheelSpec, build_wheel, hashed_lock

pytestmark = pytest.mark.usefixtures("isolated_pip")


def _spec(name: str, version: str, requires: list[str] | None = None) -> WheelSpec:
    module = name.replace("-", "_")
    return WheelSpec(name=name, version=version, requires=requires or [],
                     files={f"{module}/__init__.py": f"VERSION = {version!r}\n"})


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("export-wheels")
    specs = [_spec("onnx", "1.23.2", ["numpy", "protobuf"]), _spec("onnx-ir", "1.1.0", ["onnx", "numpy"]),
             _spec("onnxscript", "0.7.2", ["onnx", "onnx-ir", "numpy"]), _spec("protobuf", "7.36.2"),
             _spec("numpy", "2.4.6"), _spec("torch", "2.13.0", ["numpy"])]
    return {s.name: build_wheel(s, out) for s in specs}


@pytest.fixture
def ctx(tmp_path: Path, wheels: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> FinishContext:
    """An app whose Python has torch and numpy; pip finds the wheels in their directory only."""
    build = tmp_path / "build"
    venv.create(build / ".heroku" / "python", with_pip=False, symlinks=True)
    python = build / ".heroku" / "python" / "bin" / "python"
    site = next((build / ".heroku" / "python" / "lib").glob("python3.*/site-packages"))
    directory = wheels["numpy"].parent
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                    "--find-links", str(directory), "torch"], check=True, capture_output=True)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(directory))
    return FinishContext(build_dir=build, cache_dir=tmp_path / "cache", env={}, config=Config(), python=python,
                         site_packages=site)


def _lock(tmp_path: Path, wheels: list[Path]) -> Path:
    return hashed_lock(tmp_path / "onnx-export.lock", wheels)


def _tree(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in directory.rglob("*") if p.is_file()}


def test_the_tools_go_into_the_build_cache_from_the_lock_and_what_the_app_has_stays_out(
        ctx: FinishContext, wheels: dict[str, Path], tmp_path: Path) -> None:
    assert ctx.site_packages is not None
    site_before = _tree(ctx.site_packages)
    lock = _lock(tmp_path, list(wheels.values()))
    target = tools.export_tools_dir(ctx, tmp_path / "scratch")
    assert target == tmp_path / "cache" / "slugslim" / "onnx-export" / ctx.site_packages.parent.name
    got = tools.install(ctx, "onnxscript", timeout=120, lock=lock, target=target)
    assert (got.added, got.version, got.locked) == (["onnx", "onnx-ir", "onnxscript", "protobuf"], "0.7.2", True)
    # The app's numpy is not put there a second time, and its site-packages is as it was.
    assert not list(target.glob("numpy*")) and _tree(ctx.site_packages) == site_before
    shown = subprocess.run([str(ctx.python), "-c", "import onnx, onnxscript, numpy, torch\n"
                            "print(onnxscript.__file__); print(numpy.__file__)"],
                           env=tools.export_tools_env(ctx, target), capture_output=True, text=True, check=True)
    tools_file, numpy_file = shown.stdout.split()
    assert Path(tools_file).is_relative_to(target) and Path(numpy_file).is_relative_to(ctx.site_packages)


def test_the_next_build_reuses_the_directory_and_a_different_choice_replaces_it(
        ctx: FinishContext, wheels: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "tools"
    lock = _lock(tmp_path, list(wheels.values()))
    tools.install(ctx, "onnxscript", timeout=120, lock=lock, target=target)
    first = (target / "onnx" / "__init__.py").stat().st_ino
    tools.install(ctx, "onnxscript", timeout=120, lock=lock, target=target)
    assert (target / "onnx" / "__init__.py").stat().st_ino == first
    # onnx alone is another choice: the directory holds that, and nothing of the earlier one.
    got = tools.install(ctx, "onnx", timeout=120, lock=lock, target=target)
    assert got.added == ["onnx", "protobuf"] and sorted(read_dists(target)) == ["onnx", "protobuf"]


def test_a_wheel_whose_hash_the_lock_does_not_list_is_refused_and_nothing_is_left(
        ctx: FinishContext, wheels: dict[str, Path], tmp_path: Path) -> None:
    assert ctx.site_packages is not None
    site_before = _tree(ctx.site_packages)
    # The lock was made from another build of onnx 1.23.2 than the one pip finds.
    other = build_wheel(WheelSpec(name="onnx", version="1.23.2", requires=["numpy", "protobuf"],
                                  files={"onnx/__init__.py": "TAMPERED = False\n"}), tmp_path / "other")
    lock = _lock(tmp_path, [other, *(w for n, w in wheels.items() if n != "onnx")])
    target = tmp_path / "tools"
    with pytest.raises(NotShipped, match=r"(?s)pip could not install onnxscript.*Expected sha256"):
        tools.install(ctx, "onnxscript", timeout=120, lock=lock, target=target)
    assert not target.exists() and _tree(ctx.site_packages) == site_before


def test_slugslims_own_export_lock_pins_onnx_and_onnxscript_with_hashes() -> None:
    pins = [e for e in requirements.read(tools.EXPORT_LOCK).entries if e.requirement is not None]
    assert pins and all(e.hashes and str(e.requirement.specifier).startswith("==") for e in pins if e.requirement)
    wanted = {str(e.requirement) for e in requirements.read(tools.EXPORT_LOCK.with_suffix(".in")).entries
              if e.requirement}
    assert wanted == {f"onnx=={tools.locked_version('onnx', tools.EXPORT_LOCK)}",
                      f"onnxscript=={tools.locked_version('onnxscript', tools.EXPORT_LOCK)}"}
    assert {"onnx-ir", "protobuf", "ml-dtypes"} <= {e.name for e in pins}
