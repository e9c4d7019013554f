"""runtime.engine: litert through the emulated Heroku build: a LiteRT slug, and a cached rebuild
that does not install TensorFlow again. ``litert_tool.py`` is the fake of ``test_runtime_ship``
(the real one needs real TensorFlow: ``make bench``); everything else is the real buildpack."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.conftest import HerokuBuild, write_app
from tests.heroku.build import PYTHON_BUILDPACK, REPO
from tests.test_runtime_ship import FAKE_TOOL
from tests.wheelfactory import WheelSpec, build_wheel, hashed_lock


def test_a_litert_slug_and_a_rebuild_that_gets_tensorflow_from_slugslims_cache(
        tmp_path: Path, heroku_build: HerokuBuild, offline_env: dict[str, str]) -> None:
    buildpack = tmp_path / "slugslim"
    for name in ("bin", "lib", "buildpack.toml"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, buildpack / name)
    (buildpack / "lib" / "slugslim" / "finish" / "runtime" / "litert_tool.py").write_text(FAKE_TOOL)
    wheels = tmp_path / "litert-wheels"
    litert = build_wheel(WheelSpec(name="ai-edge-litert", version="2.3.0", files={"ai_edge_litert/__init__.py": ""}),
                         wheels)
    hashed_lock(buildpack / "lib" / "runtime.lock", [litert])  # the real lock has the real wheels' hashes
    app = write_app(tmp_path / "app", {
        "requirements.txt": "tensorflow==2.21.0\n",
        "slugslim.yml": "runtime:\n  engine: litert\n",
        "app.py": "from slugslim_models import load_model\nimport numpy_fake\n",
        "models/classifier.keras": b"k" * 4000,
    })
    env = {"PIP_FIND_LINKS": f"{offline_env['PIP_FIND_LINKS']} {wheels}"}

    first = heroku_build(app, buildpacks=(buildpack, PYTHON_BUILDPACK), env=env, slug=False)
    assert first.ok, first.log
    assert any("tensorflow-cpu" in line for line in re.findall(r"Successfully installed (.*)", first.log))
    assert "Runtime: LiteRT (ai-edge-litert 2.3.0) instead of TensorFlow" in first.log
    assert "Installed ai-edge-litert 2.3.0 from slugslim's lock, its hashes checked" in first.log
    site = first.site_packages()
    assert not list(site.glob("tensorflow*")) and (site / "ai_edge_litert").is_dir()
    assert (first.build_dir / "models" / "classifier.tflite").is_file()
    assert not (first.build_dir / "models" / "classifier.keras").exists()
    cached = first.cache_dir / ".heroku" / "python"
    assert not list(cached.glob("lib/python3.*/site-packages/tensorflow*"))  # what the hook left
    assert list((first.cache_dir / "slugslim" / "litert-stash").glob("python/lib/python3.*/site-packages/tensorflow"))

    second = heroku_build(app, buildpacks=(buildpack, PYTHON_BUILDPACK), env=env, slug=False)
    assert second.ok, second.log
    assert "Put back into heroku/python's cache the" in second.log and "Restoring cache" in second.log
    installed = re.findall(r"Successfully installed (.*)", second.log)
    assert not any("tensorflow" in line for line in installed), installed  # pip found it in place
    assert "Runtime: LiteRT (ai-edge-litert 2.3.0) instead of TensorFlow" in second.log
    assert not list(second.site_packages().glob("tensorflow*"))
