"""``slugslim analyze`` on an app dir, a virtualenv and a bare site-packages; its JSON and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slugslim import cli
from tests import sitefactory, wheelfactory

MODEL_BYTES = 300_000
REPO = Path(__file__).resolve().parents[1]


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = sitefactory.build_app_wheels(tmp_path_factory.mktemp("wheels"))
    wheelfactory.tf_family(house)
    return house


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Path:
    """A virtualenv with the app's requirements and the (fake) CPU TensorFlow, with tests/ and headers."""
    env = make_venv(tmp_path_factory.mktemp("venv") / "venv")
    names = [spec.name for spec in sitefactory.app_specs()]
    sitefactory.pip_install(wheels, env, [*names, "tensorflow-cpu==2.21.0"])
    return env


@pytest.fixture(scope="module")
def gpu_venv(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Path:
    env = make_venv(tmp_path_factory.mktemp("gpu") / "venv")
    sitefactory.pip_install(wheels, env, ["tensorflow[and-cuda]==2.21.0"])
    return env


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An app that asks for GPU TensorFlow and ships a model file."""
    app_dir = sitefactory.write_app(tmp_path / "app")
    with (app_dir / "requirements.txt").open("a") as handle:
        handle.write("tensorflow==2.21.0\n")
    (app_dir / "app.py").write_text(sitefactory.APP_PY + "import tensorflow\n")
    (app_dir / "models").mkdir()
    (app_dir / "models" / "classifier.h5").write_bytes(sitefactory.noise(MODEL_BYTES, 1))
    (app_dir / "slugslim.yml").write_text("models:\n  min_size: 0.1\n")
    return app_dir


def analyze(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = cli.main(["analyze", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def analyze_text(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["analyze", *argv, "--width", "80"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_app_dir_without_an_environment_shows_swaps_and_models(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = analyze(capsys, str(app))
    assert code == 0
    assert data["kind"] == "app" and data["complete"] is False and data["site_packages"] is None
    swap = next(s for s in data["swaps"] if s["source"] == "tensorflow")
    assert swap["action"] == "swap" and swap["new"] == "tensorflow-cpu==2.21.0"
    assert [m["path"] for m in data["models"]] == ["models/classifier.h5"]
    assert data["models"][0]["bytes"] == MODEL_BYTES and data["models"][0]["removed"] is False
    assert any("virtualenv" in note for note in data["notes"])
    assert data["before"]["bytes"] == data["after"]["bytes"]  # nothing leaves without models.source

    code, out, _ = analyze_text(capsys, str(app))
    assert code == 0
    assert "tensorflow==2.21.0 → tensorflow-cpu==2.21.0" in out
    assert "models/classifier.h5" in out and "models.source is not set" in out
    assert "slugslim analyze /tmp/venv --app" in out


def test_virtualenv_with_app_shows_the_full_picture(venv: Path, app: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (app / "slugslim.yml").write_text("models:\n  min_size: 0.1\n  source: s3://bucket/models\n")
    code, data = analyze(capsys, str(venv), "--app", str(app))
    assert code == 0
    assert data["kind"] == "venv" and data["complete"] is True
    site = Path(data["site_packages"])
    assert site.is_dir() and site.name == "site-packages"
    rules = data["by_rule"]
    assert rules["tests"] > 0 and rules["headers"] > 0 and rules["models"] == MODEL_BYTES
    for removal in data["removals"]:
        assert {"path", "bytes", "rule"} <= set(removal)
        root = site if removal["root"] == "site-packages" else app
        assert (root / removal["path"]).exists(), removal
    assert sum(rules.values()) == sum(r["bytes"] for r in data["removals"])
    assert data["before"]["bytes"] - data["after"]["bytes"] == sum(rules.values())
    assert 0 < data["after"]["compressed_bytes"] < data["before"]["compressed_bytes"]
    assert data["models"][0]["removed"] is True
    assert "jupyter-fake" in [u["name"] for u in data["unused"]]
    assert data["distributions"][0]["name"] in {"bigdep", "tensorflow-cpu"}
    # Nothing changed on disk.
    assert (app / "models" / "classifier.h5").stat().st_size == MODEL_BYTES
    assert all((site if r["root"] == "site-packages" else app, r["path"]) for r in data["removals"])


def test_text_output_of_a_virtualenv(venv: Path, app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = analyze_text(capsys, str(venv), "--app", str(app))
    assert code == 0
    for heading in ("-----> CPU swap", "-----> Prune plan (dry run)", "-----> Expected slug size"):
        assert heading in out
    assert "Largest distributions after slugslim" in out and "█" in out
    assert all(len(line) <= 80 for line in out.splitlines() if "█" in line)
    assert "jupyter-fake (" in err and "is never imported by your app" in err


def test_bare_site_packages(venv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = next(venv.glob("lib/python3.*/site-packages"))
    code, data = analyze(capsys, str(site))
    assert code == 0
    assert data["kind"] == "site-packages" and data["app_dir"] is None
    assert data["swaps"] == [] and data["models"] == [] and data["unused"] == []
    assert data["by_rule"]["tests"] > 0
    assert data["after"]["compressed_bytes"] < data["before"]["compressed_bytes"]


def test_app_dir_with_an_installed_environment_inside(venv: Path, app: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (app / ".venv").symlink_to(venv)  # a symlinked env is not followed: not an environment
    code, data = analyze(capsys, str(app))
    assert data["complete"] is False
    (app / ".venv").unlink()
    heroku = app / ".heroku" / "python"
    heroku.parent.mkdir()
    subprocess.run(["cp", "-a", str(venv), str(heroku)], check=True)
    code, data = analyze(capsys, str(app))
    assert code == 0 and data["kind"] == "app" and data["complete"] is True
    assert data["site_packages"].startswith(str(app / ".heroku"))
    assert data["before"]["bytes"] - data["after"]["bytes"] == sum(r["bytes"] for r in data["removals"])


def test_gpu_build_counts_the_cuda_libraries_the_fixup_drops(gpu_venv: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, data = analyze(capsys, str(gpu_venv))
    assert code == 0
    cuda = [r for r in data["removals"] if r["rule"] == "fixup"]
    assert {r["package"] for r in cuda} == {"nvidia-cublas-cu12", "nvidia-cudnn-cu12"}
    assert any("GPU build of TensorFlow" in note for note in data["notes"])


def test_a_cuda_library_something_else_needs_is_not_counted_as_the_fixup_keeps_it(
        tmp_path: Path, wheels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """analyze and the fix-up decide CUDA removals with one function: what another package requires stays."""
    house = tmp_path / "more-wheels"
    wheelfactory.build_wheel(wheelfactory.WheelSpec(name="cuda-user", requires=["nvidia-cublas-cu12"],
                                                    files={"cuda_user/__init__.py": ""}), house)
    env = make_venv(tmp_path / "venv")
    sitefactory.pip_install(wheels, env, ["tensorflow[and-cuda]==2.21.0", f"--find-links={house}", "cuda-user"])
    code, data = analyze(capsys, str(env))
    assert code == 0
    assert {r["package"] for r in data["removals"] if r["rule"] == "fixup"} == {"nvidia-cudnn-cu12"}


def test_exit_code_2_over_the_hard_limit(venv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "ci-limits.yml"
    settings.write_text("limits:\n  soft_mb: 0\n  hard_mb: 0\n")
    code, data = analyze(capsys, str(venv), "--config", str(settings))
    assert code == 2 and data["exit_code"] == 2
    assert data["limits"] == {"soft_mb": 0, "hard_mb": 0, "over_soft": True, "over_hard": True}
    code, _, err = analyze_text(capsys, str(venv), "--config", str(settings))
    assert code == 2 and "limits.hard_mb" in err


def test_exit_code_1_on_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["analyze", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["analyze", str(tmp_path / "empty")]) == 1
    assert "neither an app directory" in capsys.readouterr().err
    assert cli.main(["analyze", str(tmp_path), "--no-such-flag"]) == 1  # argparse alone would say 2
    assert cli.main(["analyze"]) == 1
    capsys.readouterr()
    bad = tmp_path / "bad.yml"
    bad.write_text("prune:\n  bytecode: sometimes\n")
    (tmp_path / "requirements.txt").write_text("flask\n")
    assert cli.main(["analyze", str(tmp_path), "--config", str(bad)]) == 1
    assert "prune.bytecode" in capsys.readouterr().err


def test_overlapping_removals_count_once() -> None:
    from slugslim.analyze.command import _dedupe

    def removal(path: str, rule: str) -> dict[str, Any]:
        return {"root": "site-packages", "path": path, "bytes": 1, "rule": rule}

    removals = [removal("nvidia/lib/a.so", "symbols"), removal("nvidia/lib/a.so", "fixup"),
                removal("pkg/include", "headers"), removal("pkg/include/x.h", "user"), removal("other.py", "user")]
    assert [(r["path"], r["rule"]) for r in _dedupe(removals)] == [
        ("nvidia/lib/a.so", "fixup"), ("pkg/include", "headers"), ("other.py", "user")]


HUB_FILES = {
    "web/nlp.py": 'from sentence_transformers import SentenceTransformer\n'
                  'from transformers import AutoModel, pipeline\n\n'
                  'EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"\n'
                  'embedder = SentenceTransformer(EMBEDDER)\n'
                  'ner = pipeline("ner", "dslim/bert-base-NER", revision="v1.2")\n'
                  'local = AutoModel.from_pretrained("./models/bert")\n',
    "worker.py": 'from huggingface_hub import snapshot_download\n\n\n\n\n\n\n\n\n'
                 'snapshot_download(repo_id="sentence-transformers/all-MiniLM-L6-v2")\n',
    # Not the app's own code: a vendored site-packages and a committed virtualenv.
    "vendor/site-packages/lib.py": 'snapshot_download("org/vendored")\n',
    "env/pyvenv.cfg": "home = /usr/bin\n",
    "env/lib/tool.py": 'AutoModel.from_pretrained("org/in-venv")\n',
}
HUB_MODELS = [
    {"id": "dslim/bert-base-NER", "revision": "v1.2", "places": ["web/nlp.py:6"]},
    {"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "",
     "places": ["web/nlp.py:5", "worker.py:10"]},  # by file, then line (10 after 5, not before it)
]


def hub_section(out: str) -> list[str]:
    """The detail lines of the text view's Hub models section."""
    lines = out.splitlines()
    start = lines.index("-----> Hugging Face Hub models your code loads") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("----->")), len(lines))
    return lines[start:end]


