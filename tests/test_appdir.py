"""The emulated build's private /app (tests/heroku/appdir.py): its own on any host, and a clear stop without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.heroku.appdir import REQUIREMENT, at_app
from tests.heroku.build import REPO


def test_each_command_sees_its_own_app_and_never_the_hosts(tmp_path: Path) -> None:
    # The outer command's /app stands for a host /app with content; the inner one must not see or change it.
    host, build = tmp_path / "host-app", tmp_path / "build-app"
    host.mkdir()
    build.mkdir()
    (host / "precious").write_text("the host's\n", encoding="utf-8")
    script = 'ls -A /app; mkdir -p /app/.heroku && ln -s "$PWD" /app/.heroku/python && id -u'
    done = subprocess.run(at_app(host, at_app(build, ["bash", "-c", script])), capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    # The inner /app was empty (ls printed nothing), and the process keeps its own uid (no fake root).
    assert done.stdout.splitlines() == [str(os.getuid())]
    assert sorted(p.name for p in host.iterdir()) == ["precious"]
    assert (host / "precious").read_text(encoding="utf-8") == "the host's\n"
    assert (build / ".heroku/python").readlink() == tmp_path


def test_without_bubblewrap_the_suite_stops_at_once_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "tests/test_appdir.py"], capture_output=True, text=True, check=False, cwd=REPO,
                          env={"PATH": str(tmp_path), "HOME": str(tmp_path)}, timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr
    said = [line for line in (done.stdout + done.stderr).splitlines() if REQUIREMENT in line]
    assert said == [f"Exit: {REQUIREMENT}: no bwrap on PATH."]
    assert " passed" not in done.stdout and " failed" not in done.stdout
