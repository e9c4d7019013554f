"""A tiny object store on 127.0.0.1 for the models lever: PUT to upload, HEAD and GET to read.

It stands in for an https:// bucket that accepts PUT. It runs in a thread of the bench, so the
builds upload to it and the cold-start runs fetch from it, all on this machine (no network
latency: the boot fetch it measures is a lower bound of a real one).
"""

from __future__ import annotations

import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer

    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}")

    def _target(self) -> Path | None:
        relative = unquote(urlsplit(self.path).path).lstrip("/")
        target = (self.server.root / relative).resolve()
        if not relative or not target.is_relative_to(self.server.root):
            self.send_error(HTTPStatus.FORBIDDEN)
            return None
        return target

    def do_PUT(self) -> None:
        target = self._target()
        if target is None:
            return
        length = int(self.headers.get("Content-Length", "0"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as out:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                out.write(chunk)
                remaining -= len(chunk)
        if remaining:
            partial.unlink()
            self.send_error(HTTPStatus.BAD_REQUEST, "truncated upload")
            return
        partial.replace(target)
        self.send_response(HTTPStatus.CREATED)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _read(self, body: bool) -> None:
        target = self._target()
        if target is None:
            return
        if not target.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(target.stat().st_size))
        self.end_headers()
        if body:
            with target.open("rb") as source:
                shutil.copyfileobj(source, self.wfile, 1 << 20)

    def do_GET(self) -> None:
        self._read(body=True)

    def do_HEAD(self) -> None:
        self._read(body=False)


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="model-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
