"""`make demo`: the sample Flask + Keras app through the emulated Heroku build, slugslim in front.

It prints the build log as Heroku would show it and the size of the resulting slug. The real
tensorflow-cpu and its dependencies are downloaded once into ~/.cache/slugslim-demo/wheels; the
build itself then runs offline from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.heroku.build import REPO, run_build

APP = Path(__file__).resolve().parent / "demo_app"
# What the emulated heroku/python installs once slugslim has swapped tensorflow for tensorflow-cpu.
WHEELS_NEEDED = ["tensorflow-cpu==2.21.0", "flask", "gunicorn", "pillow"]


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "slugslim-demo"


def base_python() -> str:
    return str(getattr(sys, "_base_executable", sys.executable))


def ensure_wheels(wheels: Path) -> None:
    print(f"-----> Fetching the demo's wheels into {wheels} (once; about 300 MB)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--dest", str(wheels), *WHEELS_NEEDED], check=True)


def ensure_template(template: Path) -> Path:
    if not (template / "bin" / "python").exists():
        shutil.rmtree(template, ignore_errors=True)
        subprocess.run([base_python(), "-m", "venv", str(template)], check=True)
    return template


def main() -> int:
    root = cache_root()
    wheels = root / "wheels"
    ensure_wheels(wheels)
    template = ensure_template(root / "python-template")
    tools_wheels = os.environ.get("SLUGSLIM_TEST_TOOLS_WHEELS", str(REPO / ".cache" / "tools-wheels"))
    workdir = REPO / ".cache" / "demo"
    shutil.rmtree(workdir, ignore_errors=True)
    env = {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{wheels} {tools_wheels}",
        "EMULATED_PYTHON": base_python(),
        "EMULATED_PYTHON_TEMPLATE": str(template),
    }
    print(f"-----> Building {APP.relative_to(REPO)} with slugslim in front of (emulated) heroku/python\n", flush=True)
    build = run_build(APP, workdir, env=env)
    print(build.log)
    if not build.ok:
        print(f"The demo build failed (exit {build.returncode}).", file=sys.stderr)
        return 1
    print(f"Slug: {build.slug} ({build.slug_bytes / 1e6:.1f} MB compressed), built in {build.seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
