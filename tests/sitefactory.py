"""Real installed environments for the report, unused and analyze tests.

Wheels come from ``wheelfactory``; real pip installs them offline into a prefix, so the
site-packages has real RECORD, top_level.txt, entry_points.txt and bin/ scripts.
"""

from __future__ import annotations

import random
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.wheelfactory import WheelSpec, build_wheel


def site_packages_of(prefix: Path) -> Path:
    version = sysconfig.get_python_version()
    return prefix / "lib" / f"python{version}" / "site-packages"


def pip_install(wheels: Path, prefix: Path, names: list[str]) -> Path:
    """pip-install ``names`` from the find-links dir into ``prefix``; return its site-packages."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
         "--no-compile", "--no-warn-script-location", "--find-links", str(wheels), "--prefix", str(prefix), *names],
        check=True,
        capture_output=True,
    )
    return site_packages_of(prefix)


def noise(size: int, seed: int) -> bytes:
    """Incompressible bytes."""
    return random.Random(seed).randbytes(size)


def _vocabulary() -> list[str]:
    rng = random.Random(0)
    words = ["def", "return", "self", "import", "value", "tensor", "shape", "float32", "None", "for", "in", "if"]
    return [
        "    " * rng.randint(0, 3) + " ".join(rng.choices(words, k=rng.randint(2, 9))) + f"  # {rng.randint(0, 10**6)}"
        for _ in range(3000)
    ]


VOCABULARY = _vocabulary()


def text(size: int, seed: int) -> str:
    """Compressible, source-like text: lines drawn from a vocabulary of a few thousand."""
    lines = random.Random(seed).choices(VOCABULARY, k=size // 30 + 1)
    return "\n".join(lines)[:size]


def app_specs() -> list[WheelSpec]:
    """A small, realistic app environment: import name != distribution name, a namespace
    package split over two distributions, a console-script-only server, a never-imported
    requirement with a big dependency, a database driver and a shared dependency."""
    return [
        WheelSpec(name="Pillow", version="10.0.0", files={"PIL/__init__.py": "", "PIL/Image.py": "X = 1\n"}),
        WheelSpec(name="opencv-python-headless", version="4.9.0",
                  files={"cv2/__init__.py": "", "cv2/data/haar.xml": "<xml/>\n" * 50}),
        WheelSpec(name="acme-storage", version="1.0", files={"acme/storage/__init__.py": "A = 1\n"},
                  top_level=["acme"]),
        WheelSpec(name="acme-metrics", version="1.0", files={"acme/metrics/__init__.py": "B = 1\n"},
                  top_level=["acme"]),
        WheelSpec(name="gunicorn", version="22.0.0", files={"gunicorn/__init__.py": "", "gunicorn/app.py": ""},
                  entry_points={"gunicorn": "gunicorn.app:run"}),
        WheelSpec(name="jupyter-fake", version="1.0", requires=["bigdep"],
                  files={"jupyter_fake/__init__.py": ""}),
        WheelSpec(name="bigdep", version="1.0", files={"bigdep/__init__.py": "", "bigdep/blob.bin": noise(200_000, 1)}),
        WheelSpec(name="flask-fake", version="1.0", requires=["markupthing"], files={"flask_fake/__init__.py": ""}),
        WheelSpec(name="markupthing", version="1.0", files={"markupthing/__init__.py": ""}),
        WheelSpec(name="psycopg2-binary", version="2.9.9", files={"psycopg2/__init__.py": ""}),
        WheelSpec(name="plugin-thing", version="1.0", files={"plugin_thing/__init__.py": ""}),
    ]


REQUIREMENTS = """\
# an app's requirements
pillow==10.0.0
opencv-python-headless  # imported as cv2
acme-storage
acme-metrics
gunicorn
jupyter-fake
flask-fake
markupthing
psycopg2-binary
plugin-thing
"""

APP_PY = """\
import cv2
from PIL import Image
from acme.storage import A
import flask_fake

app = object()
"""


def build_app_wheels(out: Path) -> Path:
    for spec in app_specs():
        build_wheel(spec, out)
    return out


def write_app(app_dir: Path, procfile: str = "web: gunicorn app:app --workers 2\n") -> Path:
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "requirements.txt").write_text(REQUIREMENTS)
    (app_dir / "app.py").write_text(APP_PY)
    if procfile:
        (app_dir / "Procfile").write_text(procfile)
    return app_dir


def install_app(wheels: Path, prefix: Path) -> Path:
    names = [spec.name for spec in app_specs()]
    return pip_install(wheels, prefix, names)