def write_hub_files(app_dir: Path) -> None:
    for name, text in HUB_FILES.items():
        (app_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (app_dir / name).write_text(text)


def test_the_command_line_lists_the_hub_models_the_apps_code_names(
        app: Path, tmp_path: Path, offline_env: dict[str, str], primed_cache: Path) -> None:
    write_hub_files(app)
    # The tools bootstrapped once for the session, as a build's cache holds them.
    env = {**os.environ, **offline_env, "SLUGSLIM_CACHE_DIR": str(primed_cache)}
    done = subprocess.run([str(REPO / "bin" / "slugslim"), "analyze", "--json", str(app)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hub_models"] == HUB_MODELS


def test_the_text_view_shows_the_hub_models_in_their_own_section(app: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, data = analyze(capsys, str(app))
    assert code == 0 and data["hub_models"] == []
    assert hub_section(analyze_text(capsys, str(app))[1]) == ["       None found."]
    write_hub_files(app)
    code, out, _ = analyze_text(capsys, str(app))
    assert code == 0
    assert hub_section(out) == [
        "       These would be downloaded at build time and shipped with the app, so",
        "       dynos do not fetch them from the Hub at every boot.",
        "       dslim/bert-base-NER (revision v1.2)  web/nlp.py:6",
        "       sentence-transformers/all-MiniLM-L6-v2  web/nlp.py:5, worker.py:10",
    ]
    # Without the app's source there is nothing to read.
    site = tmp_path / "site-packages"
    site.mkdir()
    code, data = analyze(capsys, str(site))
    assert code == 0 and data["hub_models"] == []
    assert hub_section(analyze_text(capsys, str(site))[1]) == ["       Not checked: pass --app DIR to look for them."]
