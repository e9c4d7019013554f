"""Wheel preflight against a real local index: a fake tensorflow-cpu whose wheels exist only for some Pythons."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from slugslim import cli
from slugslim.core import pip
from slugslim.core.config import SwapConfig
from slugslim.core.errors import PreflightError
from slugslim.core.state import read_state
from slugslim.deps import pyversion, simpleindex
from slugslim.prepare import preflight
from tests.conftest import write_app
from tests.heroku.build import REPO
from tests.localindex import serve
from tests.wheelfactory import WheelSpec, build_wheel, tensorflow_cpu_spec, tensorflow_spec

pytestmark = pytest.mark.usefixtures("isolated_pip")
OLD_PYTHONS = ("310", "311", "312", "313")


def _tagged(spec: WheelSpec, python: str) -> WheelSpec:
    spec.tag = f"cp{python}-cp{python}-manylinux_2_17_x86_64.manylinux2014_x86_64"
    return spec


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TensorFlow 2.21.0 has wheels for 3.10-3.13 only; only 2.22.0rc0 has one for 3.14, as on PyPI."""
    house = tmp_path_factory.mktemp("tagged-wheels")
    for python in OLD_PYTHONS:
        build_wheel(_tagged(tensorflow_cpu_spec("2.21.0"), python), house)
        build_wheel(_tagged(tensorflow_spec("2.21.0"), python), house)
    for python in (*OLD_PYTHONS, "314"):
        build_wheel(_tagged(tensorflow_cpu_spec("2.22.0rc0"), python), house)
    return house


@pytest.fixture(scope="module")
def index(house: Path) -> Iterator[str]:
    with serve(house) as url:
        yield url


def where(url: str) -> simpleindex.Settings:
    return simpleindex.settings({}, ["--index-url", url], environ={})


def test_one_lookup_tells_every_python(index: str) -> None:
    found = simpleindex.availability("tensorflow-cpu", simpleindex.SpecifierSet("==2.21.0"),
                                     simpleindex.files("tensorflow-cpu", where(index)), pyversion.SUPPORTED)
    assert found.pythons() == ["3.10", "3.11", "3.12", "3.13"]
    assert found.newest_any["3.14"] == "2.22.0rc0"
    assert found.newest_any["3.13"] == "2.21.0"  # a final release beats a pre-release


def test_no_python_named_writes_python_version_with_the_newest_that_works(
        tmp_path: Path, index: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(tmp_path, {"requirements.txt": "flask\ntensorflow==2.21.0\n"})
    result = preflight.check(app, pyversion.app_python(app), SwapConfig(), where(index))
    assert (result.status, result.chosen) == ("chose", "3.13")
    assert (app / ".python-version").read_text() == "3.13\n"
    assert pyversion.app_python(app) == pyversion.AppPython("3.13", ".python-version", 1)
    assert result.builds[0]["requirement"] == "tensorflow-cpu==2.21.0"  # what pip installs after the swap
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert "Python 3.13" in out[0] and "heroku/python's default" in out[0] and "commit" in out[0]


def test_the_cached_python_counts_as_not_named(tmp_path: Path, index: str) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "tensorflow-cpu==2.21.0\n"})
    write_app(tmp_path / "cache", {".heroku/python-version": "python-3.14.7\n"})
    result = preflight.check(app, pyversion.app_python(app, tmp_path / "cache"), SwapConfig(), where(index))
    assert result.chosen == "3.13"


def test_a_python_that_has_wheels_changes_nothing(tmp_path: Path, index: str) -> None:
    app = write_app(tmp_path, {"requirements.txt": "tensorflow==2.21.0\n", "runtime.txt": "python-3.12.9\n"})
    result = preflight.check(app, pyversion.app_python(app), SwapConfig(), where(index))
    assert result.status == "ok"
    assert not (app / ".python-version").exists()


def test_a_pinned_python_without_wheels_fails_early_naming_file_line_and_fix(tmp_path: Path, index: str) -> None:
    app = write_app(tmp_path, {"requirements.txt": "# ML\ntensorflow==2.21.0\n", ".python-version": "# ours\n3.14\n"})
    with pytest.raises(PreflightError) as raised:
        preflight.check(app, pyversion.app_python(app), SwapConfig(), where(index))
    text = raised.value.render()
    assert ".python-version line 2" in text and "requirements.txt line 2" in text
    assert "3.10, 3.11, 3.12, 3.13" in text
    assert "change the version in .python-version to 3.13" in text
    assert "2.22.0rc0" in text
    assert (app / ".python-version").read_text() == "# ours\n3.14\n"


def test_without_the_swap_the_gpu_build_is_what_gets_checked(tmp_path: Path, index: str) -> None:
    app = write_app(tmp_path, {"requirements.txt": "tensorflow==2.21.0\n"})
    result = preflight.check(app, pyversion.app_python(app), SwapConfig(enabled=False), where(index))
    assert result.builds[0]["requirement"] == "tensorflow==2.21.0"
    assert result.chosen == "3.13"


