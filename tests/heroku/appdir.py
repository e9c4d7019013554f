"""A private ``/app`` for each emulated build and dyno, on any host, as root or not.

Heroku builds in ``/tmp/build_<id>`` but runs the app at ``/app``, and heroku/python makes
``/app/.heroku/python`` a symlink to the build's runtime so that shebangs, ``.pth`` files and
``sys.executable`` name ``/app`` paths. The emulation needs that ``/app`` without touching the
host's: most machines have none, and one that has must never see it written, removed or mounted
over.

bubblewrap (``bwrap``) gives each command a root of its own: every top-level entry of the host's
``/`` is bound at the same path (so ``/tmp``, the package caches and the loopback network are
shared), except ``/app``, which becomes the directory given. It runs the same way as root and as
an ordinary user (through an unprivileged user namespace, where the process keeps its own uid),
and inside a container that allows mount namespaces. ``unshare --mount`` needs root and a host
``/app`` to bind over; ``unshare --user --map-root-user`` makes every process uid 0, which pip and
the build see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

REQUIREMENT = ("The emulated Heroku build needs bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), "
               "run as root or with unprivileged user namespaces enabled")


def at_app(app_root: Path, command: Sequence[str], *, tmpfs: Sequence[str] = ()) -> list[str]:
    """``command`` with ``app_root`` as its ``/app`` (and an empty tmpfs at each of ``tmpfs``), private to it."""
    args = [shutil.which("bwrap") or "bwrap", "--die-with-parent"]
    for entry in sorted(os.listdir("/")):
        host = f"/{entry}"
        if entry == "app":
            continue
        if os.path.islink(host):  # /bin -> usr/bin on merged-/usr systems
            args += ["--symlink", os.readlink(host), host]
        else:
            args += ["--dev-bind", host, host]
    args += ["--bind", str(app_root), "/app"]
    for path in tmpfs:
        args += ["--tmpfs", path]
    return [*args, "--", *command]


def problem() -> str | None:
    """None when ``at_app`` works here, else one line saying what is missing and how to get it."""
    if shutil.which("bwrap") is None:
        return f"{REQUIREMENT}: no bwrap on PATH."
    with tempfile.TemporaryDirectory(prefix="slash-app-probe_") as root:
        Path(root, "probe").write_text("ok", encoding="utf-8")
        done = subprocess.run(at_app(Path(root), ["cat", "/app/probe"]), capture_output=True, text=True, check=False)
    if done.returncode == 0 and done.stdout == "ok":
        return None
    said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return f"{REQUIREMENT}: bwrap cannot make a private /app as uid {os.getuid()} ({said})."


def host_app() -> list[tuple[str, str]]:
    """What the host's own ``/app`` holds (each path and what it is), to show that the tests never change it."""
    if not os.path.lexists("/app"):
        return []
    state = [("/app", str(os.lstat("/app").st_mtime_ns))]
    for top, dirs, files in os.walk("/app"):  # never follows a symlink
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            state.append((path, f"-> {os.readlink(path)}" if os.path.islink(path) else str(os.lstat(path).st_mtime_ns)))
    return state
