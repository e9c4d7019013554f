"""What the runtime step installs into the app comes from slugslim's hashed lock of runtime packages.

Real pip installs from a local index on 127.0.0.1 that serves ai-edge-litert at two versions and
numpy at two. The lock the tests point the step at has the hashes of these wheels (the real
``lib/runtime.lock`` has those of the real ones, checked here for its shape); the app's venv, the
fake converter and the step are ``test_runtime_ship``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from slugslim.core import engines
from slugslim.core.errors import NotShipped
from slugslim.core.installed import canonical, read_dists
from slugslim.deps import requirements
from slugslim.finish.runtime import runtime, tools
from tests.localindex import serve
from tests.test_runtime_ship import litert_app, tensorflow_app_wheels
from tests.wheelfactory import WheelSpec, build_wheel, hashed_lock

pytestmark = pytest.mark.usefixtures("isolated_pip")

APP_CODE = "import numpy\nfrom slugslim_models import load_model\n"


@pytest.fixture(scope="module")
def app_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tensorflow_app_wheels(tmp_path_factory.mktemp("app-wheels"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The index's wheels by 'name-version': the pinned ai-edge-litert and a newer one, numpy at the
    lock's version and at the app's."""
    out = tmp_path_factory.mktemp("index")
    specs = [WheelSpec(name="ai-edge-litert", version=v, requires=["numpy", "tqdm"],
                       files={"ai_edge_litert/__init__.py": f"VERSION = {v!r}\n"}) for v in ("2.3.0", "2.4.0")]
    specs += [WheelSpec(name="numpy", version=v, files={"numpy/__init__.py": ""}) for v in ("2.2.6", "2.4.6")]
    specs.append(WheelSpec(name="tqdm", version="4.67.1", files={"tqdm/__init__.py": ""}))
    return {f"{s.name}-{s.version}": build_wheel(s, out) for s in specs}


@pytest.fixture
def index(served: dict[str, Path]) -> Iterator[str]:
    with serve(next(iter(served.values())).parent) as url:
        yield url


