"""The verified prune engine on a real pip-installed site-packages (see tests/prunetree.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slugslim.core.config import Config, PruneConfig, VerifyConfig
from slugslim.core.errors import PruneGlobError, VerificationError
from slugslim.core.plan import PruneResult, Removal
from slugslim.finish.prune.prune import plan as prune_plan
from slugslim.removal import quarantine
from slugslim.removal.engine import Engine
from tests.prunetree import build_template, tree_digest

HAS_CC = shutil.which("cc") is not None
HAS_STRIP = shutil.which("strip") is not None
APP = "import alpha\nimport beta\nimport gamma\nimport tensorflow\n"


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template(tmp_path_factory.mktemp("prune-template"))


@pytest.fixture
def site(template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "venv" / "site-packages"
    shutil.copytree(template, target, symlinks=True)
    return target


@pytest.fixture
def app(tmp_path: Path, site: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    extra = "import elfy\n" if (site / "elfy").is_dir() else ""
    (directory / "app.py").write_text(APP + extra)
    return directory


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []


def make_engine(site: Path, app: Path | None, tmp_path: Path, config: Config | None = None,
                rec: Recorder | None = None) -> Engine:
    rec = rec or Recorder()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` is the app's, as in a build
    return Engine(
        site_packages=site,
        config=config or Config(),
        python=sys.executable,
        env=env,
        cwd=app or site,
        quarantine_dir=tmp_path / "quarantine",
        app_dir=app,
        say=rec.lines.append,
        warn=rec.warnings.append,
    )


def paths(result_or_plan: PruneResult | object) -> dict[str, str]:
    plan = result_or_plan.plan if isinstance(result_or_plan, PruneResult) else result_or_plan
    return {r.path: r.rule for r in plan.removals}  # type: ignore[attr-defined]


def imports_ok(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


# ------------------------------------------------------------------ planning: what each rule picks


def test_tests_rule_removes_only_what_no_runtime_code_imports(site: Path) -> None:
    planned = paths(prune_plan(site, PruneConfig()))
    for gone in ("alpha/tests", "beta/test_unused.py", "gamma/sub/thing_test.py",
                 "alpha/données/tests", "alpha/with space/tests",
                 "tensorflow/python/kernel_tests/tests"):
        assert planned.get(gone) == "tests", gone
    for kept in ("beta/tests", "beta/testing", "beta/test_mode.py", "gamma/test",
                 "tensorflow/_api/v2/__internal__/test", "tensorflow/python/framework/test_util.py",
                 "tensorflow/python/data/ops/test_mode.py", "alpha/_vendor/tests"):
        assert not any(p == kept or p.startswith(kept + "/") for p in planned), kept
    assert not any(p.endswith(".dist-info") or ".dist-info/" in p for p in planned)


def test_headers_static_libs_and_unread_cython_sources(site: Path) -> None:
    planned = paths(prune_plan(site, PruneConfig()))
    for gone in ("alpha/include", "alpha/src/impl.hpp", "alpha/libalpha.a", "tensorflow/include",
                 "beta/extension.pyx"):
        assert planned.get(gone) == "headers", gone


def test_unneeded_package_goes_but_its_dist_info_stays(site: Path) -> None:
    planned = paths(prune_plan(site, PruneConfig()))
    assert planned.get("clang") == "packages"
    assert not prune_plan(site, PruneConfig(packages=())).removals or "clang" not in paths(
        prune_plan(site, PruneConfig(packages=())))


def test_symlinks_out_of_site_packages_are_never_followed(site: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "tests").mkdir(parents=True)
    (outside / "tests" / "keep.h").write_text("int x;\n")
    (outside / "include").mkdir()
    (site / "alpha" / "linked").symlink_to(outside, target_is_directory=True)
    (site / "alpha" / "tests" / "escape").symlink_to(outside, target_is_directory=True)
    before = tree_digest(outside)
    planned = paths(prune_plan(site, PruneConfig(remove=("alpha/linked/**", "alpha/linked"))))
    assert not any(p.startswith("alpha/linked/") for p in planned)
    assert planned.get("alpha/linked") == "user"  # the link itself, as a link
    assert tree_digest(outside) == before


def test_user_globs_keep_wins_and_escaping_globs_are_refused(site: Path) -> None:
    config = PruneConfig(keep=("alpha/tests/test_core.py",), remove=("alpha/docs/**", "alpha/docs"))
    planned = paths(prune_plan(site, config))
    assert "alpha/tests" not in planned
    assert planned.get("alpha/tests/__init__.py") == "tests"
    assert not any(p.startswith("alpha/tests/test_core.py") for p in planned)
    assert planned.get("alpha/docs") == "user"
    for bad in ("../../etc/**", "/etc/passwd", "alpha/../../x"):
        with pytest.raises(PruneGlobError) as caught:
            prune_plan(site, PruneConfig(remove=(bad,)))
        assert "relative to site-packages" in caught.value.detail()


@pytest.mark.skipif(not HAS_CC, reason="needs cc")
def test_symbols_rule_skips_vendored_and_patchelf_rewritten_libraries(site: Path) -> None:
    planned = paths(prune_plan(site, PruneConfig()))
    assert planned.get("elfy/_normal.so") == "symbols"
    assert "elfy.libs/libvendored-1a2b3c4d.so" not in planned
    if shutil.which("patchelf"):
        assert "elfy/_patched.so" not in planned


# ------------------------------------------------------------------ the engine, end to end on real files


@pytest.mark.skipif(not (HAS_CC and HAS_STRIP), reason="needs cc and strip")
def test_prune_run_commits_verified_and_a_second_run_finds_nothing(site: Path, app: Path, tmp_path: Path) -> None:
    os.chmod(site / "alpha" / "tests" / "test_core.py", 0o444)
    os.chmod(site / "alpha" / "tests" / "data", 0o555)
    normal_before = (site / "elfy" / "_normal.so").read_bytes()
    selfcheck_before = (site / "elfy" / "_selfcheck.so").read_bytes()
    vendored_before = (site / "elfy.libs" / "libvendored-1a2b3c4d.so").read_bytes()

    result = make_engine(site, app, tmp_path).run()

    assert result.status == "pruned", result.to_json()
    assert not (tmp_path / "quarantine").exists()
    assert not (site / "alpha" / "tests").exists() and not (site / "clang").exists()
    assert (site / "libclang-18.1.1.dist-info" / "METADATA").is_file()
    stripped = (site / "elfy" / "_normal.so").read_bytes()
    assert len(stripped) < len(normal_before)
    # strip breaks _selfcheck.so (it aborts without .symtab): rolled back on its own, byte-identical
    assert "elfy/_selfcheck.so" in result.strip_rolled_back
    assert (site / "elfy" / "_selfcheck.so").read_bytes() == selfcheck_before
    assert (site / "elfy.libs" / "libvendored-1a2b3c4d.so").read_bytes() == vendored_before
    check = imports_ok(site, "import importlib.metadata as m, elfy, alpha, beta, gamma, tensorflow\n"
                             "print(m.version('libclang'), elfy.ANSWER)")
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["18.1.1", "42"]

    again = make_engine(site, app, tmp_path).run()
    assert again.status == "pruned"
    # Little to do: only the strip that failed its load check is tried (and rolled back) again.
    assert [r.path for r in again.plan.removals] == ["elfy/_selfcheck.so"]
    assert list(again.strip_rolled_back) == ["elfy/_selfcheck.so"]


def test_bytecode_imported_policy_keeps_used_pyc_and_the_interpreter_uses_it(
        site: Path, app: Path, tmp_path: Path) -> None:
    unused_pyc = list((site / "alpha" / "__pycache__").glob("unused.*.pyc"))
    assert unused_pyc
    result = make_engine(site, app, tmp_path, Config(prune=PruneConfig(bytecode="imported", symbols=False))).run()
    assert result.status == "pruned"
    assert not any(p.exists() for p in unused_pyc)
    assert list((site / "alpha" / "__pycache__").glob("core.*.pyc"))
    # python -v says "matches" when it loads the cached bytecode instead of compiling the source.
    verbose = subprocess.run([sys.executable, "-v", "-c", "import alpha.core"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"})
    core = str(site / "alpha" / "core.py")
    assert any("matches" in line and line.rstrip().endswith(core) for line in verbose.stderr.splitlines())

    dropped = make_engine(site, app, tmp_path, Config(prune=PruneConfig(bytecode="drop", symbols=False))).run()
    assert dropped.status == "pruned"
    left = {p.relative_to(site).as_posix() for p in site.rglob("__pycache__")}
    assert left == {"alpha/_vendor/__pycache__", "alpha/_vendor/tests/__pycache__"}  # _vendor is never touched


def test_injected_failure_is_rolled_back_byte_identical_and_the_culprit_named(
        site: Path, app: Path, tmp_path: Path) -> None:
    os.chmod(site / "alpha" / "core.py", 0o444)
    before = tree_digest(site)
    # A user rule that removes a module the app imports: verification must catch it.
    config = Config(prune=PruneConfig(remove=("alpha/core.py",), symbols=False))
    rec = Recorder()
    result = make_engine(site, app, tmp_path, config, rec).run()
    assert result.status == "partial"
    assert [(c["rule"], c["package"]) for c in result.culprits] == [("user", "alpha")]
    assert result.culprits[0]["problems"][0].startswith("import alpha: ImportError: cannot import name 'core'")
    assert any("Rule 'user' on package alpha broke your app" in w for w in rec.warnings)
    after = tree_digest(site)
    assert after["alpha/core.py"] == before["alpha/core.py"]  # same bytes, mode and mtime
    removed = [r.path for r in result.plan.removals if (r.rule, r.package) != ("user", "alpha")]
    untouched = {p for p in before if not any(p == r or p.startswith(r + "/") for r in removed)}
    assert {p: after.get(p) for p in untouched if before[p][0] == "file"} == {
        p: before[p] for p in untouched if before[p][0] == "file"}
    assert not (site / "alpha" / "tests").exists()  # the other rules still applied
    assert not (tmp_path / "quarantine").exists()


def test_unfixable_failure_restores_everything_and_continues_unpruned(site: Path, app: Path, tmp_path: Path) -> None:
    os.chmod(site / "alpha" / "tests" / "test_core.py", 0o444)
    before = tree_digest(site)
    # verify.command passes on the intact tree and fails once two different rules both applied.
    marker = site / "alpha" / "docs" / "guide.txt"
    check = f"test -f '{marker}' || test -d '{site / 'alpha' / 'tests'}'"
    prune = PruneConfig(remove=("alpha/docs",), symbols=False)
    rec = Recorder()
    result = make_engine(site, app, tmp_path, Config(prune=prune, verify=VerifyConfig(command=check)), rec).run()
    assert result.status == "unpruned"
    assert tree_digest(site) == before
    assert any("continues UNPRUNED" in w for w in rec.warnings)

    with pytest.raises(VerificationError) as caught:
        make_engine(site, app, tmp_path, Config(prune=prune, verify=VerifyConfig(command=check, strict=True))).run()
    assert "verify.command: exit status 1" in caught.value.detail()
    assert tree_digest(site) == before
    assert not (tmp_path / "quarantine").exists()


_KILLER = """
import os, signal, sys
sys.path[:0] = {paths!r}
from pathlib import Path
from slugslim.core.config import PruneConfig
from slugslim.finish.prune.prune import plan
from slugslim.removal import quarantine
site = Path({site!r})
removals = plan(site, PruneConfig(symbols=False)).removals
box = quarantine.Quarantine(Path({q!r}), site, None)
count = 0
real = quarantine._rename
def dying(src, dst, replace=False):
    global count
    count += 1
    if count == {after}:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, replace)
