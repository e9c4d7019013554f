"""Boot the Procfile's web process the way a dyno starts it, and see that it answers HTTP.

A dyno starts with the config vars, ``HOME=/app``, ``PORT`` and ``DYNO=web.1`` set, sources
every ``.profile.d/*.sh`` in bash, then runs the command. During a build the app is at
BUILD_DIR, not ``/app`` (only ``/app/.heroku/python`` is linked there), so HOME and the working
directory are BUILD_DIR. ``PORT`` is a free local port. ``WEB_CONCURRENCY`` is 1 unless a config
var sets it: heroku/python's ``.profile.d`` would size it from the build machine's memory, which
is not the dyno's, and one worker loads what every worker loads.

The check waits until the process answers an HTTP request on 127.0.0.1:$PORT, at most
``verify.boot_timeout`` seconds (Heroku's R10 limit is 60), requests each of ``verify.paths``
(any status below 500 counts as alive), then stops the whole process group: SIGTERM, and
SIGKILL for what is left. The process runs in its own session, so nothing it forks outlives the
check. Every Python process of it records the modules it imports (``record``), and
``PYTHONDONTWRITEBYTECODE`` keeps it from writing bytecode into the slug.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slugslim.appcheck.imports import processes
from slugslim.appcheck.record import ENV as RECORD_ENV
from slugslim.appcheck.record import ImportRecord, Modules
from slugslim.appcheck.verify import Outcome
from slugslim.core import log

DYNO_PATH = "/usr/local/bin:/usr/bin:/bin"
STOP_GRACE = 10.0
# Heroku's launcher: .profile.d in name order, then the command, in bash. The recorder goes at
# the end of PYTHONPATH only after .profile.d has set it (heroku/python defaults it to HOME).
_LAUNCH = (
    '__slugslim_web="$1"; shift; '
    'for file in "${HOME}"/.profile.d/*.sh; do [[ -f "${file}" ]] && source "${file}"; done; '
    'export PYTHONPATH="${PYTHONPATH:+${PYTHONPATH}:}${SLUGSLIM_RECORDER_DIR}"; unset SLUGSLIM_RECORDER_DIR; '
    'exec bash -c "${__slugslim_web}"'
)


@dataclass
class BootResult:
    """One boot of the web process."""

    ok: bool
    seconds: float = 0.0  # from the start of the process to the last answer (or the failure)
    failure: str = ""  # what went wrong, for the build log
    modules: Modules = field(default_factory=dict)  # what its Python processes imported
    statuses: dict[str, int] = field(default_factory=dict)  # path -> HTTP status
    output: str = ""  # the last lines the process printed
    rss: int = 0  # bytes resident in all its processes (parent and workers) after its last answer


def web_command(app_dir: Path) -> str:
    """The Procfile's web command, or '' when there is none."""
    return processes(app_dir).get("web", "")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dyno_env(build_dir: Path, config_vars: Mapping[str, str], port: int) -> dict[str, str]:
    """What a web dyno's process sees before .profile.d runs."""
    env = {"PATH": DYNO_PATH, "LANG": "C.UTF-8"}
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    env.update(config_vars)
    env.update(HOME=str(build_dir), PORT=str(port), DYNO="web.1")
    env.setdefault("WEB_CONCURRENCY", "1")
    return env


