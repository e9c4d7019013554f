"""A stand-in for the Hugging Face Hub on 127.0.0.1, for the real huggingface_hub client (2.x).

Point the client at it with ``HF_ENDPOINT`` (``client_env`` gives a whole environment). It answers
the calls that ``hf_hub_download``, ``snapshot_download``, ``model_info``, ``list_repo_files`` and
``list_repo_tree`` make, and so what transformers and sentence-transformers make through them:

    GET      /api/models/<repo>[/revision/<rev>]      repo info; ?blobs=true adds sizes, blob ids, LFS
    GET      /api/models/<repo>/tree/<rev>[/<path>]   files and folders; ?recursive=true, ?expand=true
    POST     /api/models/<repo>/paths-info/<rev>      the same entries for the form's ``paths``
    GET      /api/models/<repo>/discussions           always none (transformers asks for safetensors PRs)
    GET      /api/agent-harnesses                     no AI agents (importing huggingface_hub.cli asks)
    HEAD/GET /<repo>/resolve/<rev>/<path>             the file: X-Repo-Commit, ETag, X-Linked-Etag/-Size

The client picks its exception from the ``X-Error-Code`` header, so errors carry the Hub's codes:
RepoNotFound (401 without a token, 404 with one), GatedRepo (401, on downloads only: a gated repo's
info and file list are public on the Hub too), RevisionNotFound and EntryNotFound (404). A token
other than the server's gets 401 "Invalid credentials in Authorization header", as on the Hub.

The server never sends ``X-Xet-Hash``, so the client downloads over plain HTTP even with hf_xet
installed. Files are served from memory; a commit's sha is a hash of its paths and contents.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "hf_slugslim_test_token"
# What the Hub's default .gitattributes sends to LFS, and anything over 10 MB (the Hub refuses
# bigger plain git files). The client names an LFS file's blob by its sha256, others by git's sha1.
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".h5", ".ot", ".msgpack", ".pt", ".pth", ".ckpt", ".gguf",
                ".tflite", ".pb", ".npy", ".npz", ".pkl", ".pickle", ".joblib", ".model", ".zip", ".tar", ".gz")
LFS_MIN_SIZE = 10 * 1024 * 1024


class HubRequest(NamedTuple):
    method: str
    path: str  # as sent, percent-encoded, without the query string
    has_auth: bool
    sent: int = 0  # bytes of the answer's body (0 for HEAD): what a download cost


@dataclass(frozen=True)
class Blob:
    """One file of a commit with the hashes the Hub reports for it."""

    content: bytes
    blob_id: str  # git's blob sha1: of the content, or of the LFS pointer file for an LFS file
    sha256: str | None  # set for LFS files only
    pointer_size: int

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id

    @classmethod
    def of(cls, path: str, content: bytes) -> Blob:
        def git_sha1(data: bytes) -> str:
            return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

        if not (path.endswith(LFS_SUFFIXES) or len(content) > LFS_MIN_SIZE):
            return cls(content, git_sha1(content), None, 0)
        sha256 = hashlib.sha256(content).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(content)}\n".encode()
        return cls(content, git_sha1(pointer), sha256, len(pointer))


def commit_sha(files: Mapping[str, bytes]) -> str:
    """A commit's 40-hex sha: the same files give the same sha."""
    digest = hashlib.sha1()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return digest.hexdigest()


@dataclass
class HubRepo:
    """A model repository as the server starts with it: one commit, which each of `revisions` names."""

    id: str  # "org/name"
    files: dict[str, bytes]
    gated: bool = False
    revisions: tuple[str, ...] = ("main",)

    @property
    def sha(self) -> str:
        return commit_sha(self.files)


@dataclass
class _Commit:
    sha: str
    blobs: dict[str, Blob]
    date: str


