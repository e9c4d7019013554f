"""A tiny PEP 503 package index on 127.0.0.1, serving the wheels of one directory.

Project pages link each file with a ``#sha256=`` fragment, as real indexes do, so pip (and
pip-compile) learn hashes from the index without downloading; files answer HEAD with their size.
With ``metadata=True`` each link also says its core metadata is served beside the file (PEP 658,
``<file>.metadata``), as PyPI and PyTorch's index do, so that resolvers (uv, pip) read a
dependency's requirements without downloading its wheel. ``requests``, when given, receives the
path of every request in the order they were answered.
"""

from __future__ import annotations

import hashlib
import html
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.wheelfactory import normalize


def _project(filename: str) -> str:
    return normalize(filename.split("-", 1)[0])


def _core_metadata(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA")))


def _metadata_attributes(wheel: Path) -> str:
    digest = f"sha256={hashlib.sha256(_core_metadata(wheel)).hexdigest()}"
    return f' data-core-metadata="{digest}" data-dist-info-metadata="{digest}"'


@contextmanager
def serve(wheel_dir: Path, *, metadata: bool = False, requests: list[str] | None = None) -> Iterator[str]:
    """Serve wheel_dir; yields the index URL (``http://127.0.0.1:PORT/simple``)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, body: bytes, content_type: str, head: bool = False) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _route(self, head: bool) -> None:
            if requests is not None:
                requests.append(self.path)
            parts = [urllib.parse.unquote(p) for p in self.path.split("?")[0].split("/") if p]
            files = sorted(p for p in wheel_dir.iterdir() if p.suffix == ".whl")
            if parts == ["simple"]:
                names = sorted({_project(f.name) for f in files})
                body = "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in names)
                return self._send(f"<html><body>{body}</body></html>".encode(), "text/html", head)
            if len(parts) == 2 and parts[0] == "simple":
                links = [f for f in files if _project(f.name) == normalize(parts[1])]
                if not links:
                    self.send_error(404)
                    return None
                body = "".join(
                    f'<a href="/files/{html.escape(f.name)}#sha256={hashlib.sha256(f.read_bytes()).hexdigest()}"'
                    f"{_metadata_attributes(f) if metadata else ''}>{html.escape(f.name)}</a>\n" for f in links)
                return self._send(f"<html><body>{body}</body></html>".encode(), "text/html", head)
            if metadata and len(parts) == 2 and parts[0] == "files" and parts[1].endswith(".whl.metadata") \
                    and (wheel_dir / parts[1].removesuffix(".metadata")).is_file():
                return self._send(_core_metadata(wheel_dir / parts[1].removesuffix(".metadata")), "text/plain", head)
            if len(parts) == 2 and parts[0] == "files" and (wheel_dir / parts[1]).is_file():
                return self._send((wheel_dir / parts[1]).read_bytes(), "application/octet-stream", head)
            self.send_error(404)
            return None

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()