def _get(port: int, path: str, timeout: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "slugslim-boot-check"})
        response = connection.getresponse()
        response.read(1 << 20)
        return response.status
    finally:
        connection.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group, then SIGKILL to whatever is left of it."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # forked workers the leader left behind


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_bytes()[-8000:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(line for line in text.splitlines()[-lines:] if line.strip())


def _telling(tail: str) -> str:
    """The line of the output that says most: the last exception a traceback ends with, else the last line
    naming an error (a server's own log lines, such as gunicorn's "[ERROR] Control server error", come
    after the app's traceback at times), else the last line."""
    lines = tail.splitlines()
    for pattern in (r"^\s*[\w.]+(Error|Exception)\b", r"(Error|Exception)\b|error:"):
        found = next((line.strip() for line in reversed(lines) if re.search(pattern, line)), "")
        if found:
            return found
    return lines[-1].strip()


def boot(build_dir: Path, command: str, config_vars: Mapping[str, str], site_packages: Path,
         timeout: float = 60, paths: Sequence[str] = ("/",)) -> BootResult:
    """Start ``command`` as a web dyno would, request ``paths``, stop it. Never raises for the app."""
    port = free_port()
    started = time.monotonic()
    with ImportRecord() as record, tempfile.NamedTemporaryFile(prefix="slugslim-web-", suffix=".log") as output:
        env = dyno_env(build_dir, config_vars, port)
        env.update({"PYTHONDONTWRITEBYTECODE": "1", "SLUGSLIM_RECORDER_DIR": str(record.directory),
                    RECORD_ENV: str(record.log)})
        proc = subprocess.Popen(["bash", "-c", _LAUNCH, "slugslim-boot", command], cwd=build_dir, env=env,
                                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log = Path(output.name)
        try:
            statuses, failure = _answers(proc, port, started + timeout, timeout, paths)
            seconds = time.monotonic() - started
            rss = 0 if failure else session_rss(proc.pid)
            tail = _tail(log)  # before stopping it: what it said about the failure, not its goodbye
        finally:
            _stop(proc)
        if failure and tail:
            failure += f"; its output ends: {_telling(tail)[:300]}"
        return BootResult(ok=not failure, seconds=seconds, failure=failure, modules=record.modules(site_packages),
                          statuses=statuses, output=tail, rss=rss)


def session_rss(session: int) -> int:
    """Bytes resident in every process of ``session``: the web command, its parent and its workers."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # it exited meanwhile
        # The fields after the command name (which may hold spaces): state ppid pgrp session ... rss
        # (field 24 of proc(5), index 21 here).
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 21 and fields[3] == str(session):
            total += int(fields[21]) * page
    return total


def _answers(proc: subprocess.Popen[bytes], port: int, deadline: float, timeout: float,
             paths: Sequence[str]) -> tuple[dict[str, int], str]:
    """Wait for the first answer, then request every path. Returns (statuses, failure)."""
    statuses: dict[str, int] = {}
    for index, path in enumerate(paths):
        if index:
            deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                return statuses, f"it exited with status {code} before answering GET {path}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return statuses, f"it did not answer on $PORT within {timeout:.0f} s (verify.boot_timeout)"
            try:
                status = _get(port, path, remaining)
                break
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
                time.sleep(0.2)  # not listening yet, or a worker restarted
            except TimeoutError:
                return statuses, f"GET {path} got no answer within {timeout:.0f} s (verify.boot_timeout)"
            except (OSError, http.client.HTTPException) as exc:
                return statuses, f"GET {path} failed: {exc}"
        statuses[path] = status
        if status >= 500:
            return statuses, f"GET {path} answered HTTP {status}"
    return statuses, ""


@dataclass
class WebCheck:
    """The differential check: boot before pruning; only a web process that booted then is booted
    again after each change, and a failure then is a verification failure like a failed import."""

    build_dir: Path
    config_vars: Mapping[str, str]
    site_packages: Path
    timeout: float
    paths: Sequence[str]
    say: Callable[[str], None]
    command: str = ""  # set once the web process booted before pruning

    def _boot(self, command: str) -> BootResult:
        return boot(self.build_dir, command, self.config_vars, self.site_packages, self.timeout, self.paths)

    def before(self, app_dir: Path, baseline: Outcome) -> float:
        """Boot on the unpruned tree; add what it loaded to the baseline. Returns the seconds it took."""
        command = web_command(app_dir)
        if not command:
            return 0.0
        self.say(f"Booting the web process as a dyno would, before and after pruning: {command}")
        self.say(f"  (up to {self.timeout:.0f} s each, then GET {', '.join(self.paths)}; "
                 "set verify.boot: false in slugslim.yml to turn this off)")
        booted = self._boot(command)
        if not booted.ok:
            self.say(f"The web process did not boot before pruning ({booted.failure}), "
                     "so slugslim checks imports only.")
            return booted.seconds
        self.command = command
        baseline.modules = {**booted.modules, **baseline.modules}
        baseline.web_rss = booted.rss
        answered = ", ".join(f"GET {path} {status}" for path, status in booted.statuses.items())
        self.say(f"The web process answered in {log.seconds(booted.seconds)} ({answered}); "
                 f"it imported {len(booted.modules)} modules from site-packages")
        return booted.seconds

    def after(self, outcome: Outcome) -> None:
        """Boot on the changed tree; a failure makes the outcome fail."""
        booted = self._boot(self.command)
        outcome.seconds += booted.seconds
        outcome.modules = {**booted.modules, **outcome.modules}
        outcome.web_rss = booted.rss
        if not booted.ok:
            outcome.ok, outcome.boot_failure = False, booted.failure
