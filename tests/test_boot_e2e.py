"""The boot check inside the emulated Heroku build: real gunicorn and uvicorn, booted as a dyno would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from slugslim.appcheck import boot_check
from tests.conftest import HerokuBuild, write_app
from tests.heroku.appdir import at_app
from tests.wheelfactory import WheelSpec, build_wheel

pytestmark = pytest.mark.slow

# The view imports a module named in a data file, at request time: no static scan can see it.
WSGI_APP = '''import importlib
from pathlib import Path

PLUGIN = Path(__file__).with_name("plugin.txt").read_text().strip()


def app(environ, start_response):
    module = importlib.import_module(PLUGIN)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [module.ANSWER.encode()]
'''
ASGI_APP = '''async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


@pytest.fixture
def links(tmp_path: Path, offline_env: dict[str, str], web_wheels: Path) -> dict[str, str]:
    house = tmp_path / "boot-wheels"
    build_wheel(WheelSpec(name="plugins", files={"plugins/__init__.py": "", "plugins/late.py": "ANSWER = 'late'\n",
                                                 "plugins/never.py": "NEVER = 1\n"}), house)
    return {"PIP_FIND_LINKS": f"{house} {web_wheels} {offline_env['PIP_FIND_LINKS']}"}


def serve(build_dir: Path, command: str) -> tuple[int, str]:
    """Start the slug's web command the way a dyno does (independently of slugslim): at /app, HOME=/app; GET /."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/app", "PORT": str(port), "DYNO": "web.1"}
    script = f'cd /app && for f in .profile.d/*.sh; do source "$f"; done; exec {command}'
    proc = subprocess.Popen(at_app(build_dir, ["bash", "-c", script]), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, ""
            except OSError:
                time.sleep(0.2)
        return -1, "never answered"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def pyc(site: Path, module: str) -> list[Path]:
    package, _, name = module.rpartition("/")
    return list((site / package / "__pycache__").glob(f"{name}.*.pyc"))


def test_removing_what_the_dyno_loads_is_rolled_back_and_named(
        tmp_path: Path, heroku_build: HerokuBuild, links: dict[str, str]) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "gunicorn==27.0.1\nplugins==1.0.0\n", "app.py": WSGI_APP,
                                       "plugin.txt": "plugins.late\n", "Procfile": "web: gunicorn app:app\n"})
    # gunicorn's workers: `import gunicorn` still works without them, every dyno would crash.
    # plugins/late.py: imported only by a request, so only the booted web process sees it go.
    build = heroku_build(app, env=links, config_vars={"SLUGSLIM_PRUNE_REMOVE": "gunicorn/workers/**,plugins/late.py",
                                                      "SLUGSLIM_PRUNE_BYTECODE": "imported"})
    assert build.ok, build.log
    log = build.log
    assert "Booting the web process as a dyno would, before and after pruning: gunicorn app:app" in log
    assert "set verify.boot: false in slugslim.yml to turn this off" in log
    assert "The web process answered in" in log and "GET / 200" in log
    assert "Rule 'user' on package gunicorn broke your app" in log
    assert "import gunicorn.workers.sync: ModuleNotFoundError" in log
    assert "Rule 'user' on package plugins broke your app" in log
    assert ("web process: GET / answered HTTP 500; its output ends: "
            "ModuleNotFoundError: No module named 'plugins.late'") in log, log
    site = build.site_packages()
    assert (site / "gunicorn/workers/sync.py").is_file() and (site / "plugins/late.py").is_file()
    # prune.bytecode: imported, per module: the request-time import keeps its bytecode, the module
    # nothing loads loses it.
    assert pyc(site, "plugins/late") and pyc(site, "gunicorn/workers/sync")
    assert not pyc(site, "plugins/never")
    assert serve(build.build_dir, "gunicorn app:app") == (200, "late")