quarantine._rename = dying
box.apply(removals)
"""


def test_killed_mid_apply_then_rerun_ends_consistent(site: Path, app: Path, tmp_path: Path) -> None:
    before = tree_digest(site)
    q = tmp_path / "quarantine"
    code = _KILLER.format(paths=sys.path, site=str(site), q=str(q), after=5)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert tree_digest(site) != before and (q / quarantine.JOURNAL).is_file()

    rec = Recorder()
    result = make_engine(site, app, tmp_path, Config(prune=PruneConfig(symbols=False)), rec).run()
    assert result.recovered == 4
    assert result.status == "pruned"
    assert not q.exists()
    assert imports_ok(site, "import alpha, beta, gamma, tensorflow").returncode == 0


def test_recover_alone_restores_the_tree_byte_identical(site: Path, tmp_path: Path) -> None:
    before = tree_digest(site)
    q = tmp_path / "quarantine"
    code = _KILLER.format(paths=sys.path, site=str(site), q=str(q), after=9)
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert quarantine.recover(q) == 8
    assert tree_digest(site) == before and not q.exists()


def test_a_restore_remakes_a_directory_removed_since(tmp_path: Path) -> None:
    """The fix-up quarantines a GPU build's library, then pip replaces the distribution without that
    directory; when the fix-up rolls back, the library goes back where it was."""
    site = tmp_path / "site"
    (site / "ort" / "capi").mkdir(parents=True)
    (site / "ort" / "capi" / "providers_cuda.so").write_bytes(b"\x7fELF")
    box = quarantine.Quarantine(tmp_path / "box", site)
    entries, failed = box.apply([Removal("ort/capi/providers_cuda.so", 4, "fixup", "a CUDA library", 1, "ort")])
    assert failed == {} and not (site / "ort" / "capi" / "providers_cuda.so").exists()
    shutil.rmtree(site / "ort")
    box.restore(entries)
    assert (site / "ort" / "capi" / "providers_cuda.so").read_bytes() == b"\x7fELF"


def test_cli_dry_run_prints_the_plan_as_json(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from slugslim.finish.prune import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    before = tree_digest(site)
    status = command.run(parser.parse_args([str(site), "--dry-run", "--json"]))
    assert status == 0
    data = json.loads(capsys.readouterr().out)
    assert data["result"]["status"] == "dry-run"
    assert {r["path"] for r in data["plan"]["removals"]} >= {"alpha/tests", "clang", "tensorflow/include"}
    assert tree_digest(site) == before


# ------------------------------------------------------------------ pure pieces


def test_globs_match_paths_not_the_filesystem() -> None:
    from slugslim.removal.globs import GlobSet

    globs = GlobSet.of("prune.remove", ["tensorflow/include/**", "*/docs", "**/*.md"], "slugslim.yml")
    assert globs.matches("tensorflow/include/Eigen/Core")
    assert globs.matches("alpha/docs") and not globs.matches("alpha/b/docs")
    assert globs.matches("README.md") and globs.matches("a/b/c.md")


def test_bytecode_distributions_policy_keeps_whole_distributions_the_app_loads(
        site: Path, tmp_path: Path) -> None:
    app = tmp_path / "only-alpha"
    app.mkdir()
    (app / "app.py").write_text("import alpha\n")
    cache = site / "alpha" / "__pycache__"
    core = next(cache.glob("core.*.pyc"))
    optimized = core.with_name(core.name.replace(".pyc", ".opt-1.pyc"))
    shutil.copy2(core, optimized)
    assert list((site / "beta" / "__pycache__").glob("*.pyc"))
    config = Config(prune=PruneConfig(bytecode="distributions", symbols=False))
    result = make_engine(site, app, tmp_path, config).run()
    assert result.status == "pruned"
    # alpha is imported, so all of its bytecode stays, even of a module nothing imports...
    assert core.exists() and list(cache.glob("unused.*.pyc"))
    # ...but not the optimized variant, which only python -O reads; beta is never loaded at all.
    assert not optimized.exists()
    assert not list((site / "beta").rglob("*.pyc"))


def test_modules_verify_command_loads_keep_their_bytecode(site: Path, app: Path, tmp_path: Path) -> None:
    config = Config(prune=PruneConfig(bytecode="imported", symbols=False),
                    verify=VerifyConfig(command="python -c 'import alpha.unused'"))
    result = make_engine(site, app, tmp_path, config).run()
    assert result.status == "pruned"
    # Only verify.command imports it, in a process of its own: the recorder saw it there.
    assert list((site / "alpha" / "__pycache__").glob("unused.*.pyc"))
