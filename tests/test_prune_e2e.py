"""The verified prune inside the emulated Heroku build (slugslim + heroku/python + the hook)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HerokuBuild, write_app
from tests.heroku.build import PYTHON_BUILDPACK, SLUGSLIM
from tests.prunetree import specs, tree_digest
from tests.wheelfactory import build_wheel

REQUIREMENTS = "tensorflow-cpu==2.21.0\nlibclang==18.1.1\nalpha==1.0.0\n"
APP = "import tensorflow\nimport alpha\n"

# Runs as the app's own bin/post_compile, before slugslim's finish phase: records the tree
# the way tests.prunetree.tree_digest does, so the test can compare after a failed prune.
DIGEST_HOOK = r'''#!/usr/bin/env bash
set -euo pipefail
python - <<'PY'
import glob, hashlib, json, os, stat
root = glob.glob(".heroku/python/lib/python3.*/site-packages")[0]
out = {}
for top, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
        path = os.path.join(top, name)
        rel = os.path.relpath(path, root)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ["link", os.readlink(path)]
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ["dir", stat.S_IMODE(st.st_mode)]
        else:
            out[rel] = ["file", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                        hashlib.sha256(open(path, "rb").read()).hexdigest()]
    dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(top, d))]
json.dump(out, open("before-prune.json", "w"))
PY
'''


@pytest.fixture
def links(tmp_path: Path, offline_env: dict[str, str]) -> dict[str, str]:
    house = tmp_path / "prune-wheels"
    for spec in specs(tmp_path, with_elf=False):
        if spec.name in ("alpha", "libclang"):
            build_wheel(spec, house)
    return {"PIP_FIND_LINKS": f"{house} {offline_env['PIP_FIND_LINKS']}"}


def test_build_prunes_verified_and_a_cached_rebuild_finds_nothing(
        tmp_path: Path, heroku_build: HerokuBuild, links: dict[str, str]) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": REQUIREMENTS, "app.py": APP})
    build = heroku_build(app, env=links)
    assert build.ok, build.log
    assert "-----> Pruning site-packages" in build.log
    assert "Checked imports before pruning" in build.log and "alpha, tensorflow" in build.log
    site = build.site_packages()
    assert not (site / "tensorflow/include").exists()
    assert not (site / "tensorflow/python/kernel_tests/tests").exists()
    assert (site / "tensorflow/_api/v2/__internal__/test").is_dir()
    assert (site / "tensorflow/python/data/ops/test_mode.py").is_file()
    assert not (site / "clang").exists() and (site / "libclang-18.1.1.dist-info/RECORD").is_file()
    # bytecode policy 'distributions' (the default): alpha is imported, so all of its .pyc stay
    assert list((site / "alpha/__pycache__").glob("core.*.pyc"))
    assert list((site / "alpha/__pycache__").glob("unused.*.pyc"))
    assert not (build.build_dir.parent / f".slugslim-quarantine-{build.build_dir.name}").exists()
    names = subprocess.run(["tar", "-tzf", str(build.slug)], capture_output=True, text=True, check=True).stdout
    assert "tensorflow/include" not in names and "/clang/" not in names

    again = heroku_build(app, env={**links, "SLUGSLIM_DEBUG": "1"}, slug=False)
    assert again.ok, again.log
    assert "-----> Restoring cache" in again.log
    # The restored tree is the pruned one; only the bytecode pip's own run wrote again goes again.
    pruning = again.log[again.log.index("Pruning site-packages"):again.log.index("Memory per web process")]
    assert re.findall(r"^ +(\w+) +[\d.]+ [KM]?B +\(\d+ paths\)$", pruning, re.MULTILINE) == ["bytecode"], pruning
    removed = re.findall(r"^ +bytecode: (\S+) \(", pruning, re.MULTILINE)
    assert removed and all(path.startswith("pip/") for path in removed), pruning
    assert "Cleared heroku/python's cached packages" not in again.log

    # A setting changed after a cached build: what it no longer removes comes back.
    headers = heroku_build(app, env=links, config_vars={"SLUGSLIM_PRUNE_HEADERS": "false"}, slug=False)
    assert headers.ok, headers.log
    assert ("Cleared heroku/python's cached packages (the setting prune.headers changed), so that this build "
            "installs them in full") in headers.log
    assert "-----> Restoring cache" not in headers.log
    assert (headers.site_packages() / "tensorflow/include/tensorflow/core/framework/tensor.h").is_file()
    assert not (headers.site_packages() / "tensorflow/python/kernel_tests/tests").exists()


def test_build_rolls_back_byte_identical_and_names_the_culprit(
        tmp_path: Path, heroku_build: HerokuBuild, links: dict[str, str]) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": REQUIREMENTS, "app.py": APP,
                                       "bin/post_compile": DIGEST_HOOK})
    (app / "bin/post_compile").chmod(0o755)
    # A rule that breaks an import the app needs: verification fails, everything goes back,
    # bisecting blames the user rule, and the other rules are applied again and verified.
    build = heroku_build(app, env=links, config_vars={"SLUGSLIM_PRUNE_REMOVE": "alpha/core.py"}, slug=False)
    assert build.ok, build.log
    assert "Rule 'user' on package alpha broke your app" in build.log
    assert "import alpha: ImportError: cannot import name 'core'" in build.log
    site = build.site_packages()
    assert not (site / "tensorflow/include").exists()
    before = json.loads((build.build_dir / "before-prune.json").read_text())
    after = {k: list(v) for k, v in tree_digest(site).items()}
    # What the failed attempt had moved is back byte-identical (content, mode, mtime): every
    # file except those the final, verified prune removed.
    final = [p for p in before if not after.get(p)]
    assert "alpha/core.py" not in final and after["alpha/core.py"] == before["alpha/core.py"]
    kept = {p: v for p, v in before.items() if v[0] == "file" and p in after}
    assert {p: after[p] for p in kept} == kept
    assert not (build.build_dir.parent / f".slugslim-quarantine-{build.build_dir.name}").exists()


# The finish phase's apply, killed by SIGKILL after a few renames into the quarantine, the way a
# build killed mid-prune (dyno limits, a cancelled build) leaves BUILD_DIR.
KILLED_APPLY = """
import os, signal, sys
from pathlib import Path
sys.path[:0] = {paths!r}
from slugslim.core.config import PruneConfig
from slugslim.finish.prune.prune import plan
from slugslim.removal import quarantine
from slugslim.removal.engine import quarantine_location
site, build_dir = Path({site!r}), Path({build_dir!r})
renames = 0
real = quarantine._rename
def dying(src, dst, replace=False):
    global renames
    renames += 1
    if renames == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, replace)