def test_uvicorn_behind_a_procfile_with_a_byte_order_mark(
        tmp_path: Path, heroku_build: HerokuBuild, links: dict[str, str]) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": "uvicorn==0.54.0\n", "main.py": ASGI_APP,
                                       "Procfile": b"\xef\xbb\xbfweb: uvicorn main:app --host 0.0.0.0 --port $PORT\n"})
    build = heroku_build(app, env=links, config_vars={"SLUGSLIM_PRUNE_BYTECODE": "imported"})
    assert build.ok, build.log
    assert "before and after pruning: uvicorn main:app --host 0.0.0.0 --port $PORT" in build.log
    assert "the web process answers" in build.log
    site = build.site_packages()
    # uvicorn picks its HTTP protocol module by name at start-up: only the boot shows it is used.
    assert pyc(site, "uvicorn/protocols/http/h11_impl") and pyc(site, "h11/_connection")
    assert not pyc(site, "uvicorn/workers")  # gunicorn's worker class, never loaded here
    # The memory one web process needs is the booted process's, not the import check's.
    memory = json.loads((build.build_dir / ".slugslim/report.json").read_text())["memory"]
    assert memory["measured_by"] == "the booted web process", memory
    assert 10 << 20 < memory["process_bytes"] < 400 << 20
    assert "One web process needs about" in build.log and "(the booted web process: " in build.log
    assert serve(build.build_dir, "uvicorn main:app --host 0.0.0.0 --port $PORT") == (200, "ok")


def test_a_baseline_that_cannot_boot_falls_back_to_imports(
        tmp_path: Path, heroku_build: HerokuBuild, links: dict[str, str]) -> None:
    # Needs a database URL only the dyno has: the build cannot boot it, and must not fail for it.
    app = write_app(tmp_path / "app", {"requirements.txt": "gunicorn==27.0.1\n", "Procfile": "web: gunicorn app:app\n",
                                       "app.py": "import os\nDATABASE = os.environ['DATABASE_URL']\n" + WSGI_APP})
    build = heroku_build(app, env=links)
    assert build.ok, build.log
    assert "The web process did not boot before pruning (it exited with status 3 before answering GET /" in build.log
    assert "so slugslim checks imports only" in build.log
    assert "Verified the pruned tree" in build.log and "the web process answers" not in build.log


def test_a_boot_that_hangs_is_stopped_at_the_timeout(
        tmp_path: Path, heroku_build: HerokuBuild, links: dict[str, str]) -> None:
    marker = f"slugslim-hang-{os.getpid()}-{time.monotonic_ns()}"
    app = write_app(tmp_path / "app", {"requirements.txt": "plugins==1.0.0\n", "app.py": "import plugins\n",
                                       "Procfile": f"web: python -c 'import time; time.sleep(600)' {marker}\n"})
    build = heroku_build(app, env=links, config_vars={"SLUGSLIM_VERIFY_BOOT_TIMEOUT": "2"})
    assert build.ok, build.log
    assert "it did not answer on $PORT within 2 s (verify.boot_timeout)" in build.log
    assert "so slugslim checks imports only" in build.log
    # The whole process group was stopped: nothing of the web process outlives the build.
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_the_failure_names_the_apps_exception_not_the_servers_log_line_after_it() -> None:
    """gunicorn 27 logs its control server's error after the worker's traceback at times (its socket path
    is too long under a test's HOME): the failure still names the app's exception."""
    tail = ("Traceback (most recent call last):\n  File \"app.py\", line 1, in <module>\n"
            "ModuleNotFoundError: No module named 'plugins.late'\n"
            "[2026-12-04 02:30:37 +0000] [11587] [INFO] Worker exiting (pid: 11587)\n"
            "[2026-12-04 02:30:37 +0000] [11587] [ERROR] Control server error: AF_UNIX path too long\n")
    assert boot_check._telling(tail) == "ModuleNotFoundError: No module named 'plugins.late'"
    assert boot_check._telling("[ERROR] Control server error: AF_UNIX path too long\nbye\n").startswith("[ERROR]")
    assert boot_check._telling("starting\nlistening\n") == "listening"