@dataclass
class _Repo:
    id: str
    gated: bool
    commits: dict[str, _Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def commit(self, files: Mapping[str, bytes], revisions: Iterable[str]) -> str:
        sha = commit_sha(files)
        date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        self.commits.setdefault(sha, _Commit(sha, {p: Blob.of(p, c) for p, c in files.items()}, date))
        self.refs.update(dict.fromkeys(revisions, sha))
        return sha


class HubServer:
    """The stand-in Hub, as a context manager: ``with HubServer([HubRepo(...)]) as hub:``.

    ``hub.requests`` records every request it answered, with the bytes of each answer's body
    (``downloaded()`` sums the file downloads); ``down()`` closes the listener and the
    open connections so that connecting is refused, ``up()`` listens on the same port again.
    """

    def __init__(self, repos: Iterable[HubRepo] = (), token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[HubRequest] = []
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._port = 0
        for repo in repos:
            self.add(repo)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def add(self, repo: HubRepo) -> str:
        """Add `repo`, replacing any repo of that id and its history; its commit's sha."""
        with self._lock:
            self._repos[repo.id] = _Repo(repo.id, repo.gated)
            return self._repos[repo.id].commit(repo.files, repo.revisions)

    def commit(self, repo_id: str, files: Mapping[str, bytes], *, replace: bool = False,
               revision: str = "main") -> str:
        """A new commit on `revision` (a new branch starts from main): its files plus `files`, or only
        `files` with `replace`; its sha. Earlier commits stay downloadable by their sha, as on the Hub."""
        with self._lock:
            repo = self._repos[repo_id]
            parent = repo.commits[repo.refs.get(revision, repo.refs["main"])]
            base = {} if replace else {path: blob.content for path, blob in parent.blobs.items()}
            return repo.commit({**base, **files}, [revision])

    def sha(self, repo_id: str, revision: str = "main") -> str:
        with self._lock:
            return self._repos[repo_id].refs[revision]

    def count(self, method: str = "", prefix: str = "") -> int:
        """How many requests with this method (any, if empty) had a path starting with `prefix`."""
        with self._lock:
            return sum(1 for r in self.requests if (not method or r.method == method) and r.path.startswith(prefix))

    def downloaded(self) -> int:
        """Bytes the answers to GET /<repo>/resolve/<rev>/<path> carried so far: the files downloaded
        (and the few bytes of each refusal's message)."""
        with self._lock:
            return sum(r.sent for r in self.requests if r.method == "GET" and "/resolve/" in r.path)

    def up(self) -> None:
        """Listen (again, on the same port after `down`)."""
        if self._server is not None:
            return
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self))
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def down(self) -> None:
        """Stop listening and cut open connections: the client's next request is refused."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client closed it already
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> HubServer:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


class _Refusal(Exception):
    """An error answer: HTTP status, the Hub's X-Error-Code and its message."""

    def __init__(self, status: int, code: str, message: str, commit: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


def _entries(commit: _Commit, under: str, recursive: bool, expand: bool) -> list[dict[str, Any]]:
    """The /tree listing of folder `under` ("" for the root), as the Hub writes it."""
    prefix = f"{under}/" if under else ""
    folders: set[str] = set()
    files: list[dict[str, Any]] = []
    for path in sorted(commit.blobs):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix):].split("/")
        depth = len(parts) if recursive else 1
        folders.update(prefix + "/".join(parts[:n]) for n in range(1, min(depth, len(parts) - 1) + 1))
        if recursive or len(parts) == 1:
            files.append(_file_entry(commit, path))
    if prefix and not files and not folders:
        raise _Refusal(404, "EntryNotFound", f"{under} does not exist on \"{commit.sha}\"", commit.sha)
    entries = [{"type": "directory", "oid": hashlib.sha1(f"{commit.sha} {folder}".encode()).hexdigest(), "size": 0,
                "path": folder} for folder in sorted(folders)] + files
    if expand:
        for entry in entries:
            entry["lastCommit"] = {"id": commit.sha, "title": "Upload", "date": commit.date}
    return entries


def _file_entry(commit: _Commit, path: str) -> dict[str, Any]:
    blob = commit.blobs[path]
    entry: dict[str, Any] = {"type": "file", "oid": blob.blob_id, "size": len(blob.content), "path": path}
    if blob.sha256:
        entry["lfs"] = {"oid": blob.sha256, "size": len(blob.content), "pointerSize": blob.pointer_size}
    return entry


def _info(repo: _Repo, commit: _Commit, blobs: bool) -> dict[str, Any]:
    """What /api/models/<repo>[/revision/<rev>] answers: the fields ModelInfo reads."""
    siblings: list[dict[str, Any]] = []
    for path, blob in sorted(commit.blobs.items()):
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling.update(size=len(blob.content), blobId=blob.blob_id)
            if blob.sha256:
                sibling["lfs"] = {"sha256": blob.sha256, "size": len(blob.content), "pointerSize": blob.pointer_size}
        siblings.append(sibling)
    author = repo.id.split("/")[0] if "/" in repo.id else None
    return {"_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id, "modelId": repo.id, "author": author,
            "sha": commit.sha, "lastModified": commit.date, "createdAt": commit.date, "private": False,
            "gated": "auto" if repo.gated else False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": [], "library_name": None, "siblings": siblings, "spaces": [],
            "usedStorage": sum(len(b.content) for b in commit.blobs.values())}


