"""The prepare phase fails open, as the finish phase does: a step that raises is a warning naming it, the
files it may have written are back as the user wrote them, byte for byte, and the build goes on."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from slugslim.core import failopen
from slugslim.prepare import phase
from tests.conftest import HerokuBuild, write_app
from tests.heroku.build import Build
from tests.wheelfactory import build_wheel, sha256_of, tensorflow_cpu_spec, tensorflow_spec

HOOK = "#!/usr/bin/env bash\necho app hook ran\n"
MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"  # the app's Python in the emulated build
TAG = f"cp{MINOR.replace('.', '')}"
APP = {
    "requirements.txt": "# the app\r\n-r requirements/base.txt\r\ntensorflow==2.21.0\r\n",
    "requirements/base.txt": "flask-fake==3.0.0\n",
    "app.py": "import tensorflow\n",
    "bin/post_compile": HOOK,
}


def digest(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and mode."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_a_backup_puts_files_back_byte_for_byte_and_removes_what_was_created(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "tensorflow\n", "lock.txt": "x==1\n", "keep/me": "1"})
    (app / "lock.txt").chmod(0o600)
    os.utime(app / "lock.txt", ns=(1_000_000_000, 2_000_000_000))
    (app / "link").symlink_to("requirements.txt")
    (tmp_path / "outside").write_text("outside\n")
    before = digest(app)
    backup = failopen.Backup(app, [Path("requirements.txt"), app / "lock.txt", Path("link"), Path(".python-version"),
                                   Path("bin"), Path("bin/post_compile"), Path("../outside")])

    (app / "requirements.txt").write_text("tensorflow-cpu\n")
    (app / "lock.txt").unlink()
    (app / "lock.txt").mkdir()
    (app / "link").unlink()
    (app / "link").write_text("now a file\n")
    (app / ".python-version").write_text("3.11\n")
    (app / "bin").mkdir()
    (app / "bin/post_compile").write_text(HOOK)
    (tmp_path / "outside").write_text("changed\n")
    backup.restore()

    assert digest(app) == before
    assert (app / "lock.txt").stat().st_mtime_ns == 2_000_000_000
    assert os.readlink(app / "link") == "requirements.txt"
    assert not (app / ".python-version").exists() and not (app / "bin").exists()
    assert (tmp_path / "outside").read_text() == "changed\n"  # never taken: outside the app


def test_a_step_that_raises_is_undone_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(failopen.FAULT_VAR, raising=False)
    app = write_app(tmp_path, {"requirements.txt": "tensorflow\n"})
    skipped: dict[str, str] = {}

    def half_done() -> None:
        (app / "requirements.txt").write_text("tensorflow-cpu\n")
        raise KeyError("boom")

    backup = failopen.Backup(app, [Path("requirements.txt")])
    assert failopen.guard("the CPU swap", half_done, {}, undo=backup.restore, skipped=skipped) is None
    assert (app / "requirements.txt").read_text() == "tensorflow\n"
    assert skipped == {"the CPU swap": "KeyError: 'boom'"}
    err = capsys.readouterr().err
    assert " !     Warning: slugslim skipped the CPU swap, and the build goes on without it." in err
    assert "Anything this step had changed was put back." in err

    monkeypatch.setenv(failopen.FAULT_VAR, "the CPU swap")
    assert failopen.guard("the CPU swap", lambda: 42, {}) is None
    assert failopen.guard("another step", lambda: 42, {}) == 42
    assert f"{failopen.FAULT_VAR} names the step 'the CPU swap'" in capsys.readouterr().err


@pytest.fixture
def tagged_env(tmp_path: Path, wheelhouse: Path, offline_env: dict[str, str]) -> dict[str, str]:
    """TensorFlow 2.21.0 with wheels for the app's Python only: the preflight writes .python-version for it."""
    house = tmp_path / "tagged-wheels"
    shutil.copytree(wheelhouse, house, ignore=shutil.ignore_patterns("tensorflow-*", "tensorflow_cpu-*"))
    for spec in (tensorflow_spec("2.21.0"), tensorflow_cpu_spec("2.21.0")):
        spec.tag = f"{TAG}-{TAG}-manylinux_2_17_x86_64.manylinux2014_x86_64"
        build_wheel(spec, house)
    return {"PIP_FIND_LINKS": offline_env["PIP_FIND_LINKS"].replace(str(wheelhouse), str(house))}