def test_an_unreachable_index_warns_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = write_app(tmp_path, {"requirements.txt": "tensorflow==2.21.0\n"})
    result = preflight.check(app, pyversion.app_python(app), SwapConfig(),
                             where(f"http://user:secret@127.0.0.1:{port}/simple"))
    assert result.status == "unreachable"
    assert not (app / ".python-version").exists()
    err = capsys.readouterr().err
    assert "could not check" in err and "goes on unchanged" in err and "secret" not in err


def test_index_settings_are_the_ones_heroku_pythons_pip_uses(tmp_path: Path) -> None:
    app = write_app(tmp_path, {"requirements.txt": "--extra-index-url https://b.example/simple\n-r more.txt\n",
                               "more.txt": "-i https://a.example/simple\n--pre\n"})
    found = preflight.index_settings(app, {"PIP_EXTRA_INDEX_URL": "https://c.example/simple",
                                           "PIP_INDEX_URL": "https://ignored.example/simple"})
    assert found.index_url == "https://a.example/simple"
    assert found.extra_index_urls == ("https://c.example/simple", "https://b.example/simple")
    assert found.pre
    # The build's own environment reaches pip; of the config vars only PIP_EXTRA_INDEX_URL does.
    assert simpleindex.settings({}, [], environ={"PIP_INDEX_URL": "https://env.example/simple"}).index_url \
        == "https://env.example/simple"


def test_prepare_writes_the_version_and_the_swap_uses_it(tmp_path: Path, index: str) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": f"--index-url {index}\ntensorflow==2.21.0\n"})
    (tmp_path / "env").mkdir()
    status = cli.main(["prepare", str(app), str(tmp_path / "cache"), str(tmp_path / "env"), "--buildpack", str(REPO),
                       "--python", sys.executable, "--tools", str(tmp_path / "tools")])
    assert status == 0
    assert (app / ".python-version").read_text() == "3.13\n"
    state = read_state(app)
    assert state.preflight["chosen"] == "3.13" and state.swap.python_version == "3.13"
    assert "tensorflow-cpu==2.21.0" in (app / "requirements.txt").read_text()


def test_find_links_without_an_index_are_read_too(tmp_path: Path, house: Path) -> None:
    offline = simpleindex.settings({}, [], environ={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(house)})
    app = write_app(tmp_path, {"requirements.txt": "tensorflow-cpu==2.21.0\n"})
    assert preflight.check(app, pyversion.app_python(app), SwapConfig(), offline).chosen == "3.13"


def test_no_python_with_wheels_warns_and_writes_nothing(tmp_path: Path, index: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(tmp_path, {"requirements.txt": "tensorflow==2.19.0\n"})  # not on this index at all
    result = preflight.check(app, pyversion.app_python(app), SwapConfig(), where(index))
    assert (result.status, result.chosen) == ("no-python", "")
    assert not (app / ".python-version").exists()
    assert "tensorflow-cpu==2.19.0" in capsys.readouterr().err


def test_a_pipenv_lock_is_checked_as_it_will_be_installed(tmp_path: Path, index: str) -> None:
    lock = {"_meta": {"requires": {}}, "default": {"tensorflow": {"version": "==2.21.0"}, "flask": {"version": "==3"}}}
    app = write_app(tmp_path, {"Pipfile.lock": json.dumps(lock)})
    result = preflight.check(app, pyversion.app_python(app), SwapConfig(), where(index))
    assert result.builds == [{"framework": "TensorFlow", "requirement": "tensorflow==2.21.0", "where": "Pipfile.lock",
                              "pythons": ["3.10", "3.11", "3.12", "3.13"]}]
    assert result.chosen == "3.13"


def test_an_index_that_answers_nonsense_is_a_warning_not_a_crash(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.end_headers()
            self.wfile.write(b"<html>not json</html>")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = write_app(tmp_path, {"requirements.txt": "tensorflow==2.21.0\n"})
        url = f"http://127.0.0.1:{server.server_address[1]}/simple"
        result = preflight.check(app, pyversion.app_python(app), SwapConfig(), where(url))
    finally:
        server.shutdown()
        server.server_close()
    assert result.status == "unreachable"
    assert "JSON that cannot be read" in capsys.readouterr().err


def test_of_the_config_vars_only_pip_extra_index_url_reaches_the_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    # heroku/python's pip gets PIP_EXTRA_INDEX_URL from the config vars and nothing else, so a
    # lookup that honoured PIP_INDEX_URL would answer for an index pip never asks.
    for name in ("PIP_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    config_vars = {"PIP_INDEX_URL": "http://127.0.0.1:9/private", "PIP_EXTRA_INDEX_URL": " http://127.0.0.1:9/extra ",
                   "PIP_NO_INDEX": "1"}
    env = pip.environment(config_vars)
    assert env["PIP_EXTRA_INDEX_URL"] == "http://127.0.0.1:9/extra"
    assert "PIP_INDEX_URL" not in env and "PIP_NO_INDEX" not in env
    found = simpleindex.settings(config_vars, [], environ={})
    assert (found.index_url, found.extra_index_urls, found.no_index) == (
        simpleindex.PYPI, ("http://127.0.0.1:9/extra",), False)
