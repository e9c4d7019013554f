"""slugslim never makes a deploy fail that would pass without it: each finish step fails open, within a budget."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from slugslim.core.config import Config, VerifyConfig
from slugslim.core.context import FinishContext
from slugslim.core.errors import VerificationError
from slugslim.finish import phase as finish
from tests.conftest import HerokuBuild, write_app
from tests.heroku.build import run_build
from tests.modelservers import FileServer

# The app's own bin/post_compile runs just before slugslim's finish phase: it leaves the tree the
# way a real build can find it, with one fault in the way of each optional step.
FAULTS = """#!/usr/bin/env bash
set -euo pipefail
# pruning: a stale link where its quarantine goes, next to BUILD_DIR
ln -sfn /nonexistent "../.slugslim-quarantine-$(basename "$PWD")"
# models and the report: something else where their files go
mkdir -p .slugslim/models.json .slugslim/report.json
"""
STEPS = ("the CPU fix-up of GPU builds", "pruning site-packages", "taking models out of the slug", "the slug report")


def context(tmp_path: Path, config: Config | None = None, env: dict[str, str] | None = None) -> FinishContext:
    return FinishContext(build_dir=tmp_path, cache_dir=None, env=env or {}, config=config or Config(),
                         python=Path("/nonexistent/python"), site_packages=None)


def test_an_unexpected_error_is_a_warning_naming_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUILDPACK_XTRACE", raising=False)
    ctx = context(tmp_path)
    assert finish.guarded(ctx, "the slug report", lambda: (tmp_path / "missing").read_text()) is None
    err = capsys.readouterr().err
    assert " !     Warning: slugslim skipped the slug report, and the build goes on without it." in err
    assert "FileNotFoundError: [Errno 2] No such file or directory" in err
    assert "Traceback" not in err
    assert ctx.results.skipped["the slug report"].startswith("FileNotFoundError")
    assert finish.guarded(ctx, "a step", lambda: 42) == 42

    verbose = context(tmp_path, env={"BUILDPACK_XTRACE": "1"})
    finish.guarded(verbose, "the slug report", lambda: (tmp_path / "missing").read_text())
    assert "Traceback (most recent call last):" in capsys.readouterr().err


def test_only_what_the_user_made_strict_fails_the_build(tmp_path: Path) -> None:
    def strict() -> None:
        raise VerificationError(["import alpha: ModuleNotFoundError"])

    with pytest.raises(VerificationError):
        finish.guarded(context(tmp_path, Config(verify=VerifyConfig(strict=True))), "pruning site-packages", strict)


def test_a_used_up_budget_skips_the_step_unrun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = context(tmp_path, Config(budget=0))
    ctx.deadline = 0.0
    ran: list[int] = []
    assert finish.guarded(ctx, "taking models out of the slug", lambda: ran.append(1)) is None
    assert ran == []
    err = capsys.readouterr().err
    assert "Warning: slugslim skipped taking models out of the slug" in err
    assert "The time budget for slimming ran out" in err and "(the 'budget' setting" in err


@pytest.mark.slow
def test_a_fault_in_every_optional_step_leaves_a_consistent_slug(
        tmp_path: Path, heroku_build: HerokuBuild, wheelhouse: Path, offline_env: dict[str, str],
        file_server: FileServer) -> None:
    # The fix-up's install of tensorflow-cpu fails: the index does not have it (as in a network error).
    no_cpu = tmp_path / "wheels-without-tensorflow-cpu"
    shutil.copytree(wheelhouse, no_cpu, ignore=shutil.ignore_patterns("tensorflow_cpu-*"))
    links = {"PIP_FIND_LINKS": offline_env["PIP_FIND_LINKS"].replace(str(wheelhouse), str(no_cpu))}
    model = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 80
    app = write_app(tmp_path / "app", {
        "requirements.txt": "tf-keras==2.21.0\n",
        "app.py": "import tf_keras\n",
        "slugslim.yml": f"models:\n  source: {file_server.url}/models\n  upload: true\n  min_size: 0.01\n",
        "models/classifier.h5": model,
        "bin/post_compile": FAULTS,
    })
    build = heroku_build(app, env=links, slug=False)
    assert build.ok, build.log
    for step in STEPS:
        assert f" !     Warning: slugslim skipped {step}, and the build goes on without it." in build.log, step
    assert "Error: Could not replace a GPU build with its CPU build" not in build.log
    assert "Could not replace a GPU build with its CPU build." in build.log  # why, in the warning
    assert "installed the GPU build of TensorFlow" in build.log
    assert "Traceback" not in build.log and "Failed to run the bin/post_compile script" not in build.log
    assert "slugslim finished in" in build.log

    # Each step left things as they were: the GPU build works, nothing pruned, the model still in the slug.
    site = build.site_packages()
    python = build.build_dir / ".heroku/python/bin/python"
    done = subprocess.run([str(python), "-c", "import tf_keras, tensorflow; print(tensorflow.BUILD)"],
                          capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "gpu", done.stderr
    assert (site / "tensorflow/include/tensorflow/core/framework/tensor.h").is_file()
    assert (site / "tensorflow/python/kernel_tests/tests/test_math.py").is_file()
    assert (build.build_dir / "models/classifier.h5").read_bytes() == model
    assert not (build.build_dir / ".profile.d/slugslim-models.sh").exists()
    assert [p.name for p in build.build_dir.parent.glob(".slugslim-quarantine-*")] == [
        f".slugslim-quarantine-{build.build_dir.name}"]  # only the planted link
    assert (build.build_dir / "bin/post_compile").read_text() == FAULTS


@pytest.mark.slow
def test_the_budget_running_out_skips_what_is_left_and_puts_back_what_was_begun(
        tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {
        "requirements.txt": "tensorflow-cpu==2.21.0\n",
        "app.py": "import tensorflow\n",
        # The check that prunes are safe takes longer than the whole budget allows.
        "slugslim.yml": "budget: 3\nverify:\n  command: sleep 60\n",
    })
    build = heroku_build(app, slug=False)
    assert build.ok, build.log
    assert " !     Warning: slugslim skipped pruning site-packages, and the build goes on without it." in build.log
    assert "The time budget for slimming ran out" in build.log
    assert " !     Warning: slugslim skipped the slug report" in build.log
    assert "slugslim finished in" in build.log
    site = build.site_packages()
    assert (site / "tensorflow/include/tensorflow/core/framework/tensor.h").is_file()
    assert not list(build.build_dir.parent.glob(".slugslim-quarantine-*"))


def test_tools_that_cannot_be_set_up_skip_slugslim_and_the_app_builds(
        tmp_path: Path, offline_env: dict[str, str], stack_python: tuple[str, dict[str, str]]) -> None:
    # heroku-24's python3 has no pip, and the pip that arrives is not the one slugslim pins.
    venv = tmp_path / "nopip"
    subprocess.run([stack_python[0], "-m", "venv", "--without-pip", str(venv)], check=True)
    offline_env = {k: v for k, v in offline_env.items() if k != "SLUGSLIM_PIP"}  # so the zipapp is fetched
    fake = tmp_path / "pip.pyz"
    fake.write_bytes(b"not pip")
    hook = "#!/usr/bin/env bash\necho app hook ran\n"
    app = write_app(tmp_path / "app", {"requirements.txt": "flask-fake==3.0.0\n", "bin/post_compile": hook})
    env = {**offline_env, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "SLUGSLIM_PIP_ZIPAPP_URL": fake.as_uri()}
    build = run_build(app, tmp_path / "work", env=env, slug=False)
    assert build.ok, build.log
    assert " !     Warning: The downloaded pip did not match its expected checksum." in build.log
    assert " !     Warning: slugslim is skipped for this build." in build.log
    assert not list((build.cache_dir / "slugslim").glob("pip-*"))
    assert "Installing dependencies using" in build.log and "Slimming the slug" not in build.log
    assert "app hook ran" in build.log and (build.build_dir / "bin/post_compile").read_text() == hook


@pytest.mark.slow
def test_tools_gone_by_the_hook_skip_slugslim_and_the_app_hook_still_runs(
        tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {
        "requirements.txt": "flask-fake==3.0.0\n",
        "bin/pre_compile": '#!/usr/bin/env bash\nrm -rf "${CACHE_DIR}/slugslim"\n',
        "bin/post_compile": "#!/usr/bin/env bash\necho app hook ran\n",
    })
    (app / "bin/post_compile").chmod(0o644)
    build = heroku_build(app, slug=False)
    assert build.ok, build.log
    assert " !     Warning: slugslim is skipped for the rest of this build." in build.log
    assert "app hook ran" in build.log and "Slimming the slug" not in build.log
    hook = build.build_dir / "bin/post_compile"
    assert hook.read_text() == "#!/usr/bin/env bash\necho app hook ran\n" and hook.stat().st_mode & 0o777 == 0o644
    assert not (build.build_dir / ".slugslim").exists()
