"""Which wheels an index has for a project, for every Python at once: one lookup per project.

``slugslim.deps.wheels`` asks pip which file it would install for one Python. The preflight needs
the opposite question (for which Pythons is there a wheel?), over all of heroku/python's Pythons,
so it reads the project's page of each index the install will use, the way pip does:

- the index: ``--index-url`` in requirements.txt, else ``PIP_INDEX_URL``, else PyPI;
- plus every ``--extra-index-url`` line and ``PIP_EXTRA_INDEX_URL`` (the one config var heroku/python
  hands its pip), and ``--find-links``/``PIP_FIND_LINKS`` (directories or pages);
- ``--no-index``/``PIP_NO_INDEX`` leaves only the find-links.

Pages are PEP 503 HTML or PEP 691 JSON. Yanked files, and files whose Requires-Python excludes a
Python, do not count for it, as with pip. Credentials in an index URL are sent as basic auth and
never printed.
"""

from __future__ import annotations

import base64
import html.parser
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from slugslim.core import log, pip
from slugslim.core.errors import LookupFailed
from slugslim.core.pip import PIP_INDEX_VARS

PYPI = "https://pypi.org/simple"
ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
_TRUE = {"1", "true", "yes", "on"}
# Linux x86_64 wheels a dyno can load: manylinux up to a recent glibc, the legacy aliases, plain linux.
PLATFORMS = ([f"manylinux_2_{minor}_x86_64" for minor in range(42, 4, -1)]
             + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"])


@dataclass(frozen=True)
class IndexFile:
    filename: str
    requires_python: str = ""


@dataclass(frozen=True)
class Settings:
    """Where pip will look, in pip's order of precedence."""

    index_url: str = PYPI
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    pre: bool = False
    cert: str = ""  # PIP_CERT: a CA bundle for https indexes

    def shown(self) -> str:
        places = ([] if self.no_index else [self.index_url, *self.extra_index_urls]) + list(self.find_links)
        return ", ".join(log.redact(p) for p in places) or "no index"


def settings(config_vars: Mapping[str, str], options: Sequence[str], environ: Mapping[str, str] | None = None,
             base: Path | None = None) -> Settings:
    """Settings from the build's PIP_* variables, the PIP_EXTRA_INDEX_URL config var, then requirement-file
    options (as ``swap.index_options`` lists them), which win over both, as in pip."""
    env = {k: v for k, v in pip.environment(config_vars, tools=(), base=environ).items() if k in PIP_INDEX_VARS}
    index_url = env.get("PIP_INDEX_URL", "").strip() or PYPI
    extras = env.get("PIP_EXTRA_INDEX_URL", "").split()
    links = env.get("PIP_FIND_LINKS", "").split()
    no_index = env.get("PIP_NO_INDEX", "").strip().lower() in _TRUE
    pre = env.get("PIP_PRE", "").strip().lower() in _TRUE
    position = 0
    while position < len(options):
        name = options[position]
        value = options[position + 1] if position + 1 < len(options) else ""
        if name == "--index-url":
            index_url, position = value, position + 2
        elif name == "--extra-index-url":
            extras.append(value)
            position += 2
        elif name == "--find-links":
            links.append(value)
            position += 2
        elif name == "--trusted-host":
            position += 2
        else:
            no_index = no_index or name == "--no-index"
            pre = pre or name == "--pre"
            position += 1
    return Settings(index_url, tuple(extras), tuple(links), no_index, pre, env.get("PIP_CERT", "").strip())


def _host(parts: urllib.parse.SplitResult) -> str:
    return (parts.hostname or "") + (f":{parts.port}" if parts.port else "")


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.files.append((str(found["href"]), found))


def _filename(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def _fetch(url: str, timeout: float, cert: str = "") -> tuple[str, bytes]:
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": ACCEPT}
    if parts.username is not None:
        auth = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=_host(parts)))
    request = urllib.request.Request(url, headers=headers)
    try:
        context = ssl.create_default_context(cafile=cert) if cert and url.startswith("https:") else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return str(response.headers.get("Content-Type", "")), bytes(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "", b""  # the index does not have the project: no files
        raise LookupFailed(f"{log.redact(url)} answered HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise LookupFailed(f"{log.redact(url)} could not be reached ({exc})") from None


def _page_files(content_type: str, body: bytes) -> list[IndexFile]:
    if "json" in content_type:
        try:
            data = json.loads(body.decode("utf-8", errors="replace"))
        except ValueError as exc:
            raise LookupFailed(f"the index answered with JSON that cannot be read ({exc})") from None
        if not isinstance(data, dict):
            raise LookupFailed("the index answered with JSON that is not a project page")
        return [IndexFile(str(item.get("filename", "")), str(item.get("requires-python") or ""))
                for item in data.get("files", []) if isinstance(item, dict) and not item.get("yanked")]
    parser = _Links()
    parser.feed(body.decode("utf-8", errors="replace"))
    return [IndexFile(_filename(href), str(attrs.get("data-requires-python") or ""))
            for href, attrs in parser.files if "data-yanked" not in attrs]


def _find_links_files(location: str, timeout: float, cert: str) -> list[IndexFile]:
    if location.startswith("file:"):
        location = urllib.request.url2pathname(urllib.parse.urlsplit(location).path)
    if "://" not in location:
        path = Path(location)
        return [IndexFile(p.name) for p in sorted(path.iterdir())] if path.is_dir() else []
    return _page_files(*_fetch(location, timeout, cert))


def files(project: str, where: Settings, timeout: float = 15.0) -> list[IndexFile]:
    """Every file pip could see for ``project``. Raises LookupFailed when an index cannot be read."""
    name = canonicalize_name(project)
    found: list[IndexFile] = []
    indexes = [] if where.no_index else [where.index_url, *where.extra_index_urls]
    for index in indexes:
        found += _page_files(*_fetch(f"{index.rstrip('/')}/{name}/", timeout, where.cert))
    for location in where.find_links:
        found += _find_links_files(location, timeout, where.cert)
    return [f for f in found if _project_of(f.filename) == name]


def _project_of(filename: str) -> str:
    try:
        return str(parse_wheel_filename(filename)[0]) if filename.endswith(".whl") else ""
    except InvalidWheelFilename:
        return ""


def dyno_tags(python: str) -> frozenset[Tag]:
    """The wheel tags CPython ``python`` (``3.13``) on a Linux x86_64 dyno accepts."""
    version = tuple(int(part) for part in python.split("."))
    return frozenset([*cpython_tags(version, platforms=PLATFORMS),
                      *compatible_tags(version, f"cp{version[0]}{version[1]}", PLATFORMS)])


@dataclass
class Availability:
    """For one requirement: the releases pip could install, per Python minor version."""

    requirement: str
    by_python: dict[str, list[str]] = field(default_factory=dict)  # "3.13" -> versions, newest first
    newest_any: dict[str, str] = field(default_factory=dict)  # "3.14" -> newest release ignoring the specifier

    def pythons(self) -> list[str]:
        return [p for p, versions in self.by_python.items() if versions]


def availability(name: str, specifier: SpecifierSet, index_files: Iterable[IndexFile], pythons: Sequence[str],
                 pre: bool = False) -> Availability:
    """Which versions matching ``specifier`` have a wheel each Python accepts, filtered as pip filters them."""
    wheels = []
    for item in index_files:
        try:
            _, version, _, tags = parse_wheel_filename(item.filename)
        except InvalidWheelFilename:
            continue
        wheels.append((version, tags, item.requires_python))
    result = Availability(f"{name}{specifier}")
    for python in pythons:
        accepted = dyno_tags(python)
        versions = {v for v, tags, requires in wheels if tags & accepted and _allows(requires, python)}
        # pip's rule: pre-releases only when asked for, or when nothing else matches.
        matching = sorted(specifier.filter(versions, prereleases=True if pre else None), reverse=True)
        result.by_python[python] = [str(v) for v in matching]
        everything = sorted(SpecifierSet().filter(versions), reverse=True) or sorted(versions, reverse=True)
        if everything:
            result.newest_any[python] = str(everything[0])
    return result


def _allows(requires_python: str, python: str) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(Version(f"{python}.0"), prereleases=True)
    except InvalidSpecifier:
        return True


def index_answers(url: str, project: str) -> bool:
    """A quick look at the index's page for ``project``: HEAD, 15 s, no retries (pip retries for minutes)."""
    page = f"{url.rstrip('/')}/{project}/"
    parts = urllib.parse.urlsplit(page)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path)).exists()
    try:
        with urllib.request.urlopen(urllib.request.Request(page, method="HEAD"), timeout=15):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False
