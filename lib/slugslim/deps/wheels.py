"""Which wheel pip would install for a requirement on the app's Python, and its sha256 and size.

We ask pip itself, so the answer honours the same index configuration the install will use
(``--index-url``/``--extra-index-url``/``--find-links`` lines, PIP_INDEX_URL and friends):

    pip install --dry-run --no-deps --ignore-installed --report FILE --only-binary=:all:
        --python-version X.Y --target TMP REQUIREMENT

The report names the chosen file and its sha256 without downloading the wheel (pip reads only
its metadata, which PyPI-style indexes serve on their own). The app's Python is installed later by
heroku/python, so ``--python-version`` stands in for it. Sizes come from the file itself for local
files and from the index's Content-Length otherwise; when neither answers the size is unknown.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from packaging.utils import canonicalize_name

from slugslim.core import pip
from slugslim.core.errors import LookupFailed

# Variables that change where pip looks, as the build's own environment sets them.


@dataclass(frozen=True)
class WheelInfo:
    name: str
    version: str
    filename: str
    url: str
    sha256: str | None
    size: int | None
    requires: tuple[str, ...] = ()  # its Requires-Dist, as pip read them from the index

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "filename": self.filename, "sha256": self.sha256,
                "size": self.size}


class Lookup(Protocol):
    def find(self, requirement: str) -> WheelInfo: ...

    def find_all(self, requirements: list[str]) -> dict[str, WheelInfo]:
        """Several requirements of different projects in one go; keys are canonical names."""
        ...


class NoLookup:
    """For dry runs that must not touch the network: every lookup fails."""

    def find(self, requirement: str) -> WheelInfo:
        raise LookupFailed("no index lookups in this run")

    def find_all(self, requirements: list[str]) -> dict[str, WheelInfo]:
        raise LookupFailed("no index lookups in this run")


class PipLookup:
    """Asks pip (running on our own interpreter) what it would install for the app's Python."""

    def __init__(self, python_version: str, config_vars: Mapping[str, str] | None = None,
                 index_options: Sequence[str] = (), timeout: int = 120) -> None:
        self.python_version = python_version
        self.env = pip.environment(config_vars or {})
        self.index_options = list(index_options)
        self.timeout = timeout
        self._cache: dict[str, WheelInfo] = {}

    def command(self, requirements: Sequence[str], report: Path, target: Path) -> list[str]:
        return [
            sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
            "--quiet", "--report", str(report), "--only-binary=:all:", "--python-version", self.python_version,
            "--target", str(target), "--timeout", "15", "--retries", "1", *self.index_options, *requirements,
        ]

    def find(self, requirement: str) -> WheelInfo:
        if requirement not in self._cache:
            found = self._run([requirement])
            if len(found) != 1:
                raise LookupFailed("pip chose nothing to install")
            self._cache[requirement] = next(iter(found.values()))
        return self._cache[requirement]

    def find_all(self, requirements: list[str]) -> dict[str, WheelInfo]:
        """One pip run for several projects (each pip run costs about a second)."""
        return self._run(requirements)

    def _run(self, requirements: Sequence[str]) -> dict[str, WheelInfo]:
        with tempfile.TemporaryDirectory(prefix="slugslim-lookup-") as scratch:
            report = Path(scratch) / "report.json"
            try:
                done = subprocess.run(self.command(requirements, report, Path(scratch) / "target"), env=self.env,
                                      capture_output=True, text=True, timeout=self.timeout, check=False)
            except subprocess.TimeoutExpired as exc:
                raise LookupFailed(f"pip did not answer within {self.timeout} s") from exc
            if done.returncode != 0 or not report.is_file():
                lines = [line for line in (done.stderr + done.stdout).strip().splitlines() if line.strip()]
                raise LookupFailed("pip said: " + (" / ".join(lines[-3:]) if lines else f"exit {done.returncode}"))
            installs = json.loads(report.read_text(encoding="utf-8")).get("install") or []
            infos = [_from_report_item(item) for item in installs]
        return {canonicalize_name(info.name): info for info in infos}


def _from_report_item(item: dict[str, Any]) -> WheelInfo:
    download = item.get("download_info", {})
    url = str(download.get("url", ""))
    archive = download.get("archive_info", {})
    sha256 = (archive.get("hashes") or {}).get("sha256")
    if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
        sha256 = str(archive["hash"]).split("=", 1)[1]
    metadata = item.get("metadata", {})
    filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    return WheelInfo(name=str(metadata.get("name", "")), version=str(metadata.get("version", "")),
                     filename=filename, url=url, sha256=sha256, size=file_size(url),
                     requires=tuple(str(r) for r in metadata.get("requires_dist") or []))


def file_size(url: str, timeout: float = 10.0) -> int | None:
    """Bytes of the file at url: stat for file: URLs, a HEAD request otherwise; None if unknown."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        return path.stat().st_size if path.is_file() else None
    if parts.scheme not in ("http", "https"):
        return None
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None
    except (OSError, ValueError):
        return None
