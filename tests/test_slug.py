"""The emulated slug tar: names go under ./app, link targets stay as the build made them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.heroku.build import make_slug

pytestmark = pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")

SNAPSHOT_LINK = "models--org--name/snapshots/abc/config.json"
RELATIVE = "../../blobs/123"  # a Hugging Face Hub cache link into its blobs
ABSOLUTE = "/app/.heroku/python/bin/python3"


def test_slug_keeps_symlink_targets_and_moves_hard_links_under_app(tmp_path: Path) -> None:
    build = tmp_path / "build"
    blob = build / "models--org--name/blobs/123"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b'{"model_type": "bert"}\n')
    (build / SNAPSHOT_LINK).parent.mkdir(parents=True)
    (build / SNAPSHOT_LINK).symlink_to(RELATIVE)
    (build / "python").symlink_to(ABSOLUTE)
    (build / "first.txt").write_text("shared\n")
    os.link(build / "first.txt", build / "second.txt")

    slug = make_slug(build, tmp_path / "slug.tgz", level=1)

    with tarfile.open(slug) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert all(name == "./app" or name.startswith("./app/") for name in members), sorted(members)
    assert members[f"./app/{SNAPSHOT_LINK}"].issym()
    assert members[f"./app/{SNAPSHOT_LINK}"].linkname == RELATIVE
    assert members["./app/python"].linkname == ABSOLUTE
    # A hard link's target is a member name, so it moves with the names.
    hard = [m for m in members.values() if m.islnk()]
    assert len(hard) == 1 and hard[0].linkname in {"./app/first.txt", "./app/second.txt"}
    assert hard[0].linkname != hard[0].name

    dyno = tmp_path / "dyno"
    dyno.mkdir()
    subprocess.run(["tar", "-xzf", str(slug), "-C", str(dyno)], check=True)
    link = dyno / "app" / SNAPSHOT_LINK
    assert os.readlink(link) == RELATIVE
    assert link.read_bytes() == blob.read_bytes()
    assert os.readlink(dyno / "app/python") == ABSOLUTE
    assert (dyno / "app/first.txt").stat().st_ino == (dyno / "app/second.txt").stat().st_ino