quarantine._rename = dying
box = quarantine.Quarantine(quarantine_location(build_dir, site), site, None)
box.apply(plan(site, PruneConfig(symbols=False)).removals)
"""


def test_a_build_killed_mid_prune_and_run_again_ends_consistent(
        tmp_path: Path, heroku_build: HerokuBuild, offline_env: dict[str, str], links: dict[str, str]) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": REQUIREMENTS, "app.py": APP})
    installed = heroku_build(app, env=links, buildpacks=(PYTHON_BUILDPACK,), slug=False)
    assert installed.ok, installed.log
    site, build_dir = installed.site_packages(), installed.build_dir
    before = tree_digest(site)
    code = KILLED_APPLY.format(paths=sys.path, site=str(site), build_dir=str(build_dir))
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert tree_digest(site) != before  # half-applied: three removals are out of site-packages

    # slugslim runs again on that build dir; after heroku/python, it runs both phases at once.
    rerun = subprocess.run(
        [str(SLUGSLIM / "bin/compile"), str(build_dir), str(installed.cache_dir), str(installed.env_dir)],
        env={**os.environ, **offline_env, **links, "STACK": "heroku-24"}, capture_output=True, text=True,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Put back 3 items an interrupted earlier run had set aside" in rerun.stdout
    assert "from site-packages" in rerun.stdout
    assert not (build_dir.parent / f".slugslim-quarantine-{build_dir.name}").exists()
    check = subprocess.run([str(build_dir / ".heroku/python/bin/python"), "-c", "import tensorflow, alpha"],
                           cwd=build_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
