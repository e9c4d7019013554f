"""Real web servers for the boot check: gunicorn and uvicorn with their dependencies as wheels, from
the package registry through pip, downloaded once into .cache/web-wheels. `make test` fetches them
before pytest starts (`python -m tests.webwheels`), so that the suite's time is the tests' own."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

WEB_SERVERS = ("gunicorn==27.0.1", "uvicorn==0.54.0")
TARGET = Path(__file__).resolve().parents[1] / ".cache" / "web-wheels"


def download() -> Path:
    """The wheel directory, complete; pytest-xdist workers and make: one downloads, the others wait."""
    stamp = TARGET / f".complete-{'-'.join(WEB_SERVERS)}"
    TARGET.mkdir(parents=True, exist_ok=True)
    with open(TARGET / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.is_file():
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                            "--only-binary", ":all:", "-d", str(TARGET), *WEB_SERVERS], check=True)
            stamp.touch()
    return TARGET


if __name__ == "__main__":
    download()
