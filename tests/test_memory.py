"""Web processes that fit the dyno: the .profile.d script with heroku/python's, in both orders, and the build step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slugslim.core.config import Config, MemoryConfig
from slugslim.core.context import FinishContext
from slugslim.core.plan import Plan, PruneResult
from slugslim.core.results import Results, RuntimeResult
from slugslim.finish import memory
from tests.conftest import write_app
from tests.heroku import real
from tests.heroku.appdir import at_app
from tests.heroku.build import REPO
from tests.sitefactory import pip_install
from tests.wheelfactory import WheelSpec, build_wheel

EMULATED = REPO / "tests/heroku/python-buildpack/vendor/WEB_CONCURRENCY.sh"
MIB = 1 << 20


@pytest.fixture(scope="module", params=["emulated", "v351"])
def heroku_script(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """heroku/python's WEB_CONCURRENCY.sh: the tests' restatement, and the real v351 file when it is on this machine."""
    if request.param == "emulated":
        return EMULATED
    script = real.read("vendor/WEB_CONCURRENCY.sh", "the real heroku/python's script is not tested")
    target = tmp_path_factory.mktemp("v351") / "WEB_CONCURRENCY.sh"
    target.write_bytes(script)
    return target


def dyno(tmp_path: Path, heroku: Path, order: str, process_mb: int, *, cgroup_mb: int | None = None,
         dyno_ram: int | None = None, user_value: str | None = None, name: str = "web.1") -> dict[str, str]:
    """Source both scripts as Heroku does at dyno start (in ``order``), with a faked memory limit."""
    app = tmp_path / "app"
    (app / ".profile.d").mkdir(parents=True, exist_ok=True)
    ours = memory.install_script(app, process_mb)
    scripts = [heroku, ours] if order == "heroku-first" else [ours, heroku]
    cgroup = ""
    if cgroup_mb is not None:
        cgroup = (f"mkdir -p /sys/fs/cgroup/memory && "
                  f"echo {cgroup_mb * MIB} > /sys/fs/cgroup/memory/memory.limit_in_bytes && ")
    exports = "".join(f"export {k}={v}; " for k, v in (("DYNO_RAM", dyno_ram), ("WEB_CONCURRENCY", user_value))
                      if v is not None)
    body = (cgroup + exports
            + "".join(f"source {s}; " for s in scripts)
            + 'echo "WC=${WEB_CONCURRENCY:-} BY=${WEB_CONCURRENCY_SET_BY:-} NPROC=$(nproc)"')
    done = subprocess.run(at_app(app, ["bash", "-c", body], tmpfs=["/sys/fs/cgroup"]), capture_output=True, text=True,
                          check=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(app), "DYNO": name})
    values = dict(item.split("=", 1) for item in done.stdout.split())
    values["stderr"] = done.stderr
    return values


@pytest.mark.parametrize("order", ["heroku-first", "slugslim-first"])
@pytest.mark.parametrize("source", ["cgroup", "DYNO_RAM"])
@pytest.mark.parametrize(("ram", "process_mb", "expected"), [
    (512, 536, 1), (1024, 536, 1),  # TensorFlow: heroku/python alone would start 2 and 4
    (1024, 300, 3),
    (512, 100, 2), (1024, 100, 4),  # small processes: never more than heroku/python's own value
])
def test_fits_the_dyno_in_either_order(tmp_path: Path, heroku_script: Path, order: str, source: str, ram: int,
                                       process_mb: int, expected: int) -> None:
    memory_source = {"cgroup_mb": ram} if source == "cgroup" else {"dyno_ram": ram}
    seen = dyno(tmp_path, heroku_script, order, process_mb, **memory_source)  # type: ignore[arg-type]
    assert int(seen["WC"]) == min(expected, memory.heroku_concurrency(ram, int(seen["NPROC"])))
    assert seen["BY"] == "slugslim"
    ours = [line for line in seen["stderr"].splitlines() if line.startswith("slugslim:")]
    assert ours == [f"slugslim: Setting WEB_CONCURRENCY to {seen['WC']}: one web process of this app needs about "
                    f"{process_mb} MB and the dyno has {ram} MB."]


@pytest.mark.parametrize("order", ["heroku-first", "slugslim-first"])
@pytest.mark.parametrize("ram", [512, 1024])
def test_a_users_web_concurrency_is_kept(tmp_path: Path, heroku_script: Path, order: str, ram: int) -> None:
    seen = dyno(tmp_path, heroku_script, order, 536, cgroup_mb=ram, dyno_ram=ram, user_value="3")
    assert (seen["WC"], seen["BY"]) == ("3", "")
    assert f"3 web processes of about 536 MB need more than this dyno's {ram} MB" in seen["stderr"]


def test_quiet_on_other_dynos(tmp_path: Path) -> None:
    seen = dyno(tmp_path, EMULATED, "slugslim-first", 536, cgroup_mb=512, name="run.1234")
    assert (seen["WC"], seen["stderr"]) == ("1", "")


def test_no_memory_known_leaves_heroku_pythons_value(tmp_path: Path) -> None:
    seen = dyno(tmp_path, EMULATED, "heroku-first", 536)
    assert seen["WC"] == ""
    assert "slugslim: Couldn't determine available memory" in seen["stderr"]


def peak_of(peak: int) -> PruneResult:
    """What the prune step records after its import check peaked at ``peak`` bytes."""
    return PruneResult("pruned", Plan(root=""), verify_peak_rss=peak)


def context(tmp_path: Path, peak: int, enabled: bool = True) -> FinishContext:
    return FinishContext(build_dir=tmp_path, cache_dir=None, env={}, config=Config(memory=MemoryConfig(enabled)),
                         python=Path(sys.executable), site_packages=None, results=Results(prune=peak_of(peak)))


def test_the_build_step_warns_when_one_process_does_not_fit_512_mb(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    result = memory.run(context(tmp_path, 496 * MIB))  # tensorflow-cpu 2.21.0 + flask, measured
    assert (result.measured_mb, result.process_mb) == (496, 546)  # plus the headroom for serving
    assert [(d["memory_mb"], d["heroku_python"], d["web_concurrency"]) for d in result.per_dyno] == [
        (512, 2, 1), (1024, 4, 1), (2560, 5, 4), (14336, 17, 17)]
    assert 'process_mb="546"' in (tmp_path / ".profile.d/slugslim-memory.sh").read_text()
    out, err = capsys.readouterr()
    assert "One web process needs about 546 MB (the import check: 496 MB" in out
    assert "1 on Eco, Basic, Standard-1X (512 MB)" in out
    assert "needs about 546 MB, more than the 512 MB" in err
    assert "larger dyno" in err and "lazily" in err and "ai-edge-litert" in err
    assert json.dumps(result.to_json())


def test_a_process_that_fits_gets_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    memory.run(context(tmp_path, 200 * MIB))
    assert capsys.readouterr().err == ""


def test_memory_false_turns_it_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = memory.run(context(tmp_path, 536 * MIB, enabled=False))
    assert not result.enabled and not (tmp_path / ".profile.d").exists()
    assert capsys.readouterr() == ("", "")


def test_without_the_prune_step_the_memory_step_runs_the_import_check_itself(tmp_path: Path) -> None:
    """A real interpreter importing a real installed package that holds 80 MB: the peak says so."""
    wheels = tmp_path / "wheels"
    build_wheel(WheelSpec(name="memhog", files={"memhog/__init__.py": "HELD = b'x' * 80_000_000\n"}), wheels)
    venv = tmp_path / "app/.heroku/python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = pip_install(wheels, venv, ["memhog"])
    write_app(tmp_path / "app", {"app.py": "import memhog\n"})
    ctx = FinishContext(build_dir=tmp_path / "app", cache_dir=None, env={}, config=Config(),
                        python=venv / "bin/python", site_packages=site_packages)
    peak, how = memory.measured(ctx)
    assert how == "the import check"
    assert 80 * 10**6 < peak < 400 * MIB
    ctx.results.prune = peak_of(123 * MIB)
    assert memory.measured(ctx) == (123 * MIB, "the import check")


def test_on_onnx_runtime_the_web_concurrency_comes_from_the_process_booted_on_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The runtime step booted the web process on torch (496 MB) and on ONNX Runtime (199 MB, as measured
    with all-MiniLM-L6-v2): a dyno runs the second, so it sizes WEB_CONCURRENCY; the prune booted none."""
    booted = RuntimeResult(engine="onnx", status="onnx",
                           memory={"torch": 496 * MIB, "onnx": 199 * MIB, "measured_by": "the booted web process"})
    ctx = FinishContext(build_dir=tmp_path, cache_dir=None, env={}, config=Config(), python=Path(sys.executable),
                        site_packages=None, results=Results(prune=peak_of(0), runtime=booted))
    result = memory.run(ctx)
    assert result.measured_mb == 199
    assert [(d["memory_mb"], d["web_concurrency"]) for d in result.per_dyno][:2] == [(512, 2), (1024, 4)]
    assert "(the booted web process: 199 MB" in capsys.readouterr().out
    kept = RuntimeResult(engine="onnx", status="torch", memory={"torch": 496 * MIB, "onnx": 199 * MIB})
    ctx.results = Results(prune=peak_of(0), runtime=kept)  # PyTorch kept: its process is what runs
    assert memory.measured(ctx)[0] != 199 * MIB
