"""Where excluded models live: an S3 bucket (or S3-compatible store) or an https prefix that accepts PUT.

Keys are content-addressed, ``<prefix>/<sha256>/<filename>``, so an object that is there is the
right object, an unchanged model is never uploaded twice, and two apps can share a bucket.

Only the standard library: http.client for the requests and ``slugslim.sigv4`` for S3's
signatures. Nothing here prints: callers log ``Location.shown``, which never carries
credentials, userinfo or query strings (a pre-signed URL is a credential).
"""

from __future__ import annotations

import abc
import base64
import http.client
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from slugslim.core import log
from slugslim.core.errors import StoreError
from slugslim.finish.models import sigv4

TIMEOUT = 60.0
ATTEMPTS = 3
RETRY_DELAY = 2.0
BLOCK = 1 << 20


@dataclass(frozen=True)
class Location:
    """One object. ``uri`` goes into the manifest, ``shown`` into logs: neither holds a secret.

    The slug is copied to every app of a pipeline, so the credentials of an https source (its
    userinfo, its query string) stay with the store here, and the dyno's boot fetch reads them
    from the config vars at run time (SLUGSLIM_MODELS_SOURCE or SLUGSLIM_MODELS_AUTH).
    """

    uri: str
    shown: str


def object_key(prefix: str, sha256: str, filename: str) -> str:
    return "/".join(p for p in (prefix.strip("/"), sha256, filename) if p)


class _Progress:
    """A file wrapper that reports how many bytes http.client has read so far."""

    def __init__(self, handle: BinaryIO, report: Callable[[int], None]) -> None:
        self._handle = handle
        self._report = report
        self._sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._sent += len(chunk)
        self._report(self._sent)
        return chunk


def _connection(scheme: str, netloc: str) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(f"{scheme}://{netloc}")
    host = parts.hostname or ""
    if scheme == "https":
        return http.client.HTTPSConnection(
            host, parts.port, timeout=TIMEOUT, context=ssl.create_default_context(), blocksize=BLOCK
        )
    return http.client.HTTPConnection(host, parts.port, timeout=TIMEOUT, blocksize=BLOCK)


def _s3_code(body: bytes) -> str:
    """The <Code> of an S3 error body. Only the code: the rest can echo the access key and request."""
    match = re.search(rb"<Code>([A-Za-z0-9.]{1,64})</Code>", body)
    return f" ({match.group(1).decode()})" if match else ""


class Store(abc.ABC):
    """HEAD and PUT of content-addressed objects. Subclasses say how a URL is built and signed."""

    scheme = "https"
    netloc = ""
    kind = ""

    @abc.abstractmethod
    def location(self, sha256: str, filename: str) -> Location: ...

    @abc.abstractmethod
    def _target(self, location: Location) -> tuple[str, str, str]:
        """(scheme, netloc, encoded path) of the request for a location."""

    def _headers(self, method: str, netloc: str, path: str, payload_sha256: str) -> dict[str, str]:
        return {}

    def _request(
        self, method: str, location: Location, body: BinaryIO | None = None, size: int = 0, sha256: str = ""
    ) -> tuple[int, bytes, int]:
        """(status, body, Content-Length or -1). HEAD bodies are empty, but their length is the object's."""
        scheme, netloc, path = self._target(location)
        headers = {"content-type": "application/octet-stream"} if method == "PUT" else {}
        payload = sha256 if method == "PUT" else sigv4.EMPTY_SHA256
        headers.update(self._headers(method, netloc, path, payload))
        if method == "PUT":
            headers["content-length"] = str(size)
        connection = _connection(scheme, netloc)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read() if method != "HEAD" else b""
            length = response.getheader("content-length", "")
            return response.status, data, int(length) if length.isdigit() else -1
        except (OSError, http.client.HTTPException) as exc:
            # str(exc) of a socket error names the host at most, never our headers.
            raise StoreError(f"could not reach {log.redact(f'{scheme}://{netloc}')}: {exc}") from None
        finally:
            connection.close()

    def exists(self, location: Location, size: int) -> bool:
        """True if the object is there with the expected size; False if it is not there (or is not whole)."""
        status, body, length = self._request("HEAD", location)
        if status == 200:
            # The key names the content, so the right size means the right object; a wrong size
            # is an interrupted upload by some other tool, and uploading again repairs it.
            return length in (size, -1)
        if status == 404:
            return False
        raise StoreError(f"checking {location.shown} returned HTTP {status}{_s3_code(body)}")

    def put(self, location: Location, path: Path, size: int, sha256: str, progress: Callable[[int], None]) -> None:
        last = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(RETRY_DELAY * attempt)
            with path.open("rb") as handle:
                try:
                    status, body, _ = self._request(
                        "PUT", location, _Progress(handle, progress), size, sha256  # type: ignore[arg-type]
                    )
                except StoreError as exc:
                    last = str(exc)
                    continue
            if status in (200, 201, 204):
                return
            last = f"uploading to {location.shown} returned HTTP {status}{_s3_code(body)}"
            if status < 500 and status != 429:
                break
        raise StoreError(last)


