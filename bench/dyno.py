"""Run an unpacked slug the way a dyno boots it, time it, and trace which files it opens.

A dyno starts from the pristine slug every time: bash sources every ``.profile.d/*.sh`` with
HOME=/app and the config vars set, then runs the process. Here the slug is unpacked under
``<root>/app`` and seen at /app in a private root (tests.heroku.appdir.at_app), so
the machine's own /app is never touched; HOME is /app, and after each run
every file the run created (bytecode Python wrote, models fetched at boot) is removed again, so
each run starts from the slug as shipped, as a new dyno would.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from slugslim.appcheck.record import ENV, ImportRecord
from tests.heroku.appdir import at_app
from tests.heroku.build import SLUG_TRANSFORM

# Heroku sources .profile.d in name order, then runs the command. The two timestamps let the
# bench tell the .profile.d part (the models fetch) from the Python part.
DYNO_HOME = "/app"
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
        "HOME": DYNO_HOME,
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
        # The run saw the slug at /app (in a private root, see at_app): a path
        # under /app is that file of the slug. Resolved here, /app would be this machine's own.
        in_slug = os.path.normpath(path)
        if in_slug == DYNO_HOME or in_slug.startswith(DYNO_HOME + os.sep):
            path = os.path.join(root, os.path.relpath(in_slug, DYNO_HOME))
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
         "--directory", str(app), "--transform", SLUG_TRANSFORM, "--files-from", str(listing)],
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


# --- the web process, started from the slug as a dyno starts it ------------------------------

WEB_BOOT = (
    'for file in "${HOME}"/.profile.d/*.sh; do [[ -f "${file}" ]] && source "${file}"; done; '
    'if [[ -n "${BENCH_RECORDER:-}" ]]; then export PYTHONPATH="${PYTHONPATH:+${PYTHONPATH}:}${BENCH_RECORDER}"; fi; '
    'exec bash -c "$1"'
)


@dataclass
class WebStart:
    ok: bool
    seconds: float  # unpack + .profile.d + web start, until the first answer to GET /
    unpack_seconds: float
    answer_seconds: float  # from starting bash until GET / answered
    output: str = ""
    probed: Any = None  # what web_start's probe returned, after the first answer


def web_command(app: Path) -> str:
    """The Procfile's web command, as written: console scripts name /app/.heroku/python, as on Heroku."""
    for line in (app / "Procfile").read_text(encoding="utf-8-sig").splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"no web process in {app / 'Procfile'}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _request(port: int, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None,
             timeout: float = 300) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=dict(headers or {}))
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _start(app: Path, config_vars: Mapping[str, str], port: int, extra: Mapping[str, str], log: Path
           ) -> subprocess.Popen[bytes]:
    env = {**dyno_env(app, config_vars), "PORT": str(port), **extra}
    with log.open("wb") as out:
        return subprocess.Popen(at_app(app, ["bash", "-c", WEB_BOOT, "web", web_command(app)]), cwd=app, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _first_answer(proc: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return _request(port, "GET", "/", timeout=max(1.0, deadline - time.monotonic())) < 500
        except OSError:
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def web_start(slug: Path, root: Path, config_vars: Mapping[str, str], timeout: float = 300,
              probe: Callable[[int, int], Any] | None = None) -> WebStart:
    """One dyno start: unpack the slug into a fresh dir, source .profile.d, start the web command,
    and time until it answers GET / on $PORT. Then, untimed, ``probe(port, session)`` if given: the
    web process is still up (its processes are those of the session, see web_memory)."""
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    app = unpack(slug, root)
    unpacked = time.perf_counter()
    log = root / "web.log"
    port = _free_port()
    proc = _start(app, config_vars, port, {}, log)
    probed = None
    try:
        ok = _first_answer(proc, port, timeout)
        answered = time.perf_counter()
        if ok and probe is not None:
            probed = probe(port, proc.pid)
    finally:
        _stop(proc)
    output = log.read_text(encoding="utf-8", errors="replace")[-4000:]
    shutil.rmtree(root, ignore_errors=True)
    return WebStart(ok, answered - started, unpacked - started, answered - unpacked, output, probed)


def web_memory(session: int) -> dict[str, Any]:
    """Peak RSS (VmHWM) so far of the web process started in ``session`` (bwrap, which only waits, left out):
    its master (the process whose parent is not one of them) and its workers. ``one_process_bytes`` is
    what one web process of a dyno needs: the master and its largest worker."""
    found: dict[int, tuple[int, int]] = {}  # pid -> (parent, peak bytes)
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text(encoding="utf-8") if entry.name.isdigit() else ""
            status = (entry / "status").read_text(encoding="utf-8") if stat else ""
        except OSError:  # gone meanwhile
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        peak = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if len(fields) > 3 and int(fields[3]) == session and name != "bwrap" and peak:
            found[int(entry.name)] = (int(fields[1]), int(peak[1]) * 1024)
    masters = [pid for pid, (parent, _peak) in found.items() if parent not in found]
    workers = sorted((peak for pid, (_parent, peak) in found.items() if pid not in masters), reverse=True)
    master = sum(found[pid][1] for pid in masters)
    return {"master_bytes": master, "worker_bytes": workers, "one_process_bytes": master + sum(workers[:1])}


def _png(size: int = 64) -> bytes:
    """A black disc on white, as PNG, without Pillow (the bench's own Python has none)."""
    rows = b"".join(b"\x00" + bytes(0 if (x - 32) ** 2 + (y - 32) ** 2 < 576 else 255 for x in range(size))
                    for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _predict(port: int) -> int:
    boundary = "slugslim-bench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"disc.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + _png() + f"\r\n--{boundary}--\r\n".encode()
    return _request(port, "POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def web_compiles(app: Path, config_vars: Mapping[str, str], pristine: set[str], timeout: float = 300
                 ) -> dict[str, Any]:
    """Start the web process on the unpacked slug, GET / and POST /predict once, and list the
    site-packages modules it loaded without valid bytecode (compiled from source): before the
    first answer (boot) and after it (first requests). Recorded by slugslim's import recorder."""
    since = time.time() - 1
    port = _free_port()
    with ImportRecord() as record:
        extra = {"BENCH_RECORDER": str(record.directory), ENV: str(record.log), "PYTHONDONTWRITEBYTECODE": "1"}
        proc = _start(app, config_vars, port, extra, app.parent / "web-compiles.log")
        try:
            ok = _first_answer(proc, port, timeout)
            boot_lines = len(record.log.read_text(encoding="utf-8").splitlines()) if record.log.exists() else 0
            predicted = _predict(port) if ok else 0
        finally:
            _stop(proc)
        lines = record.log.read_text(encoding="utf-8").splitlines() if record.log.exists() else []
    _restore(app, pristine, since)
    site = f"{os.sep}site-packages{os.sep}"
    compiled: dict[str, list[str]] = {"boot": [], "request": []}
    for index, line in enumerate(lines):
        try:
            _name, origin, _cached, valid = json.loads(line)
        except ValueError:
            continue
        if site in origin and not valid:
            where = "boot" if index < boot_lines else "request"
            compiled[where].append(origin.split(site, 1)[1])
    return {"ok": ok and predicted == 200, "predict_status": predicted,
            "compiled_at_boot": sorted(set(compiled["boot"])), "compiled_at_request": sorted(set(compiled["request"]))}
