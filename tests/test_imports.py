"""The one import scanner: sources, Procfile commands, console scripts, byte order marks."""

from __future__ import annotations

import ast
from pathlib import Path

from slugslim.appcheck import hubrefs, imports, verify
from slugslim.core.engines import ONNX
from slugslim.finish.runtime import plan

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


HUB_SOURCE = '''\
import transformers
from huggingface_hub import hf_hub_download, snapshot_download
from sentence_transformers import CrossEncoder, SentenceTransformer
from transformers import AutoTokenizer, pipeline

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")
model = transformers.AutoModel.from_pretrained(pretrained_model_name_or_path="org/kw-model", revision="v1.0")
embedder = SentenceTransformer(model_name_or_path="org/st-model")
ranker = CrossEncoder("cross-encoder/ms-marco-MiniLM-L-6-v2")
old_ranker = CrossEncoder(model_name="org/old-ranker")
ner = pipeline("ner", "dslim/bert-base-NER")
sentiment = pipeline(task="sentiment-analysis", model="org/sentiment", revision="abc123")
weights = hf_hub_download("org/weights", filename="model.safetensors")
more = hf_hub_download(repo_id="org/more", filename="x.bin")
snapshot = snapshot_download("org/snap")
snapshot2 = snapshot_download(repo_id="org/snap2")


def embed(texts):
    return SentenceTransformer(EMBEDDER).encode(texts)
'''


def test_hub_ids_from_every_call_form_with_the_calls_line_and_revision() -> None:
    found = imports.scan_source(HUB_SOURCE, "web/app.py")
    assert [(r.id, r.line, r.revision) for r in found.hub_models] == [
        ("bert-base-uncased", 7, ""),
        ("org/kw-model", 8, "v1.0"),
        ("org/st-model", 9, ""),
        ("cross-encoder/ms-marco-MiniLM-L-6-v2", 10, ""),
        ("org/old-ranker", 11, ""),
        ("dslim/bert-base-NER", 12, ""),
        ("org/sentiment", 13, "abc123"),
        ("org/weights", 14, ""),
        ("org/more", 15, ""),
        ("org/snap", 16, ""),
        ("org/snap2", 17, ""),
        ("sentence-transformers/all-MiniLM-L6-v2", 21, ""),  # the module constant, where it is loaded
    ]
    assert {r.path for r in found.hub_models} == {"web/app.py"}
    assert hubrefs.HubRef("org/snap", "web/app.py", 16) in found.hub_models  # frozen, compared by value
    # A pipeline's task is not a model; the import lines and other dotted strings are unchanged.
    assert "ner" not in {r.id for r in found.hub_models} and "sentiment-analysis" not in found.strings
    assert {"transformers", "huggingface_hub", "sentence_transformers"} <= found.modules


def test_only_module_level_names_bound_once_to_a_string_are_constants() -> None:
    tree = ast.parse('A: str = "org/a"\nB = C = "org/b"\nD = "org/d"\nD += "-x"\nE, F = "org/e", "org/f"\n'
                     'G = "org/g"\nG = "org/g"\nif True:\n    H = "org/h"\ndef f():\n    I = "org/i"\n')
    assert hubrefs.module_constants(tree) == {"A": "org/a", "B": "org/b", "C": "org/b", "G": "org/g"}


def test_local_paths_file_names_and_computed_ids_are_not_hub_ids() -> None:
    source = '''\
import os
from transformers import AutoModel, pipeline
from sentence_transformers import SentenceTransformer
name = os.environ["MODEL"]
ORG = "org"
CHANGED = "org/first"
CHANGED = "org/second"
AutoModel.from_pretrained("./models/bert")
AutoModel.from_pretrained("/app/models/bert")
AutoModel.from_pretrained("~/models/bert")
AutoModel.from_pretrained("models\\\\bert")
AutoModel.from_pretrained("models/org/bert")
AutoModel.from_pretrained("classifier.onnx")
AutoModel.from_pretrained("org/weights.SAFETENSORS")
AutoModel.from_pretrained("org/model.pt")
AutoModel.from_pretrained(f"{ORG}/bert")
AutoModel.from_pretrained(name)
AutoModel.from_pretrained(CHANGED)
AutoModel.from_pretrained(ORG + "/bert")
AutoModel.from_pretrained("org--x/bert")
AutoModel.from_pretrained("-org/bert")
SentenceTransformer(os.environ.get("MODEL", "org/default"))
pipeline("sentiment-analysis")
pipeline(*args)
print("org/not-loaded")
'''
    assert imports.scan_source(source, "app.py").hub_models == []
    assert hubrefs.is_hub_id("a" * 96) and not hubrefs.is_hub_id("a" * 97)
    assert hubrefs.is_hub_id("Org_1/name.v2-x") and not hubrefs.is_hub_id("org/name.")
    assert not hubrefs.is_hub_id("org/na..me") and not hubrefs.is_hub_id("") and not hubrefs.is_hub_id("org/")
    assert not hubrefs.is_hub_id("org/bert\n")


def test_hub_ids_of_an_app_come_from_its_own_files_only(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "app.py").write_text(
        "from transformers import pipeline\nclf = pipeline('text-classification', model='org/clf')\n"
        "local = pipeline('text-classification', model='classifier')\n")
    (tmp_path / "classifier").mkdir()  # the app's own copy: from_pretrained reads it from /app first
    venv = tmp_path / "env"
    (venv / "lib" / "python3.12" / "site-packages" / "pkg").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin.py").write_text("from transformers import AutoModel\nAutoModel.from_pretrained('org/in-venv')\n")
    vendored = tmp_path / "vendor" / "site-packages"
    vendored.mkdir(parents=True)
    (vendored / "lib.py").write_text("snapshot_download('org/vendored')\n")
    (tmp_path / "worker.py").write_text("snapshot_download('org/clf', revision='main')\n")
    found = imports.scan_app(tmp_path)
    assert sorted(found.hub_models, key=lambda r: r.path) == [
        hubrefs.HubRef("org/clf", "web/app.py", 2), hubrefs.HubRef("org/clf", "worker.py", 1, "main")]


def test_the_fallback_of_an_import_of_slugslims_loader_is_maybe_and_passes_the_import_gate(tmp_path: Path) -> None:
    fallback = ("try:\n    from slugslim_models import SentenceEncoder\n"
                "except ImportError:  # without slugslim\n"
                "    from sentence_transformers import SentenceTransformer as SentenceEncoder\n")
    found = imports.scan_source(fallback)
    assert "sentence_transformers" in found.maybe and "sentence_transformers" not in found.modules
    other = imports.scan_source("try:\n    import ujson as json\nexcept ImportError:\n    import json\n"
                                "try:\n    import slugslim_models\nfinally:\n    import torch\n")
    assert {"json", "torch"} <= other.modules  # another fallback, and what runs anyway, still count
    (tmp_path / "app.py").write_text(fallback)
    (tmp_path / "worker.py").write_text(f"try:\n    import slugslim_onnx\nexcept ImportError:\n    pass\n"
                                        f"{fallback.replace('slugslim_models', 'my_models')}")
    assert plan.gate(tmp_path, ONNX) == {"worker.py": ["sentence_transformers"]}