class S3Store(Store):
    kind = "s3"

    def __init__(
        self, bucket: str, prefix: str, region: str, credentials: sigv4.Credentials, endpoint: str = ""
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self.credentials = credentials
        self.endpoint = endpoint.rstrip("/")

    def location(self, sha256: str, filename: str) -> Location:
        key = sigv4.quote_key(object_key(self.prefix, sha256, filename))
        uri = f"s3://{self.bucket}/{key}"
        return Location(uri=uri, shown=uri)

    def _target(self, location: Location) -> tuple[str, str, str]:
        key = location.uri[len(f"s3://{self.bucket}/") :]
        if self.endpoint:
            # S3-compatible stores (MinIO, R2, Bucketeer's endpoint) all take path-style requests.
            parts = urllib.parse.urlsplit(self.endpoint)
            base = parts.path.rstrip("/")
            return parts.scheme, parts.netloc, f"{base}/{self.bucket}/{key}"
        if "." in self.bucket:
            # A dotted bucket name does not match the *.s3 wildcard certificate: use path style.
            return "https", f"s3.{self.region}.amazonaws.com", f"/{self.bucket}/{key}"
        return "https", f"{self.bucket}.s3.{self.region}.amazonaws.com", f"/{key}"

    def _headers(self, method: str, netloc: str, path: str, payload_sha256: str) -> dict[str, str]:
        extra = {"content-type": "application/octet-stream"} if method == "PUT" else {}
        return sigv4.sign(method, netloc, path, extra, payload_sha256, self.credentials, self.region)


class HttpStore(Store):
    kind = "https"

    def __init__(self, base: str, auth: str = "") -> None:
        """``auth``: ``user:password`` (the SLUGSLIM_MODELS_AUTH config var), unless ``base`` has userinfo."""
        parts = urllib.parse.urlsplit(base)
        self.parts = parts
        self.query = parts.query  # a token or a signature: sent, never written down
        if parts.username is not None:
            auth = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        self.auth = "Basic " + base64.b64encode(auth.encode()).decode() if auth else ""

    def location(self, sha256: str, filename: str) -> Location:
        key = sigv4.quote_key(object_key("", sha256, filename))
        uri = log.redact(f"{self.parts.scheme}://{self.parts.netloc}{self.parts.path.rstrip('/')}/{key}")
        return Location(uri=uri, shown=uri)

    def _target(self, location: Location) -> tuple[str, str, str]:
        parts = urllib.parse.urlsplit(location.uri)
        netloc = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        return parts.scheme, netloc, parts.path + (f"?{self.query}" if self.query else "")

    def _headers(self, method: str, netloc: str, path: str, payload_sha256: str) -> dict[str, str]:
        return {"authorization": self.auth} if self.auth else {}


def s3_settings(env: Mapping[str, str]) -> tuple[str, str]:
    """(region, endpoint) from config vars, the way the AWS CLI reads them."""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
    return region.strip(), endpoint.strip()


def open_store(source: str, env: Mapping[str, str]) -> Store:
    """The store behind ``models.source``. Raises StoreError when an s3 source has no credentials."""
    parts = urllib.parse.urlsplit(source)
    if parts.scheme == "s3":
        access = env.get("AWS_ACCESS_KEY_ID", "").strip()
        secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
        if not access or not secret:
            raise StoreError(
                "the config vars AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, "
                f"so s3://{parts.netloc} cannot be reached"
            )
        region, endpoint = s3_settings(env)
        credentials = sigv4.Credentials(access, secret, env.get("AWS_SESSION_TOKEN", "").strip())
        return S3Store(parts.netloc, parts.path, region, credentials, endpoint)
    return HttpStore(source, env.get("SLUGSLIM_MODELS_AUTH", "").strip())