def _split_repo(segments: list[str]) -> tuple[str, list[str]]:
    """The repo id and the rest of a path: "org/name" or, for the Hub's old ids without an org, "name"."""
    actions = ("revision", "tree", "paths-info", "discussions", "resolve")
    n = 2 if len(segments) > 1 and segments[1] not in actions else 1
    return "/".join(segments[:n]), segments[n:]


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        _request: HubRequest  # the request being answered, recorded when its answer goes out

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with hub._lock:
                hub._connections.add(self.connection)

        def finish(self) -> None:
            with hub._lock:
                hub._connections.discard(self.connection)
            super().finish()

        def do_HEAD(self) -> None:
            self._answer()

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            url = urlsplit(self.path)
            auth = self.headers.get("Authorization")
            self._request = HubRequest(self.command, url.path, auth is not None)
            query = {k: v[-1].lower() for k, v in parse_qs(url.query).items()}
            # A POST's form, read even when refused, so that the connection stays usable.
            form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
            segments = [unquote(s) for s in url.path.strip("/").split("/")]
            try:
                if auth is not None and auth != f"Bearer {hub.token}":
                    raise _Refusal(401, "", "Invalid credentials in Authorization header")
                if url.path == "/api/agent-harnesses":  # the `hf` CLI's first call, on import: no agents
                    self._json({"standardEnvVars": [], "harnesses": {}})
                elif segments[:2] == ["api", "models"] and len(segments) > 2:
                    self._api(*_split_repo(segments[2:]), query, form, auth is not None)
                elif "resolve" in segments[1:3] and self.command in ("GET", "HEAD"):
                    repo_id, rest = _split_repo(segments)
                    if len(rest) < 3:
                        raise _Refusal(404, "EntryNotFound", "Entry not found")
                    self._resolve(repo_id, rest[1], "/".join(rest[2:]), auth is not None)
                else:
                    raise _Refusal(404, "", "Sorry, we can't find the page you are looking for.")
            except _Refusal as refusal:
                headers = {"X-Error-Message": refusal.message}
                if refusal.code:
                    headers["X-Error-Code"] = refusal.code
                if refusal.commit:
                    headers["X-Repo-Commit"] = refusal.commit
                self._send(refusal.status, json.dumps({"error": refusal.message}).encode(), headers)

        def _find(self, repo_id: str, revision: str, has_auth: bool) -> tuple[_Repo, _Commit]:
            with hub._lock:
                repo = hub._repos.get(repo_id)
                if repo is None:
                    raise _Refusal(404 if has_auth else 401, "RepoNotFound", "Repository not found")
                sha = repo.refs.get(revision, revision)
                if sha not in repo.commits:
                    raise _Refusal(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return repo, repo.commits[sha]

        def _api(self, repo_id: str, rest: list[str], query: dict[str, str], form: dict[str, list[str]],
                 has_auth: bool) -> None:
            action = rest[0] if rest else "revision"
            repo, commit = self._find(repo_id, rest[1] if len(rest) > 1 else "main", has_auth)
            if action == "revision":
                body: Any = _info(repo, commit, query.get("blobs") in ("true", "1"))
            elif action == "tree":
                body = _entries(commit, "/".join(rest[2:]).strip("/"), query.get("recursive") in ("true", "1"),
                                query.get("expand") in ("true", "1"))
            elif action == "paths-info" and self.command == "POST":
                wanted = {p.strip("/") for p in form.get("paths", [])}
                listed = _entries(commit, "", True, form.get("expand", [""])[-1].lower() == "true")
                body = [entry for entry in listed if entry["path"] in wanted]
            elif action == "discussions":
                body = {"discussions": [], "count": 0, "start": 0, "numClosedDiscussions": 0}
            else:
                raise _Refusal(404, "", "Sorry, we can't find the page you are looking for.")
            self._json(body)

        def _json(self, body: Any) -> None:
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json; charset=utf-8"})

        def _resolve(self, repo_id: str, revision: str, path: str, has_auth: bool) -> None:
            repo, commit = self._find(repo_id, revision, has_auth)
            if repo.gated and not has_auth:
                raise _Refusal(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                               "to it and be authenticated to access it. Please log in.")
            blob = commit.blobs.get(path)
            if blob is None:
                raise _Refusal(404, "EntryNotFound", "Entry not found", commit.sha)
            headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
            if blob.sha256:
                headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.content))})
            body = blob.content
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if match and int(match[1]) < len(body):
                end = min(int(match[2] or len(body) - 1), len(body) - 1)
                headers["Content-Range"] = f"bytes {match[1]}-{end}/{len(body)}"
                self._send(206, body[int(match[1]):end + 1], headers)
            else:
                self._send(200, body, headers)

        def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
            # Recorded before answering, so a client that has its answer finds its request here.
            sent = 0 if self.command == "HEAD" else len(body)
            with hub._lock:
                hub.requests.append(self._request._replace(sent=sent))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                view = memoryview(body)
                for start in range(0, len(body), 1 << 20):
                    self.wfile.write(view[start:start + (1 << 20)])

    return Handler


def client_env(hub: HubServer, hf_home: Path, token: str | None = None) -> dict[str, str]:
    """The environment for a huggingface_hub process that sees only `hub` and its own cache in `hf_home`.

    Nothing of the machine's: no HOME token file, no telemetry, short timeouts. Add PATH if it runs
    programs, and HF_HUB_OFFLINE=1 to forbid requests."""
    env = {"HOME": str(hf_home), "HF_HOME": str(hf_home), "HF_ENDPOINT": hub.endpoint,
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_ETAG_TIMEOUT": "3", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}
    if token is not None:
        env["HF_TOKEN"] = token
    return env
