"""Git LFS pointers: found anywhere in the app, warned about or failing the build, and fetched for real at boot."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from slugslim import cli
from slugslim.core import lfs
from slugslim.core.config import Config, ModelsConfig
from slugslim.core.context import FinishContext
from slugslim.finish.models import models
from tests.conftest import write_app
from tests.heroku.build import REPO
from tests.modelservers import FileServer, run_dyno

REAL_MODEL = os.urandom(30_000)


def pointer(data: bytes) -> str:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n")


def prepare(app: Path, tmp_path: Path) -> int:
    (tmp_path / "env").mkdir(exist_ok=True)
    return cli.main(["prepare", str(app), str(tmp_path / "cache"), str(tmp_path / "env"), "--buildpack", str(REPO),
                     "--python", sys.executable, "--tools", str(tmp_path / "tools")])


def test_a_model_pointer_and_one_elsewhere_are_named_with_their_real_sizes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(tmp_path / "app", {
        "models/classifier.h5": pointer(b"x" * 134_000_000),
        "data/train.csv": "version https://git-lfs.github.com/spec/v1\next-0-foo sha256:" + "1" * 64
                          + "\noid sha256:" + "a" * 64 + "\nsize 2500000\n",
        "notes.txt": "version https://git-lfs.github.com/spec/v1 is what LFS writes\n",
        "bad_oid.h5": "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n",
        "no_size.h5": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "b" * 64 + "\n",
        "big.h5": pointer(b"y") + "#" * 1024,
        ".git/lfs/objects/x": pointer(b"z"),
    })
    assert prepare(app, tmp_path) == 0
    err = capsys.readouterr().err
    assert "models/classifier.h5: a Git LFS pointer for a 134.0 MB model file (sha256 " in err
    assert "data/train.csv: a Git LFS pointer for a 2.5 MB file (sha256 " + "a" * 64 + ")" in err
    for not_a_pointer in ("notes.txt", "bad_oid", "no_size", "big.h5", ".git"):
        assert not_a_pointer not in err
    assert "commit the real file" in err and "models.source" in err and "buildpack that fetches Git LFS" in err
    state = (app / ".slugslim/state.json").read_text()
    assert '"path": "models/classifier.h5"' in state and '"size": 134000000' in state


def test_models_lfs_fail_stops_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(tmp_path / "app", {"slugslim.yml": "models:\n  lfs: fail\n", "model.keras": pointer(REAL_MODEL),
                                       "requirements.txt": "flask\n"})
    assert prepare(app, tmp_path) == 1
    err = capsys.readouterr().err
    assert "Error: Your app has Git LFS pointers instead of files." in err and "model.keras" in err
    assert not (app / "bin/post_compile").exists()


def test_with_models_source_the_dyno_fetches_the_real_file(tmp_path: Path, file_server: FileServer) -> None:
    app = write_app(tmp_path / "app", {"models/net.keras": pointer(REAL_MODEL)})
    source = f"{file_server.url}/store"
    file_server.objects[f"/store/{hashlib.sha256(REAL_MODEL).hexdigest()}/net.keras"] = REAL_MODEL
    config = Config(models=ModelsConfig(source=source, upload=True))
    result = models.run(FinishContext(build_dir=app, cache_dir=None, env={}, config=config,
                                      python=Path(sys.executable), site_packages=None))
    assert [m.path for m in result.removed] == ["models/net.keras"]
    assert result.removed_bytes == 0  # the slug only lost the stub
    assert file_server.count("PUT") == 0  # a pointer is never uploaded in place of the model
    assert not (app / "models/net.keras").exists()
    booted = run_dyno(app, {})
    assert booted.returncode == 0, booted.stderr
    assert (app / "models/net.keras").read_bytes() == REAL_MODEL


def test_a_pointer_whose_file_is_not_at_the_source_stays_with_the_reason(tmp_path: Path,
                                                                         file_server: FileServer) -> None:
    app = write_app(tmp_path / "app", {"net.keras": pointer(REAL_MODEL)})
    config = Config(models=ModelsConfig(source=f"{file_server.url}/store", upload=True))
    result = models.run(FinishContext(build_dir=app, cache_dir=None, env={}, config=config,
                                      python=Path(sys.executable), site_packages=None))
    assert [(m.path, why.split(" and ")[0]) for m, why in result.kept] == [("net.keras", "it is a Git LFS pointer")]
    assert (app / "net.keras").read_text() == pointer(REAL_MODEL)
    assert file_server.count("PUT") == 0


def test_parse_needs_the_spec_line_first() -> None:
    assert lfs.parse(pointer(b"abc").encode()) == (3, hashlib.sha256(b"abc").hexdigest())
    assert lfs.parse(("\n" + pointer(b"abc")).encode()) is None
