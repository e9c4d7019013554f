"""Hugging Face models at build time, through the emulated Heroku build: the real huggingface_hub client
against a stand-in Hub on 127.0.0.1 (tests/hubserver.py), and the slug booted as a dyno with the Hub down."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import HerokuBuild, write_app
from tests.hubserver import TOKEN, HubRepo, HubServer
from tests.modelservers import BUCKET, S3, run_dyno, slug_names, unpack

pytestmark = pytest.mark.slow

# Loaded at import (the web boot), at a request (/predict, in verify.paths), and never (acme/never).
# It also writes what other libraries write under HOME at import: caches the slug must not carry.
APP = '''import json
from pathlib import Path

from huggingface_hub import hf_hub_download

MODEL = "acme/tiny"
CONFIG = json.loads(Path(hf_hub_download(MODEL, "config.json")).read_text())
WEIGHTS = Path(hf_hub_download(repo_id=MODEL, filename="model.safetensors")).read_bytes()
for cache in (Path.home() / ".cache" / "otherlib", Path.home() / ".keras"):
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "state.bin").write_bytes(b"x" * 4096)


def lazy():
    return json.loads(Path(hf_hub_download("acme/lazy", "config.json")).read_text())["name"]


def never():
    return hf_hub_download("acme/never", "config.json")


def app(environ, start_response):
    body = lazy() if environ["PATH_INFO"] == "/predict" else CONFIG["name"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
'''
# Asks the Hub at every import, whatever is cached: such an app cannot boot offline.
ONLINE_APP = '''from huggingface_hub import HfApi, hf_hub_download

SHA = HfApi().model_info("acme/lazy").sha
PATH = hf_hub_download("acme/lazy", "config.json")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [SHA.encode()]
'''


def config(name: str) -> bytes:
    return json.dumps({"name": name, "hidden_size": 8}).encode()


def repos() -> list[HubRepo]:
    variants = {"onnx/model.onnx": b"o" * 300_000, "tf_model.h5": b"h" * 200_000, "pytorch_model.bin": b"p" * 100_000}
    return [
        HubRepo("acme/tiny", {"config.json": config("tiny"), "model.safetensors": b"s" * 64_000, **variants},
                gated=True),
        HubRepo("acme/lazy", {"config.json": config("lazy")}),
        HubRepo("acme/settings", {"config.json": config("settings"), "tokenizer.json": b"{}",
                                  "1_Pooling/config.json": b"{}", "model.safetensors": b"w" * 50_000, **variants}),
        HubRepo("acme/never", {"config.json": config("never")}),
    ]


REQUIREMENTS = "gunicorn==27.0.1\nhuggingface_hub==2.4.0\n"
SETTINGS = "verify:\n  paths: [/, /predict]\nhf:\n  models:\n    - acme/settings\n    - acme/missing\n"


def files_containing(root: Path, needle: bytes) -> list[str]:
    found = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if not path.is_symlink() and needle in path.read_bytes():
                found.append(str(path.relative_to(root)))
    return found


@pytest.fixture
def links(offline_env: dict[str, str], web_wheels: Path) -> dict[str, str]:
    return {"PIP_FIND_LINKS": f"{web_wheels} {offline_env['PIP_FIND_LINKS']}"}


def test_models_the_app_loads_are_baked_and_the_dyno_boots_with_the_hub_down(
        tmp_path: Path, heroku_build: HerokuBuild, links: dict[str, str]) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": REQUIREMENTS, "app.py": APP, "slugslim.yml": SETTINGS,
                                       "Procfile": "web: gunicorn app:app\n", ".cache/committed.txt": "mine\n"})
    with HubServer(repos()) as hub:
        config_vars = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN}
        build = heroku_build(app, env=links, config_vars=config_vars)
        assert build.ok, build.log
        log = build.log
        assert "-----> Downloading Hugging Face models at build time" in log
        assert "Added: the Hugging Face models, 114.1 KB on disk, downloaded once by this build" in log
        report = json.loads((build.build_dir / ".slugslim/report.json").read_text())
        hf = report["hf"]
        assert hf["status"] == "baked" and hf["offline"] and hf["cache"] == ".slugslim/hf/hub", hf
        models = {m["id"]: m for m in hf["models"]}
        assert set(models) == {"acme/tiny", "acme/lazy", "acme/settings"}
        # Exactly what the app read, at the commit main was at; the other formats stay on the Hub.
        assert models["acme/tiny"]["files"] == ["config.json", "model.safetensors"]
        assert models["acme/tiny"]["commit"] == hub.sha("acme/tiny")
        assert models["acme/tiny"]["not_downloaded_bytes"] == 600_000
        assert models["acme/settings"]["files"] == ["1_Pooling/config.json", "config.json", "model.safetensors",
                                                    "tokenizer.json"]
        assert "acme/missing, named in slugslim.yml line" in log and "was not downloaded: no model by that" in log
        assert "acme/never (app.py line 19)" in log
        profile = (build.build_dir / ".profile.d/slugslim-hf.sh").read_text()
        assert 'HF_HUB_CACHE="${HF_HUB_CACHE:-${HOME}/.slugslim/hf/hub}"' in profile
        assert 'HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"' in profile
        # What the checks' imports wrote under HOME is gone; what the app committed there is not.
        # (gunicorn writes ~/.gunicorn too.)
        assert {".cache/otherlib", ".keras"} <= report["leftovers"]["removed"].keys(), report["leftovers"]
        assert (build.build_dir / ".cache/committed.txt").read_text() == "mine\n"
        assert not (build.build_dir / ".keras").exists() and not (build.build_dir / ".cache/otherlib").exists()
        # The token reached the client only.
        assert TOKEN not in log and TOKEN not in json.dumps(report)
        assert files_containing(build.build_dir, TOKEN.encode()) == []

        # The slug keeps the cache's relative links, and a dyno reads the models from it: with the
        # Hub up it asks nothing, and with the Hub down it boots all the same.
        assert build.slug is not None
        with tarfile.open(build.slug) as slug:
            link = slug.getmember(f"./app/.slugslim/hf/hub/models--acme--tiny/snapshots/{hub.sha('acme/tiny')}"
                                  "/config.json")
        assert link.issym() and link.linkname.startswith("../../blobs/")
        home = unpack(build.slug, tmp_path / "dyno")
        command = "python -c 'import app; print(app.CONFIG[\"name\"], app.lazy())'"
        asked = len(hub.requests)
        done = run_dyno(home, config_vars, command)
        assert done.returncode == 0 and done.stdout.split() == ["tiny", "lazy"], done.stderr
        assert len(hub.requests) == asked
        hub.down()
        done = run_dyno(home, config_vars, command)
        assert done.returncode == 0 and done.stdout.split() == ["tiny", "lazy"], done.stderr
        hub.up()

        # A rebuild downloads nothing: the models come from the build cache.
        asked = len(hub.requests)
        again = heroku_build(app, env=links, config_vars=config_vars)
        assert again.ok, again.log
        assert "The files of the last build's models are in place" in again.log
        downloads = [r for r in hub.requests[asked:] if r.method == "GET" and "/resolve/" in r.path]
        assert downloads == []


def test_an_app_that_needs_the_hub_at_boot_stays_online(tmp_path: Path, heroku_build: HerokuBuild,
                                                         links: dict[str, str]) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": REQUIREMENTS, "app.py": ONLINE_APP,
                                       "Procfile": "web: gunicorn app:app\n"})
    with HubServer(repos()) as hub:
        # (The prune's own checks are tested elsewhere; here they would only boot the app twice more.)
        build = heroku_build(app, env=links, config_vars={"HF_ENDPOINT": hub.endpoint, "SLUGSLIM_PRUNE": "false"})
    assert build.ok, build.log
    hf = json.loads((build.build_dir / ".slugslim/report.json").read_text())["hf"]
    assert hf["status"] == "baked" and not hf["offline"], hf
    assert " !     Warning: Dynos still contact the Hugging Face Hub at boot. With the Hub unreachable" in build.log
    assert "OfflineModeIsEnabled" in hf["offline_failure"]
    profile = (build.build_dir / ".profile.d/slugslim-hf.sh").read_text()
    assert "HF_HUB_CACHE" in profile and "HF_HUB_OFFLINE" not in profile

    # HF_HOME set by the user, under /app: the cache is there, kept in the slug, and theirs to point at.
    with HubServer(repos()) as hub:
        build = heroku_build(app, env=links, config_vars={"HF_ENDPOINT": hub.endpoint, "HF_HOME": "/app/.hf",
                                                          "SLUGSLIM_PRUNE": "false"})
    assert build.ok, build.log
    report = json.loads((build.build_dir / ".slugslim/report.json").read_text())
    assert report["hf"]["cache"] == ".hf/hub" and [m["id"] for m in report["hf"]["models"]] == ["acme/lazy"]
    assert report["leftovers"]["kept"] == {".hf": "the Hugging Face models, baked in at build time"}
    assert (build.build_dir / ".hf/hub/models--acme--lazy/refs/main").is_file()
    assert "HF_HUB_CACHE" not in (build.build_dir / ".profile.d/slugslim-hf.sh").read_text()

    # Only hf.models, and nothing that runs the app (no web process, no verify.command): baked, but
    # nothing showed the app starts without the Hub, so the dyno stays online.
    worker = write_app(tmp_path / "worker", {"requirements.txt": REQUIREMENTS, "app.py": "import huggingface_hub\n",
                                             "slugslim.yml": "hf:\n  models: [acme/lazy]\n"})
    with HubServer(repos()) as hub:
        build = heroku_build(worker, env=links, config_vars={"HF_ENDPOINT": hub.endpoint, "SLUGSLIM_PRUNE": "false"})
    assert build.ok, build.log
    assert "Nothing showed that the app starts without the Hub: no web process or verify.command ran" in build.log
    assert "HF_HUB_OFFLINE" not in (build.build_dir / ".profile.d/slugslim-hf.sh").read_text()

    # A gated model without HF_TOKEN: the Hub refuses, and the warning names the line that loads it.
    gated = write_app(tmp_path / "gated", {"requirements.txt": REQUIREMENTS, "Procfile": "web: gunicorn app:app\n",
                                           "app.py": APP})
    with HubServer(repos()) as hub:
        build = heroku_build(gated, env=links, config_vars={"HF_ENDPOINT": hub.endpoint, "SLUGSLIM_PRUNE": "false"})
    assert build.ok, build.log
    assert ("Warning: acme/tiny, named in app.py line 7, was not downloaded: the model is gated: accept its terms "
            "on the Hub, and set the HF_TOKEN config var") in build.log, build.log
    assert json.loads((build.build_dir / ".slugslim/report.json").read_text())["hf"]["models"] == []


def test_the_hub_unreachable_during_the_build_fails_nothing(tmp_path: Path, heroku_build: HerokuBuild,
                                                           links: dict[str, str]) -> None:
    app = write_app(tmp_path / "app", {"requirements.txt": REQUIREMENTS, "app.py": "import huggingface_hub\n"})
    with HubServer() as hub:
        endpoint = hub.endpoint
    build = heroku_build(app, env=links, config_vars={"HF_ENDPOINT": endpoint, "SLUGSLIM_PRUNE": "false"})
    assert build.ok, build.log
    assert "Warning: Hugging Face models were not downloaded at build time. The Hub" in build.log
    assert "each dyno downloads its models from the Hub when it boots" in build.log
    assert not (build.build_dir / ".profile.d/slugslim-hf.sh").exists()
    assert json.loads((build.build_dir / ".slugslim/report.json").read_text())["hf"]["status"] == "skipped"

    # HF_HOME outside the app: the Hub client would read the models from there, which no slug holds.
    build = heroku_build(app, env=links, config_vars={"HF_HOME": "/tmp/hf", "SLUGSLIM_PRUNE": "false"})
    assert build.ok, build.log
    assert "The HF_HOME config var is /tmp/hf, outside the app (/app), so the models cannot be baked" in build.log


def test_with_models_source_the_large_files_go_to_the_store_and_come_back_at_boot(
        tmp_path: Path, heroku_build: HerokuBuild, links: dict[str, str], s3_server: S3) -> None:
    weights = os.urandom(1_500_000)
    loads = ('import json\nfrom pathlib import Path\nfrom huggingface_hub import hf_hub_download\n'
             'CONFIG = json.loads(Path(hf_hub_download("acme/big", "config.json")).read_text())\n'
             'WEIGHTS = Path(hf_hub_download("acme/big", "model.safetensors")).read_bytes()\n'
             'def app(environ, start_response):\n'
             '    start_response("200 OK", [])\n'
             '    return [CONFIG["name"].encode()]\n')
    app = write_app(tmp_path / "app", {
        "requirements.txt": REQUIREMENTS, "app.py": loads, "Procfile": "web: gunicorn app:app\n",
        "slugslim.yml": f"prune: false\nmodels:\n  source: s3://{BUCKET}/hf\n  upload: true\n  min_size: 1\n"
                        "limits:\n  soft_mb: 1\n  hard_mb: 1\n"})
    with HubServer([HubRepo("acme/big", {"config.json": config("big"), "model.safetensors": weights})]) as hub:
        config_vars = {**s3_server.env(), "HF_ENDPOINT": hub.endpoint}
        build = heroku_build(app, env=links, config_vars=config_vars)
        assert build.ok, build.log
        hf = json.loads((build.build_dir / ".slugslim/report.json").read_text())["hf"]
        assert [(m["id"], m["where"]) for m in hf["models"]] == [("acme/big", "store")] and hf["offline"], hf
        assert "Warning: The Hugging Face models are 1.5 MB, more than Heroku's slug limit of 1 MB" in build.log
        digest = hashlib.sha256(weights).hexdigest()
        assert any(key.endswith(f"{digest}/{digest}") for key in s3_server.object_keys()), s3_server.object_keys()
        assert build.slug is not None
        names = slug_names(build.slug)
        blob = f"./app/.slugslim/hf/hub/models--acme--big/blobs/{digest}"
        assert blob not in names and f"./app/.slugslim/hf/hub/models--acme--big/snapshots/{hub.sha('acme/big')}" \
            "/model.safetensors" in names
        home = unpack(build.slug, tmp_path / "dyno")
        hub.down()
        done = run_dyno(home, config_vars, "python -c 'import app; print(len(app.WEIGHTS), app.CONFIG[\"name\"])'")
        assert done.returncode == 0 and done.stdout.split() == ["1500000", "big"], done.stderr
        assert "fetched 1 file(s)" in done.stderr
