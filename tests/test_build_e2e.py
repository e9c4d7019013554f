"""The foundation, end to end through the emulated Heroku build (slugslim + heroku/python)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path

import yaml

from tests.conftest import HerokuBuild, write_app
from tests.heroku.build import PYTHON_BUILDPACK, SLUGSLIM, run_build

APP_HOOK = """#!/usr/bin/env bash
set -euo pipefail
echo "app hook ran in $(pwd) with GREETING=${GREETING:-unset}"
test -x .heroku/python/bin/python
echo "python on PATH: $(command -v python)"
touch hook-was-here
"""


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.S_IMODE(path.stat().st_mode)


def test_before_heroku_python_installs_hook_and_removes_it(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "flask-fake==3.0.0\n", "app.py": "import flask_fake\n"})
    build = heroku_build(app)
    assert build.ok, build.log
    log = build.log
    # slugslim's prepare runs first, then heroku/python, then our hook.
    assert log.index("-----> Preparing a slim slug (slugslim)") < log.index("Installing dependencies using")
    assert log.index("Installing dependencies using") < log.index("Running bin/post_compile hook")
    assert "       -----> Slimming the slug" in log  # heroku/python indents hook output
    # Every step says how long it took.
    assert re.search(r"-----> Preparing a slim slug \(slugslim\)\n(?:.*\n)*?\s+Done \(\d+\.\ds\)", log)
    assert re.search(r"-----> Pruning site-packages\n(?:.*\n)*?\s+Done \(\d+\.\ds\)", log)
    assert re.search(r"slugslim finished in \d+\.\ds", log)
    # The app had no hook: ours is gone, and so is the bin/ dir we created for it.
    assert not (build.build_dir / "bin").exists()
    assert not (build.build_dir / ".slugslim" / "state.json").exists()
    assert build.slug and build.slug_bytes > 0
    names = subprocess.run(["tar", "-tzf", str(build.slug)], capture_output=True, text=True, check=True).stdout
    assert "./app/app.py" in names.splitlines()
    assert "./app/bin/post_compile" not in names


def test_app_hook_runs_first_and_comes_back_byte_identical(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "flask-fake==3.0.0\n", "bin/post_compile": APP_HOOK})
    (app / "bin/post_compile").chmod(0o640)  # not executable in the repo: heroku/python chmods it
    before = _digest(app / "bin/post_compile")
    # Of the config vars, heroku/python gives its pip only PIP_EXTRA_INDEX_URL: this one would stop it.
    build = heroku_build(app, config_vars={"GREETING": "hello", "PIP_REQUIRE_VIRTUALENV": "true"}, slug=False)
    assert build.ok, build.log
    assert "app hook ran in" in build.log and "GREETING=hello" in build.log
    assert "python on PATH: /app/.heroku/python/bin/python" in build.log
    assert (build.build_dir / "hook-was-here").exists()
    assert build.log.index("app hook ran") < build.log.index("-----> Slimming the slug")
    assert _digest(build.build_dir / "bin/post_compile") == before


def test_failing_app_hook_fails_the_build_as_before(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    hook = "#!/usr/bin/env bash\necho 'migrations failed' >&2\nexit 3\n"
    app = write_app(tmp_path / "app", {"requirements.txt": "flask-fake==3.0.0\n", "bin/post_compile": hook})
    (app / "bin/post_compile").chmod(0o755)
    build = heroku_build(app, slug=False)
    assert not build.ok
    assert "migrations failed" in build.log
    assert "Error: Failed to run the bin/post_compile script." in build.log
    assert "Slimming the slug" not in build.log
    assert (build.build_dir / "bin/post_compile").read_text() == hook


def test_after_heroku_python_runs_both_phases(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "flask-fake==3.0.0\n", "bin/post_compile": APP_HOOK})
    build = heroku_build(app, buildpacks=(PYTHON_BUILDPACK, SLUGSLIM), slug=False)
    assert build.ok, build.log
    assert build.log.index("app hook ran") < build.log.index("-----> Preparing a slim slug (slugslim)")
    assert "heroku/python has already installed the app: slimming it now" in build.log
    assert "-----> Slimming the slug" in build.log
    assert "slugslim-hook" not in (build.build_dir / "bin/post_compile").read_text()


def test_second_build_reuses_tools_and_heroku_python_cache(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "tensorflow-cpu==2.21.0\n"})
    first = heroku_build(app, slug=False)
    assert first.ok, first.log
    second = heroku_build(app, slug=False)
    assert second.ok, second.log
    assert "Using cached build tools" in second.log
    assert "-----> Restoring cache" in second.log
    assert "Requirement already satisfied: tensorflow-cpu==2.21.0" in second.log


def test_disable_config_var_does_nothing(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "flask-fake==3.0.0\n", "slugslim.yml": "prune: [oops\n"})
    build = heroku_build(app, config_vars={"SLUGSLIM_DISABLE": "1"}, slug=False)
    assert build.ok, build.log
    assert build.log.count("slugslim is turned off by the SLUGSLIM_DISABLE config var") == 1
    assert "Slimming the slug" not in build.log
    assert not (build.build_dir / ".slugslim").exists()
    assert not (build.build_dir / "bin").exists()


def test_bad_config_fails_the_build_naming_the_key(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {
        "requirements.txt": "flask-fake==3.0.0\n",
        "slugslim.yml": "prune:\n  bytecode: imported\n  kepp: ['foo/*']\n",
    })
    build = heroku_build(app, slug=False)
    assert not build.ok
    assert " !     Error: Invalid slugslim configuration." in build.log
    assert "In slugslim.yml line 3:" in build.log
    assert "Unknown key 'prune.kepp'." in build.log
    assert "Did you mean 'keep'?" in build.log
    assert "Installing dependencies" not in build.log  # failed before heroku/python ran


def test_no_pip_bootstrap(tmp_path: Path, offline_env: dict[str, str], tools_wheels: Path,
                          stack_python: tuple[str, dict[str, str]]) -> None:
    """heroku-24's python3 has no pip: a pip-less python3 first on PATH, pip from a local wheel."""
    venv = tmp_path / "nopip"
    subprocess.run([stack_python[0], "-m", "venv", "--without-pip", str(venv)], check=True)
    assert subprocess.run([str(venv / "bin/python3"), "-m", "pip", "--version"], capture_output=True).returncode != 0
    pip_wheel = next(tools_wheels.glob("pip-*.whl"))
    app = write_app(tmp_path / "app", {"requirements.txt": "flask-fake==3.0.0\n"})
    env = {**offline_env, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "SLUGSLIM_PIP": str(pip_wheel)}
    build = run_build(app, tmp_path / "work", env=env, buildpacks=(SLUGSLIM,), slug=False)
    assert build.ok, build.log
    assert "Installing build tools (pyyaml, packaging, pip-tools)" in build.log
    tools = next((build.cache_dir / "slugslim").glob("tools-*-py*"))
    assert (tools / "yaml").is_dir() and (tools / "piptools").is_dir() and (tools / ".complete").is_file()
    hook = (build.build_dir / "bin/post_compile").read_text()
    assert f"--python {venv}/bin/python3" in hook  # the pip-less interpreter runs slugslim


