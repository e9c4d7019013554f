"""One app walker (core/app.py) for the import scanner, the models and Git LFS pointers: one rule for all."""

from __future__ import annotations

from pathlib import Path

from slugslim.appcheck import imports
from slugslim.core import lfs, modelscan
from slugslim.core.config import ModelsConfig
from tests.conftest import write_app

POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 2000000\n"


def test_the_import_scanner_the_models_and_lfs_see_the_same_files(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {
        "app.py": "import flask\n", "lib/env/util.py": "import numpy\n", "lib/env/model.h5": b"m" * 200_000,
        "lib/env/data.pt": POINTER,
        # Not the app's: another buildpack's hidden top-level dir, a virtualenv anywhere, caches, installs.
        ".apt/usr/tool.py": "import hidden\n", ".apt/model.h5": b"m" * 200_000,
        "tools/venv/pyvenv.cfg": "home = /usr\n", "tools/venv/lib/x.py": "import invenv\n",
        "tools/venv/model.h5": b"m" * 200_000, "tools/venv/data.pt": POINTER,
        "vendor/site-packages/pkg/__init__.py": "import vendored\n", "web/node_modules/m.h5": b"m" * 200_000,
        "pkg/__pycache__/x.py": "import cached\n",
    })
    (app / "linked").symlink_to(app / "lib")
    sources = sorted(p.relative_to(app).as_posix() for p in imports.app_sources(app))
    assert sources == ["app.py", "lib/env/util.py"]
    models = [m.path for m in modelscan.discover(app, ModelsConfig(min_size=0.1))]
    assert models == ["lib/env/model.h5"]
    assert [p.path for p in lfs.find(app)] == ["lib/env/data.pt"]
