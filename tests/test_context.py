"""Which path runs the app's Python: /app/.heroku/python when heroku/python's symlink is this build's."""

from __future__ import annotations

from pathlib import Path

from slugslim.core.context import app_python


def test_the_app_python_goes_through_the_app_symlink_only_when_it_points_at_this_build(tmp_path: Path) -> None:
    build = tmp_path / "build_1"
    (build / ".heroku/python/bin").mkdir(parents=True)
    other = tmp_path / "build_0"
    (other / ".heroku/python/bin").mkdir(parents=True)
    link = tmp_path / "app/.heroku/python"
    link.parent.mkdir(parents=True)
    assert app_python(build, link) == build / ".heroku/python/bin/python"  # no symlink
    link.symlink_to(other / ".heroku/python")
    assert app_python(build, link) == build / ".heroku/python/bin/python"  # an earlier build's
    link.unlink()
    link.symlink_to(build / ".heroku/python")
    assert app_python(build, link) == link / "bin/python"