def test_never_creates_what_heroku_python_refuses(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "flask-fake==3.0.0\n"})
    build = heroku_build(app, buildpacks=(SLUGSLIM,), slug=False)
    assert build.ok, build.log
    for forbidden in (".heroku/python", "venv", ".venv", "Pipfile.lock", "poetry.lock", "uv.lock"):
        assert not (build.build_dir / forbidden).exists(), forbidden
    assert not (SLUGSLIM / "export").exists()


def test_detect_passes_for_python_apps_and_explains_otherwise(tmp_path: Path) -> None:
    for marker in ("requirements.txt", "uv.lock", "pyproject.toml", ".python-version", "manage.py"):
        app = write_app(tmp_path / marker.strip("."), {marker: ""})
        done = subprocess.run([str(SLUGSLIM / "bin/detect"), str(app)], capture_output=True, text=True)
        assert (done.returncode, done.stdout) == (0, "slugslim\n"), marker
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([str(SLUGSLIM / "bin/detect"), str(empty)], capture_output=True, text=True)
    assert done.returncode == 1 and "no Python app here" in done.stderr and done.stderr.count("\n") == 1


def test_release_prints_valid_empty_yaml(tmp_path: Path) -> None:
    done = subprocess.run([str(SLUGSLIM / "bin/release"), str(tmp_path)], capture_output=True, text=True, check=True)
    assert yaml.safe_load(done.stdout) == {}


def test_cli_help_lists_the_local_commands(tmp_path: Path, offline_env: dict[str, str]) -> None:
    # Its tools come from the local wheels, with the local pip where python3 has none.
    env = {**os.environ, **offline_env, "SLUGSLIM_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([str(SLUGSLIM / "bin/slugslim"), "--help"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "analyze" in done.stdout and "prune" in done.stdout
