"""Real packages for the apps the tests build, as wheels with their dependencies, from the package
registry through pip, downloaded once into .cache/web-wheels: gunicorn and uvicorn for the boot check,
and the Hugging Face Hub client (with tokenizers, one abi3 binary wheel that needs only the client) for
apps that fetch models from tests/hubserver.py. `make test` fetches them before pytest starts
(`python -m tests.webwheels`), so that the suite's time is the tests' own."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

WEB_SERVERS = ("gunicorn==27.0.1", "uvicorn==0.54.0")
HUB_CLIENT = ("huggingface_hub==2.4.0", "tokenizers==0.23.3")
TARGET = Path(__file__).resolve().parents[1] / ".cache" / "web-wheels"


def download() -> Path:
    """The wheel directory, complete; pytest-xdist workers and make: one downloads, the others wait."""
    stamp = TARGET / f".complete-{'-'.join(WEB_SERVERS + HUB_CLIENT)}"
    TARGET.mkdir(parents=True, exist_ok=True)
    with open(TARGET / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.is_file():
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                            "--only-binary", ":all:", "-d", str(TARGET), *WEB_SERVERS, *HUB_CLIENT], check=True)
            stamp.touch()
    return TARGET


if __name__ == "__main__":
    download()
