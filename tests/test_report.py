"""The build report: numbers that match the plan applied, the bar chart, the limits, report.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slugslim.core.config import Config, LimitsConfig, ReportConfig
from slugslim.core.context import FinishContext, find_site_packages
from slugslim.core.modelscan import Model, ModelFile
from slugslim.core.plan import Plan, PruneResult, Removal
from slugslim.core.results import ModelsResult, Results
from slugslim.core.state import PrepareState
from slugslim.deps.wheels import WheelInfo
from slugslim.finish import phase as finish
from slugslim.finish.report import report
from slugslim.prepare.swap.plan import Swap
from slugslim.prepare.swap.rewrite import SwapResult
from tests import sitefactory
from tests.conftest import HerokuBuild, write_app
from tests.heroku.build import HEROKU_GZIP_LEVEL

MB = 1_000_000


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sitefactory.build_app_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def installed_build(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Path:
    """A build dir as heroku/python leaves it: the app, and .heroku/python with site-packages."""
    build = tmp_path_factory.mktemp("pristine") / "build"
    sitefactory.write_app(build)
    sitefactory.install_app(wheels, build / ".heroku" / "python")
    (build / "models").mkdir()
    (build / "models" / "classifier.h5").write_bytes(sitefactory.noise(300_000, 11))
    (build / "static").mkdir()
    (build / "static" / "app.js").write_text(sitefactory.text(200_000, 12))
    return build


@pytest.fixture
def build(installed_build: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "build"
    shutil.copytree(installed_build, copy, symlinks=True)
    return copy


def context(build: Path, config: Config | None = None, **kwargs: object) -> FinishContext:
    return FinishContext(
        build_dir=build,
        cache_dir=None,
        env={},
        config=config or Config(),
        python=build / ".heroku" / "python" / "bin" / "python",
        site_packages=find_site_packages(build),
        **kwargs,  # type: ignore[arg-type]
    )


def apply(root: Path, plan: Plan, quarantine: Path) -> None:
    """Move each planned path out of the tree, as the prune engine does."""
    for removal in plan.removals:
        target = quarantine / removal.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / removal.path, target)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --- the bar chart ---------------------------------------------------------------------------

ROWS = [
    ("tensorflow-cpu", 1_308_019_442),
    ("a-distribution-with-an-extraordinarily-long-name-that-goes-on-and-on", 71_399_894),
    ("libclang", 64_044_122),
    ("tiny", 12_000),
]


@pytest.mark.parametrize("width", [40, 60, 80, 100, 132])
def test_bar_chart_fits_the_width_in_the_detail_indent(width: int) -> None:
    lines = report.bar_chart(ROWS, width=width)
    assert len(lines) == len(ROWS)
    for line in lines:
        assert len("       " + line) <= width
    # Bars start in one column and sizes end in one column, whatever the names.
    assert len({line.index(next(c for c in line if c in "█▏▎▍▌▋▊▉")) for line in lines}) == 1
    assert len({len(line) for line in lines}) == 1
    assert lines[0].endswith("1.3 GB") and lines[3].endswith("12.0 KB")
    # The long name is cut with an ellipsis, the short ones are whole.
    assert "…" in lines[1]
    assert lines[0].startswith("tensorflow-cpu ")
    # The largest value has the longest bar; a tiny value still shows a sliver.
    bars = [sum(1 for c in line if c in "█▏▎▍▌▋▊▉") for line in lines]
    assert bars[0] == max(bars) and bars[3] >= 1


def test_bar_lengths_are_proportional_in_eighths() -> None:
    assert report.bar(100, 100, 10) == "█" * 10
    assert report.bar(50, 100, 10) == "█" * 5
    assert report.bar(1, 100, 10) == "▏"
    assert report.bar(0, 100, 10) == ""
    assert report.bar(55, 100, 10) == "█████▌"


def test_two_charts_share_one_scale() -> None:
    rows_before, rows_after = [("big", 100_000), ("a-longer-name", 10)], [("big", 50_000)]
    both = rows_before + rows_after
    before = report.bar_chart(rows_before, width=60, align_with=both)
    after = report.bar_chart(rows_after, width=60, align_with=both)
    assert before[0].count("█") == 2 * after[0].count("█")
    assert len(before[0]) == len(after[0])


# --- numbers match what was applied -----------------------------------------------------------


def test_report_numbers_match_the_plan_applied(build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = find_site_packages(build)
    assert site is not None
    before = report.snapshot(build)

    plan = Plan(root=str(site), removals=[
        Removal("bigdep/blob.bin", size_of(site / "bigdep/blob.bin"), "packages", "never imported", package="bigdep"),
        Removal("cv2/data", size_of(site / "cv2/data"), "data", "sample data", files=1,
                package="opencv-python-headless"),
        Removal("PIL/Image.py", size_of(site / "PIL/Image.py"), "data", "test", package="Pillow"),
    ])
    apply(site, plan, tmp_path / "quarantine")
    model = Removal("models/classifier.h5", size_of(build / "models/classifier.h5"), "models", "fetched at boot")
    apply(build, Plan(root=str(build), removals=[model]), tmp_path / "models-out")

    # The steps' own result classes, so the report reads exactly what they record.
    pruned = PruneResult(status="pruned", plan=plan, removed=plan.by_rule())
    taken = ModelsResult(removed=[Model(model.path, "file", "big", (ModelFile(model.path, model.bytes),))])
    swapped = SwapResult(enabled=True, manager="pip", swaps=[Swap(
        file="requirements.txt", line=1, action="swap", old="tensorflow==2.21.0", new="tensorflow-cpu==2.21.0",
        source="tensorflow", target="tensorflow-cpu", version="2.21.0",
        old_wheel=WheelInfo("tensorflow", "2.21.0", "tf.whl", "", None, 572_000_000),
        new_wheel=WheelInfo("tensorflow-cpu", "2.21.0", "tfcpu.whl", "", None, 274_000_000),
    )])
    ctx = context(build, results=Results(prune=pruned, models=taken),
                  state=PrepareState(swap=swapped.state()))
    result = report.run(ctx, before)
    data = json.loads((build / ".slugslim" / "report.json").read_text())

    assert data == json.loads(json.dumps(result.to_json()))
    levers = {lever["lever"]: lever["bytes"] for lever in data["levers"]}
    assert levers == {
        "swap": 298_000_000,
        "prune: packages": plan.by_rule()["packages"],
        "prune: data": plan.by_rule()["data"],
        "models": model.bytes,
    }
    assert data["saved"]["bytes"] == plan.bytes + model.bytes  # on disk; the swap happened before install
    assert data["before"]["bytes"] - data["after"]["bytes"] == plan.bytes + model.bytes
    assert 0 < data["after"]["compressed_bytes"] < data["before"]["compressed_bytes"]
    # The 300 KB of random model data does not compress: most of it shows in the compressed saving.
    assert data["saved"]["compressed_bytes"] > 250_000
    assert data["swaps"] == ["tensorflow==2.21.0 → tensorflow-cpu==2.21.0 (572.0 MB → 274.0 MB wheel)"]
    before_dists = dict((d["name"], d["bytes"]) for d in data["distributions"]["before"])
    after_dists = dict((d["name"], d["bytes"]) for d in data["distributions"]["after"])
    assert before_dists["bigdep"] - after_dists["bigdep"] == plan.removals[0].bytes
    assert (build / ".slugslim" / "report.json").stat().st_size < 8000
    assert result.unused and result.unused[0].name == "jupyter-fake"

    out, err = capsys.readouterr()
    assert out.startswith("-----> Slug size\n")
    assert all(line.startswith("       ") for line in out.splitlines()[1:])
    assert "Swapped before install: tensorflow==2.21.0 → tensorflow-cpu==2.21.0 (572.0 MB → 274.0 MB wheel)" in out
    assert "prune: packages" in out and "Largest distributions before" in out and "█" in out
    assert " !     Warning: jupyter-fake (" in err and "is never imported by your app" in err
    assert "limits" not in err  # a small slug: no limit warning


def test_limit_warnings_name_the_biggest_items(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = report.snapshot(build)
    strict = Config(limits=LimitsConfig(soft_mb=0, hard_mb=0), report=ReportConfig(ignore_unused=("jupyter-fake",)))
    result = report.run(context(build, strict), before)
    _, err = capsys.readouterr()
    assert result.limits["over_hard"] and result.limits["over_soft"]
    assert "over the 0 MB limit (limits.hard_mb)" in err
    assert "The biggest items left:" in err
    assert "models/ (" in err and "models.include" in err  # app data, with what would shrink it
    assert "jupyter-fake" not in err.split("The biggest items left:")[0]  # ignore_unused silences it
    soft_only = Config(limits=LimitsConfig(soft_mb=0, hard_mb=500))
    report.run(context(build, soft_only), before)
    _, err = capsys.readouterr()
    assert "over 0 MB (limits.soft_mb). This may affect boot time." in err
    assert "limits.hard_mb" not in err


def test_advice_for_the_usual_suspects() -> None:
    assert "tensorflow-cpu" in report.advice("tensorflow")
    assert "GPU" in report.advice("nvidia-cudnn-cu12")
    assert "prune.packages" in report.advice("libclang")


def test_finish_takes_a_snapshot_first_and_reports_last(build: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    python = build / ".heroku" / "python" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(sys.executable, python)
    args = argparse.Namespace(build_dir=build, cache_dir=tmp_path / "cache", env_dir=tmp_path / "env", hook=False)
    assert finish.run(args) == 0
    out, _ = capsys.readouterr()
    assert "-----> Slug size" in out
    data = json.loads((build / ".slugslim" / "report.json").read_text())
    # Nothing to prune or take out; the one file added is the memory script for dyno start.
    added = (build / ".profile.d" / "slugslim-memory.sh").stat().st_size
    assert data["before"]["bytes"] + added == data["after"]["bytes"] > 0


@pytest.mark.slow
def test_report_through_the_emulated_heroku_build(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {
        "requirements.txt": "tensorflow==2.21.0\nflask-fake==3.0.0\n",
        "app.py": "import tensorflow\nimport flask_fake\n",
        "Procfile": "web: python app.py\n",
    })
    build = heroku_build(app, slug_level=HEROKU_GZIP_LEVEL)  # its size is compared
    assert build.ok, build.log
    assert "       -----> Slug size" in build.log  # heroku/python indents the hook's output
    assert "Swapped before install: tensorflow==2.21.0 → tensorflow-cpu==2.21.0" in build.log
    data = json.loads((build.build_dir / ".slugslim" / "report.json").read_text())
    assert data["after"]["bytes"] < data["before"]["bytes"]
    # The estimate against the slug the harness made with tar czf.
    assert abs(data["after"]["compressed_bytes"] - build.slug_bytes) / build.slug_bytes < 0.03
    on_disk = sum(p.stat().st_size for p in build.build_dir.rglob("*") if p.is_file() and not p.is_symlink())
    assert abs(data["after"]["bytes"] - on_disk) < 20_000  # report.json and the state file differ
    prune_levers = {lever["rule"]: lever["bytes"] for lever in data["levers"] if lever["step"] == "prune"}
    added = (build.build_dir / ".profile.d" / "slugslim-memory.sh").stat().st_size  # the one file slugslim adds
    assert prune_levers and sum(prune_levers.values()) <= data["saved"]["bytes"] + added
    names = subprocess.run(["tar", "-tzf", str(build.slug)], capture_output=True, text=True, check=True).stdout
    assert "./app/.slugslim/report.json" in names.splitlines()
