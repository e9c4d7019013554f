"""The first push of a TensorFlow app, end to end through the emulated Heroku build."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import HerokuBuild, write_app

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "c" * 64 + "\nsize 2000000\n"


def test_first_push_reports_python_lfs_and_memory(tmp_path: Path, heroku_build: HerokuBuild) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "tensorflow==2.21.0\n", "app.py": "import tensorflow\n",
                                       "static/data.json": LFS_POINTER})
    build = heroku_build(app)
    assert build.ok, build.log
    log = build.log
    # The LFS warning comes before heroku/python installs anything, and again in the report.
    assert log.index("static/data.json: a Git LFS pointer for a 2.0 MB file") < log.index("Installing dependencies")
    assert "static/data.json (the real file is 2.0 MB)" in log
    assert "CPU swap (Python 3.14, from heroku/python's default)" in log
    assert "Python: 3.14, from heroku/python's default" in log
    assert "One web process needs about" in log and "Memory: one web process needs about" in log, log
    report = json.loads((build.build_dir / ".slugslim/report.json").read_text())
    assert report["version"] == 3
    assert report["python"] == {"version": "3.14", "minor": "3.14", "origin": "default",
                                "source": "heroku/python's default"}
    assert report["preflight"]["status"] == "ok"  # the fake wheels are py3-none-any
    assert report["preflight"]["builds"][0]["requirement"] == "tensorflow-cpu==2.21.0"
    assert report["memory"]["process_mb"] > 0 and len(report["memory"]["per_dyno"]) == 4
    assert report["lfs"] == [{"path": "static/data.json", "size": 2000000, "sha256": "c" * 64, "model": False,
                              "fetched_at_boot": False}]
    names = subprocess.run(["tar", "-tzf", str(build.slug)], capture_output=True, text=True, check=True).stdout
    assert "./app/.profile.d/slugslim-memory.sh" in names.splitlines()
    assert "./app/.profile.d/WEB_CONCURRENCY.sh" in names.splitlines()
    # heroku/python's record of the Python it installed, which the next build reads.
    assert (build.cache_dir / ".heroku/python-version").read_text().startswith("python-3.")