def as_written(build: Build, app: Path, *names: str) -> bool:
    return all((build.build_dir / n).read_bytes() == (app / n).read_bytes() for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("step", [*phase.STEPS, phase.WHOLE])
def test_a_fault_in_each_prepare_step_leaves_its_files_as_written_and_the_build_passes(
        tmp_path: Path, heroku_build: HerokuBuild, tagged_env: dict[str, str], step: str) -> None:
    app = write_app(tmp_path / "app", APP)
    (app / "bin/post_compile").chmod(0o755)
    build = heroku_build(app, env={**tagged_env, failopen.FAULT_VAR: step}, slug=False)
    assert build.ok, build.log
    assert f" !     Warning: slugslim skipped {step}, and the build goes on without it." in build.log
    assert f"InjectedFault: {failopen.FAULT_VAR} names the step '{step}'" in build.log
    assert "app hook ran" in build.log
    assert ("The slug is not slimmed in this build" in build.log) == (step == phase.HOOK)
    assert (build.build_dir / "bin/post_compile").read_bytes() == HOOK.encode()
    python_version = (build.build_dir / ".python-version")
    requirements = ("requirements.txt", "requirements/base.txt")
    cpu = "tensorflow_cpu-2.21.0.dist-info" in {p.name for p in build.site_packages().glob("*.dist-info")}
    if step == phase.WHOLE:
        # Every step ran, then all of it was put back: heroku/python alone, then nothing of slugslim's.
        assert "wrote .python-version" in build.log and "tensorflow-cpu==2.21.0" in build.log
        app_files = digest(app)
        assert {n: v for n, v in digest(build.build_dir).items() if n in app_files} == app_files
        assert not python_version.exists() and not (build.build_dir / ".slugslim").exists()
        assert "Nothing in your app was changed" in build.log and "Slimming the slug" not in build.log
        assert not cpu
        return
    assert "Slimming the slug" in build.log or step == phase.HOOK
    if step == phase.PREFLIGHT:
        assert "wrote .python-version" in build.log and not python_version.exists()
    else:
        assert python_version.read_text() == f"{MINOR}\n"
    if step == phase.SWAP:
        # The swap had rewritten both files; the fix-up replaces the GPU build after the install instead.
        assert "requirements.txt line 3: tensorflow==2.21.0 → tensorflow-cpu==2.21.0" in build.log
        assert as_written(build, app, *requirements)
        assert "tensorflow 2.21.0 (installed from pip) → tensorflow-cpu 2.21.0" in build.log
    elif step != phase.PREFLIGHT:
        assert (build.build_dir / "requirements.txt").read_bytes() != (app / "requirements.txt").read_bytes()
        assert cpu
    if step == phase.HOOK:
        assert "Installed a bin/post_compile hook" in build.log  # then undone: heroku/python ran the app's own
        assert "Slimming the slug" not in build.log and "The slug is not slimmed in this build" in build.log
        assert not (build.build_dir / ".slugslim").exists()
    if step == phase.CACHE:
        # heroku/python installs everything afresh, and the next build has no record to compare with.
        assert not (build.cache_dir / "slugslim/settings-fingerprint.json").exists()


@pytest.mark.slow
def test_a_hashed_requirements_file_whose_cpu_build_cannot_be_found_builds_as_written(
        tmp_path: Path, heroku_build: HerokuBuild, wheelhouse: Path, offline_env: dict[str, str]) -> None:
    no_cpu = tmp_path / "wheels-without-tensorflow-cpu"
    shutil.copytree(wheelhouse, no_cpu, ignore=shutil.ignore_patterns("tensorflow_cpu-*"))
    hashes = {name: sha256_of(next(wheelhouse.glob(f"{name}-*.whl"))) for name in ("tensorflow", "numpy_fake")}
    text = (f"tensorflow==2.21.0 --hash=sha256:{hashes['tensorflow']}\n"
            f"numpy-fake==1.26.4 --hash=sha256:{hashes['numpy_fake']}\n")
    app = write_app(tmp_path / "app", {"requirements.txt": text, "app.py": "import tensorflow\n"})
    links = {"PIP_FIND_LINKS": offline_env["PIP_FIND_LINKS"].replace(str(wheelhouse), str(no_cpu))}
    build = heroku_build(app, env=links, slug=False)
    assert build.ok, build.log
    assert (" !     Warning: slugslim skipped switching GPU builds to CPU builds in your dependency files, and the "
            "build goes on without it.") in build.log
    assert "Cannot switch to the CPU build in a hashed requirements file." in build.log
    assert (build.build_dir / "requirements.txt").read_text() == text
    assert "-----> Slimming the slug" in build.log
