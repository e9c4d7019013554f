"""Run an unpacked slug the way a dyno boots it, time it, and trace which files it opens.

A dyno starts from the pristine slug every time: bash sources every ``.profile.d/*.sh`` with
HOME=/app and the config vars set, then runs the process. Here the slug is unpacked under
``<root>/app`` and bound onto /app in a private mount namespace (tests.heroku.build.at_app), so
the machine's own /app is never touched; HOME is /app, and after each run
every file the run created (bytecode Python wrote, models fetched at boot) is removed again, so
each run starts from the slug as shipped, as a new dyno would.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.heroku.build import at_app

# Heroku sources .profile.d in name order, then runs the command. The two timestamps let the
# bench tell the .profile.d part (the models fetch) from the Python part.
BOOT = (
    'boot_started="${EPOCHREALTIME}"; '
    'for file in "${HOME}"/.profile.d/*.sh; do [[ -f "${file}" ]] && source "${file}"; done; '
    'echo "bench-profile-d ${boot_started} ${EPOCHREALTIME}" >&2; '
    'exec python smoke.py'
)


@dataclass
class Boot:
    ok: bool
    seconds: float
    profile_seconds: float
    # user + system CPU of the whole boot: much less sensitive than wall time to other load.
    cpu_seconds: float
    smoke: dict[str, object] = field(default_factory=dict)
    output: str = ""
    # Files of the slug the run rewrote in place: they would make the next run unlike a new dyno.
    modified: list[str] = field(default_factory=list)


def unpack(slug: Path, root: Path) -> Path:
    """Extract a slug under root; return the app dir (the slug's ./app)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    subprocess.run(["tar", "--extract", "--gzip", "--file", str(slug), "--directory", str(root)], check=True)
    return root / "app"


def slug_files(app: Path) -> set[str]:
    """Every non-directory entry of the unpacked slug, relative to the app dir."""
    found: set[str] = set()
    for directory, dirs, files in os.walk(app):
        base = Path(directory)
        for name in files:
            found.add((base / name).relative_to(app).as_posix())
        for name in dirs:
            if (base / name).is_symlink():
                found.add((base / name).relative_to(app).as_posix())
    return found


def dyno_env(app: Path, config_vars: Mapping[str, str]) -> dict[str, str]:
    """What a web dyno's process sees before .profile.d runs: config vars, HOME, PORT, a plain PATH."""
    env = {
        "HOME": "/app",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PORT": "5000",
        "DYNO": "web.1",
        "LANG": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
    env.update(config_vars)
    return env


def _restore(app: Path, pristine: set[str], since: float) -> list[str]:
    """Remove what the run added, so the next run boots the slug as shipped; list what it changed."""
    modified: list[str] = []
    for directory, _dirs, files in os.walk(app):
        base = Path(directory)
        for name in files:
            path = base / name
            relative = path.relative_to(app).as_posix()
            if relative not in pristine:
                path.unlink()
            elif path.lstat().st_mtime >= since:
                modified.append(relative)
    return modified


def boot(app: Path, config_vars: Mapping[str, str], pristine: set[str], timeout: float = 300,
         prefix: list[str] | None = None) -> Boot:
    """One cold start: a fresh bash + python from the pristine slug. ``prefix`` wraps it (strace)."""
    since = time.time() - 1
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(at_app(app, [*(prefix or []), "bash", "-c", BOOT]), cwd=app, env=dyno_env(app, config_vars),
                          capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    modified = _restore(app, pristine, since)
    profile = 0.0
    marker = re.search(r"^bench-profile-d (\S+) (\S+)$", done.stderr, re.MULTILINE)
    if marker:
        profile = float(marker.group(2).replace(",", ".")) - float(marker.group(1).replace(",", "."))
    smoke: dict[str, object] = {}
    lines = done.stdout.strip().splitlines()
    if lines:
        try:
            smoke = json.loads(lines[-1])
        except json.JSONDecodeError:
            smoke = {}
    ok = done.returncode == 0 and bool(smoke)
    return Boot(ok, seconds, profile, cpu, smoke, (done.stdout + done.stderr)[-4000:], modified)


_CALL = re.compile(r'^(?P<pid>\d+)\s+(?:openat\(\w+, |open\(|execve\()"(?P<path>(?:[^"\\]|\\.)*)"')
_RESULT = re.compile(r"\)\s+=\s+(?P<result>-?\d+)")
_RESUMED = re.compile(r"^(?P<pid>\d+)\s+<\.\.\. (?:openat|open|execve) resumed>")


def opened_files(trace: Path, app: Path) -> set[str]:
    """Paths inside app (relative) that the traced run opened or executed successfully.

    strace -f splits a call that another thread interrupts into "<unfinished ...>" and
    "<... resumed>" lines; the path is on the first, the result on the second.
    """
    root = os.path.realpath(app)
    pending: dict[str, str] = {}
    succeeded: list[str] = []
    for line in trace.read_text(encoding="utf-8", errors="replace").splitlines():
        call = _CALL.match(line)
        if call:
            if "<unfinished ...>" in line:
                pending[call["pid"]] = call["path"]
                continue
            result = _RESULT.search(line[call.end():])
            if result and int(result["result"]) >= 0:
                succeeded.append(call["path"])
            continue
        resumed = _RESUMED.match(line)
        if resumed and resumed["pid"] in pending:
            path = pending.pop(resumed["pid"])
            result = _RESULT.search(line[resumed.end():])
            if result and int(result["result"]) >= 0:
                succeeded.append(path)
    touched: set[str] = set()
    for raw in succeeded:
        text = raw.encode("latin-1", "backslashreplace").decode("unicode_escape")
        path = text if os.path.isabs(text) else os.path.join(app, text)
        for candidate in {os.path.normpath(path), os.path.realpath(path)}:
            if candidate.startswith(root + os.sep):
                touched.add(os.path.relpath(candidate, root))
    return touched


def traced_boot(app: Path, config_vars: Mapping[str, str], pristine: set[str], trace: Path) -> tuple[Boot, set[str]]:
    """The smoke workload under strace: which of the slug's files does a boot really use?"""
    prefix = ["strace", "-f", "-qq", "-s", "4096", "-e", "trace=openat,open,execve", "-o", str(trace)]
    result = boot(app, config_vars, pristine, timeout=900, prefix=prefix)
    return result, opened_files(trace, app)


def tar_gz(app: Path, members: list[str], out: Path) -> int:
    """gzip -6 tar of exactly these members, with the slug's ./app layout; returns its size."""
    listing = out.with_suffix(".list")
    listing.write_text("".join(f"./{m}\n" for m in sorted(members)), encoding="utf-8")
    subprocess.run(
        ["tar", "--create", "--use-compress-program", "gzip -6", "--no-recursion", "--file", str(out),
         "--directory", str(app), "--transform", r"s,^\.,./app,", "--files-from", str(listing)],
        check=True,
    )
    return out.stat().st_size


def compiled_at_boot(touched: set[str], pristine: set[str]) -> list[str]:
    """Installed modules the run read as .py although the slug has no bytecode for them."""
    compiled = []
    for path in sorted(touched):
        parts = path.split("/")
        if not path.endswith(".py") or "site-packages" not in parts:
            continue
        directory, name = "/".join(parts[:-1]), parts[-1][:-3]
        if not any(p.startswith(f"{directory}/__pycache__/{name}.") and p.endswith(".pyc") for p in pristine):
            compiled.append("/".join(parts[parts.index("site-packages") + 1:]))
    return compiled