def _from_index(monkeypatch: pytest.MonkeyPatch, url: str, lock: Path) -> None:
    """The build's pip reads the local index; the step reads ``lock``."""
    for name in ("PIP_NO_INDEX", "PIP_FIND_LINKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setattr(tools, "LOCK", lock)


def test_the_pinned_version_is_installed_though_a_newer_one_is_served_and_the_apps_numpy_stays(
        tmp_path: Path, app_wheels: Path, served: dict[str, Path], index: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = litert_app(tmp_path, app_wheels, APP_CODE, monkeypatch)
    # The lock pins numpy 2.2.6; the app installed 2.4.6, which ai-edge-litert accepts: the app's stays.
    lock = hashed_lock(tmp_path / "lock.txt", [served[k] for k in ("ai-edge-litert-2.3.0", "numpy-2.2.6",
                                                                     "tqdm-4.67.1")])
    _from_index(monkeypatch, index, lock)
    got = tools.install(ctx, engines.LITERT.package, timeout=120)
    assert (got.added, got.version, got.locked) == (["ai-edge-litert", "tqdm"], "2.3.0", True)
    assert ctx.site_packages is not None
    dists = read_dists(ctx.site_packages)
    assert (dists["ai-edge-litert"].version, dists["numpy"].version) == ("2.3.0", "2.4.6")
    assert (ctx.site_packages / "ai_edge_litert" / "__init__.py").read_text() == "VERSION = '2.3.0'\n"


def test_a_dependency_the_lock_does_not_pin_is_named_and_nothing_is_installed(
        tmp_path: Path, app_wheels: Path, served: dict[str, Path], index: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = litert_app(tmp_path, app_wheels, APP_CODE, monkeypatch)
    _from_index(monkeypatch, index, hashed_lock(tmp_path / "lock.txt", [served["ai-edge-litert-2.3.0"]]))
    with pytest.raises(NotShipped, match=r"needs tqdm 4\.67\.1, which slugslim's lock of runtime packages does not"):
        tools.install(ctx, engines.LITERT.package, timeout=120)
    assert ctx.site_packages is not None and not {"ai-edge-litert", "tqdm"} & set(read_dists(ctx.site_packages))


def test_a_wheel_whose_hash_differs_from_the_lock_is_refused_and_the_app_keeps_tensorflow(
        tmp_path: Path, app_wheels: Path, served: dict[str, Path], index: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ctx = litert_app(tmp_path, app_wheels, APP_CODE, monkeypatch)
    # The lock was made from another build of ai-edge-litert 2.3.0 than the one the index serves.
    other = build_wheel(WheelSpec(name="ai-edge-litert", version="2.3.0", requires=["numpy", "tqdm"],
                                  files={"ai_edge_litert/__init__.py": "TAMPERED = False\n"}), tmp_path / "other")
    lock = hashed_lock(tmp_path / "lock.txt", [other, served["tqdm-4.67.1"]])
    _from_index(monkeypatch, index, lock)
    result = runtime.run(ctx)
    assert result.status == "tensorflow"
    assert result.reason.startswith("pip could not install ai-edge-litert") and "Expected sha256" in result.reason
    assert "kept TensorFlow" in capsys.readouterr().err
    assert ctx.site_packages is not None
    dists = read_dists(ctx.site_packages)
    assert {"tensorflow-cpu", "keras"} <= set(dists) and not {"ai-edge-litert", "tqdm"} & set(dists)
    assert not (ctx.build_dir / ".slugslim" / "runtime.json").exists()
    assert not list((ctx.build_dir / "models").glob("*.tflite"))
    assert (ctx.build_dir / "models" / "classifier.keras").is_file()


def test_runtime_litert_version_installs_that_version_unchecked_and_says_so(
        tmp_path: Path, app_wheels: Path, served: dict[str, Path], index: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ctx = litert_app(tmp_path, app_wheels, APP_CODE, monkeypatch)
    _from_index(monkeypatch, index, hashed_lock(tmp_path / "lock.txt", [served["ai-edge-litert-2.3.0"],
                                                                         served["tqdm-4.67.1"]]))
    ctx.config = replace(ctx.config, runtime=replace(ctx.config.runtime, litert_version="2.4.0"))
    result = runtime.run(ctx)
    assert result.status == "litert", result.reason
    assert sorted(result.installed) == ["ai-edge-litert", "tqdm"]
    out = capsys.readouterr().out
    assert "runtime.litert_version asks for ai-edge-litert 2.4.0: it comes from the package index" in out
    assert "Installed ai-edge-litert 2.4.0 (" in out and "hashes checked" not in out
    assert ctx.site_packages is not None
    dists = read_dists(ctx.site_packages)
    assert (dists["ai-edge-litert"].version, dists["numpy"].version) == ("2.4.0", "2.4.6")


def test_slugslims_own_lock_pins_litert_and_what_it_needs_with_hashes() -> None:
    pins = [e for e in requirements.read(tools.LOCK).entries if e.requirement is not None]
    assert pins and all(e.hashes and str(e.requirement.specifier).startswith("==") for e in pins if e.requirement)
    wanted = [str(e.requirement) for e in requirements.read(tools.LOCK.with_suffix(".in")).entries if e.requirement]
    assert wanted[0] == f"ai-edge-litert=={tools.locked_version(engines.LITERT.package)}"
    # One pin per Python where pip would choose differently (backports-strenum 1.3.1 is for 3.10 only).
    assert {str(e.requirement.marker) for e in pins if e.name == "backports-strenum" and e.requirement} == {
        'python_full_version < "3.11"', 'python_full_version >= "3.11"'}
    # analyze's plan, made before ai-edge-litert is installed, names what it needs: the lock has each.
    assert {canonical(n) for n in engines.LITERT.requires} <= {e.name for e in pins}


def test_the_lock_pins_the_onnx_runtime_per_python_and_the_install_asks_for_the_apps() -> None:
    """onnxruntime's wheels end at Python 3.10 with 1.24.3: the universal lock pins that for 3.10, 1.32.0 for
    the others, and the version slugslim installs is the one whose marker holds for the app's Python."""
    assert [tools.locked_version("onnxruntime", python=v) for v in ("3.10", "3.11", "3.12", "3.14")] == [
        "1.24.3", "1.32.0", "1.32.0", "1.32.0"]
    assert tools.locked_version("tokenizers", python="3.10") == tools.locked_version("tokenizers", python="3.13")
    pins = [e.name for e in requirements.read(tools.LOCK).entries if e.requirement is not None]
    assert {canonical(n) for n in (*engines.ONNX.packages, *engines.ONNX.requires)} <= set(pins)
