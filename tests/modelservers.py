"""Model stores on 127.0.0.1 for the models tests: moto's S3 in server mode, and a plain HTTP server.

The HTTP server keeps objects in memory, accepts PUT, logs every request, and can misbehave on
purpose per path: ``hang`` (never answers), ``slow`` (answers after a second), ``truncate``
(closes the connection half-way, every time), ``truncate-once``, ``corrupt`` (right length,
wrong bytes), ``put-error`` (PUT answers 500).

tests/conftest.py loads this module as a pytest plugin, so its fixtures are there for every test.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.heroku.appdir import at_app

REPO = Path(__file__).resolve().parent.parent
BOOT_SCRIPT = REPO / "lib" / "slugslim" / "boot" / "slugslim-models.sh"
# Made-up credentials: the tests assert that none of these ever shows up in any output.
ACCESS_KEY = "AKIASLUGSLIMTESTKEY1"
SECRET_KEY = "sEcReT/slugslim+test/0123456789abcdefABCDEF"
SESSION_TOKEN = "TOKENslugslimSESSION987654321"
BUCKET = "slugslim-models"


@dataclass
class FileServer:
    server: ThreadingHTTPServer
    objects: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    # How many "slow" GETs were in flight at once, at most: proof of parallel downloads that does
    # not depend on how busy the machine is.
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    # When set, every request needs this Authorization header and this query string (a token), as
    # a private store would; objects are then kept by path alone.
    required_auth: str = ""
    required_query: str = ""

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def count(self, method: str, path: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and (not path or p == path))

    def reset(self) -> None:
        self.objects.clear()
        self.faults.clear()
        self.requests.clear()
        self.headers.clear()
        self.active = 0
        self.max_active = 0
        self.required_auth = ""
        self.required_query = ""


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _fault(self) -> str:
            fault = state.faults.get(self.path, "")
            if fault == "truncate-once":
                state.faults[self.path] = ""
                return "truncate"
            return fault

        def _refused(self) -> bool:
            """Answer 401 to a request without the required credentials; strip the token from the path."""
            path, _, query = self.path.partition("?")
            if not (state.required_auth or state.required_query):
                return False
            if self.headers.get("Authorization", "") != state.required_auth or query != state.required_query:
                self._empty(401)
                return True
            self.path = path
            return False

        def _empty(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            state.requests.append(("HEAD", self.path))
            if self._refused():
                return
            body = state.objects.get(self.path)
            if body is None:
                self._empty(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            state.headers.append(dict(self.headers.items()))
            if not self._refused():
                self._get()

        def _get(self) -> None:
            fault = self._fault()
            if fault == "hang":
                state.stopping.wait(30)
                return
            if fault == "slow":
                with state.lock:
                    state.active += 1
                    state.max_active = max(state.max_active, state.active)
                time.sleep(1)
                with state.lock:
                    state.active -= 1
            body = state.objects.get(self.path)
            if body is None:
                self._empty(404)
                return
            if fault == "corrupt":
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault == "truncate":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def do_PUT(self) -> None:
            state.requests.append(("PUT", self.path))
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self._refused():
                return
            if self._fault() == "put-error":
                self._empty(500)
                return
            state.objects[self.path] = body
            self._empty(201)

    return Handler


def start_file_server() -> FileServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = FileServer(server)
    server.RequestHandlerClass = _handler(state)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state


@pytest.fixture(scope="session")
def file_server_session() -> Iterator[FileServer]:
    state = start_file_server()
    yield state
    state.stopping.set()
    state.server.shutdown()


@pytest.fixture
def file_server(file_server_session: FileServer) -> FileServer:
    file_server_session.reset()
    return file_server_session


@dataclass
class S3:
    endpoint: str
    client: Any

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }
        env.update(extra)
        return env

    def object_keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=BUCKET)
        return sorted(item["Key"] for item in listed.get("Contents", []))


@pytest.fixture(scope="session")
def s3_session() -> Iterator[S3]:
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=BUCKET)
    yield S3(endpoint, client)
    server.stop()


@pytest.fixture
def s3_server(s3_session: S3) -> S3:
    for key in s3_session.object_keys():
        s3_session.client.delete_object(Bucket=BUCKET, Key=key)
    return s3_session


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_dyno(
    app_dir: Path, env: dict[str, str], command: str = "echo started", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Start a 'dyno' on the unpacked app: app_dir is bound onto /app (privately), bash sources every
    /app/.profile.d/*.sh with HOME=/app, from /app, then runs the process command, as Heroku does."""
    script = 'cd /app && for f in "$HOME"/.profile.d/*.sh; do [ -r "$f" ] && . "$f"; done; ' + command
    full = {"HOME": "/app", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DYNO": "web.1", **env}
    return subprocess.run(at_app(app_dir, ["bash", "-c", script]), env=full, capture_output=True, text=True,
                          timeout=timeout, check=False)


def unpack(slug: Path, into: Path) -> Path:
    """Unpack a slug as Heroku does for a dyno; the app is in the returned directory (the slug's ./app)."""
    into.mkdir()
    subprocess.run(["tar", "-xzf", str(slug), "-C", str(into)], check=True)
    return into / "app"


def slug_names(slug: Path) -> list[str]:
    listing = subprocess.run(["tar", "-tzf", str(slug)], capture_output=True, text=True, check=True).stdout
    return listing.splitlines()
