"""The one import scanner: sources, Procfile commands, console scripts, byte order marks."""

from __future__ import annotations

from pathlib import Path

from slugslim.appcheck import imports, verify

BOM = b"\xef\xbb\xbf"


def test_full_dotted_names_and_from_imports_as_candidate_submodules() -> None:
    found = imports.scan_source(
        "import sklearn.ensemble\nfrom PIL import Image, ImageDraw as D\nfrom os import *\n"
        "import importlib\nmod = importlib.import_module('keras.models')\nold = __import__('a.b')\n"
        "try:\n    import simplejson as json\nexcept ImportError:\n    import json\n"
        "MIDDLEWARE = ['whitenoise.middleware.WhiteNoiseMiddleware']\n"
    )
    assert {"sklearn.ensemble", "PIL", "os", "keras.models", "a.b", "json"} <= found.modules
    assert {"PIL.Image", "PIL.ImageDraw", "simplejson"} <= found.maybe
    assert "simplejson" not in found.modules and "os.*" not in found.names()
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in found.strings


def test_relative_imports_resolve_against_the_files_package() -> None:
    source = (
        "from . import tests\n"
        "from .. import testing as t\n"
        "from .sub.test_x import (\n    a,\n    b as c,\n)\n"
        "import pkg.test_y, other\n"
        "mod = importlib.import_module('pkg.tests.fixtures')\n"
        "lazy = LazyLoader('test', globals(), 'tensorflow._api.v2.test')\n"
        "rel = importlib.import_module('.test_z', __package__)\n"
    )
    expected = {"pkg.sub.tests", "pkg.testing", "pkg.sub.sub.test_x", "pkg.test_y", "pkg.tests.fixtures",
                "tensorflow._api.v2.test", "pkg.sub.test_z"}
    # The parsed scan (app code) and the quick one (all of site-packages) agree on these.
    assert expected <= imports.scan_source(source, "pkg/sub/mod.py").names()
    assert expected <= imports.scan_quick(source, "pkg/sub/mod.py").names()
    # A relative import in a file whose package is unknown names nothing.
    assert not {n for n in imports.scan_source("from .x import y\n").names() if n.startswith(("x", "y"))}


def test_a_byte_order_mark_and_newer_syntax_still_scan() -> None:
    assert "flask" in imports.scan_source(BOM + b"import flask\n").modules
    newer = "import plugin_thing\nfrom acme.metrics import x\ndef f[T](x: T) -> T: ...\nprint(f'{x!r:{y}}' ++)\n"
    found = imports.scan_source(newer)
    assert {"plugin_thing", "acme.metrics"} <= found.modules and "acme.metrics.x" in found.maybe


def test_procfile_commands_name_what_they_load(tmp_path: Path) -> None:
    scripts = {"gunicorn": "gunicorn.app.wsgiapp:run", "uvicorn": "uvicorn.main:main", "flask": "flask.cli:main"}

    def modules(command: str) -> set[str]:
        return imports.command_imports(command, scripts).modules

    assert modules("gunicorn pkg.wsgi:app --workers 2") == {"pkg.wsgi", "gunicorn.app.wsgiapp",
                                                             "gunicorn.workers.sync"}
    assert {"uvicorn.workers", "main"} <= modules("gunicorn -k uvicorn.workers.UvicornWorker main:app")
    assert "gunicorn.workers.sync" not in modules("gunicorn --worker-class=uvicorn.workers.UvicornWorker main:app")
    assert "gunicorn.workers.gthread" in modules("gunicorn -k gthread app:app")
    assert modules("uvicorn main:app --host 0.0.0.0 --port $PORT") == {"main", "uvicorn.main"}
    assert modules("python -u -m mypkg.worker --verbose") == {"mypkg.worker"}
    assert "web.app" in modules("bash -c 'FOO=1 exec gunicorn web.app:create_app() --bind 0.0.0.0:$PORT'")
    assert "0" not in modules("gunicorn app:app --bind 0.0.0.0:5000")
    (tmp_path / "Procfile").write_bytes(BOM + b"web: gunicorn app:app\r\nworker: python -m jobs\n# web: no\n")
    assert imports.processes(tmp_path) == {"web": "gunicorn app:app", "worker": "python -m jobs"}


def test_verify_targets_keep_what_installed_distributions_provide(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "app.py").write_text(
        "import flask\nfrom PIL import Image\nimport os\nfrom . import local\n"
        "import importlib\nimportlib.import_module('keras.models')\n")
    (tmp_path / ".heroku" / "python").mkdir(parents=True)
    (tmp_path / ".heroku" / "python" / "x.py").write_text("import numpy\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    (tmp_path / "Procfile").write_text("web: gunicorn web.app:app\n")
    found = imports.scan_app(tmp_path, {"gunicorn": "gunicorn.app.wsgiapp:run"})
    assert "numpy" not in found.names() and "web.local" in found.maybe
    installed = {"flask": "Flask", "PIL": "pillow", "keras": "keras", "tensorflow": "tensorflow-cpu",
                 "gunicorn": "gunicorn"}
    modules, maybe = verify.targets(found, installed, ["extra"])
    assert modules == ["PIL", "extra", "flask", "gunicorn.app.wsgiapp", "gunicorn.workers.sync", "keras.models",
                       "tensorflow"]
    assert maybe == ["PIL.Image"]
