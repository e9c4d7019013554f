"""Models through the emulated Heroku build, then the slug booted the way a dyno boots it."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import HerokuBuild, write_app
from tests.modelservers import ACCESS_KEY, BUCKET, S3, SECRET_KEY, FileServer, run_dyno, slug_names, unpack

# The app's own build step reads the model: the finish phase takes it out only after this ran.
USES_MODEL = """#!/usr/bin/env bash
set -euo pipefail
echo "warm-up read the model: $(sha256sum models/classifier.h5 | cut -c1-16)"
"""


@pytest.mark.slow
def test_s3_models_leave_the_slug_and_come_back_at_boot(tmp_path: Path, heroku_build: HerokuBuild,
                                                        s3_server: S3) -> None:
    model = os.urandom(2_000_000)
    variables = os.urandom(1_500_000)
    app = write_app(tmp_path / "src", {
        "requirements.txt": "flask-fake==3.0.0\n",
        "app.py": "import flask_fake\n",
        "slugslim.yml": f"models:\n  source: s3://{BUCKET}/demo\n  upload: true\n  min_size: 1\n",
        "bin/post_compile": USES_MODEL,
        "models/classifier.h5": model,
        "models/vocab.pkl": b"small pickle stays",
        "export/1/saved_model.pb": os.urandom(40_000),
        "export/1/variables/variables.index": os.urandom(300),
        "export/1/variables/variables.data-00000-of-00001": variables,
    })
    (app / "bin/post_compile").chmod(0o755)
    config_vars = s3_server.env()
    build = heroku_build(app, config_vars=config_vars)
    assert build.ok, build.log
    log = build.log

    digest = hashlib.sha256(model).hexdigest()
    assert f"warm-up read the model: {digest[:16]}" in log
    assert log.index("warm-up read the model") < log.index("Taking models out of the slug")
    assert "models/classifier.h5 (2.0 MB, Keras/HDF5 file)" in log
    assert "export/1 (1.5 MB, SavedModel directory, 3 files)" in log
    assert f"models/classifier.h5: uploading 2.0 MB to s3://{BUCKET}/demo/{digest}/classifier.h5" in log
    assert "Took 2 model(s) out of the slug (3.5 MB)" in log
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in log
    assert f"demo/{digest}/classifier.h5" in s3_server.object_keys()

    names = slug_names(build.slug) if build.slug else []
    assert "./app/models/classifier.h5" not in names
    assert "./app/export/1/variables/variables.data-00000-of-00001" not in names
    assert "./app/models/vocab.pkl" in names
    for shipped in (".slugslim/models.json", ".profile.d/slugslim-models.sh", "slugslim_models.py",
                    "bin/post_compile"):
        assert f"./app/{shipped}" in names

    # Dyno boot: bash sources .profile.d with HOME at the unpacked app, the config vars set.
    home = unpack(build.slug, tmp_path / "dyno")  # type: ignore[arg-type]
    booted = run_dyno(home, config_vars, "python3 -c 'print(open(\"models/classifier.h5\",\"rb\").read(4).hex())'")
    assert booted.returncode == 0, booted.stderr
    assert booted.stdout.strip() == model[:4].hex()
    assert (home / "export/1/variables/variables.data-00000-of-00001").read_bytes() == variables
    assert "fetched 4 file(s), 3.5 MB, in " in booted.stderr
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in booted.stdout + booted.stderr


@pytest.mark.slow
def test_https_credentials_never_reach_the_slug_and_the_dyno_reads_them_from_config_vars(
        tmp_path: Path, heroku_build: HerokuBuild, file_server: FileServer) -> None:
    file_server.required_auth = "Basic " + base64.b64encode(b"deploy:pa55word!").decode()
    file_server.required_query = "token=t0ken-s3cret"
    source = f"{file_server.url.replace('http://', 'http://deploy:pa55word%21@')}/private/models?token=t0ken-s3cret"
    model = os.urandom(300_000)
    app = write_app(tmp_path / "src", {
        "requirements.txt": "flask-fake==3.0.0\n",
        "slugslim.yml": "models:\n  upload: true\n  min_size: 0.1\n",
        "models/classifier.h5": model,
    })
    config_vars = {"SLUGSLIM_MODELS_SOURCE": source}
    build = heroku_build(app, config_vars=config_vars)
    assert build.ok, build.log
    assert "Took 1 model(s) out of the slug" in build.log
    assert file_server.count("PUT") == 1
    secrets = (b"pa55word", b"deploy:", b"t0ken-s3cret", b"pa55word%21")
    for secret in secrets:
        assert secret.decode() not in build.log
    home = unpack(build.slug, tmp_path / "dyno")  # type: ignore[arg-type]
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            assert not [s for s in secrets if s in content], path
    manifest = (home / ".slugslim/models.json").read_text()
    assert f'"source": "{file_server.url}/private/models/' in manifest

    # A release-phase dyno does not fetch (its failure would stop the deploy)...
    released = run_dyno(home, {**config_vars, "DYNO": "release.1"}, "test ! -e models/classifier.h5")
    assert released.returncode == 0, released.stderr
    assert "release phase: models are not fetched" in released.stderr
    assert file_server.count("GET") == 0
    # ...a web dyno does, with the credentials of the config var, which the slug never had.
    booted = run_dyno(home, config_vars, "sha256sum models/classifier.h5")
    assert booted.returncode == 0, booted.stderr
    assert booted.stdout.split()[0] == hashlib.sha256(model).hexdigest()
    assert file_server.headers[-1]["Authorization"] == file_server.required_auth
    for secret in secrets:
        assert secret.decode() not in booted.stderr
    # SLUGSLIM_MODELS_AUTH serves when the source var carries no credentials (here, no token: refused).
    (home / "models/classifier.h5").unlink()
    refused = run_dyno(home, {"SLUGSLIM_MODELS_AUTH": "deploy:pa55word!"}, "true")
    assert refused.returncode != 0 and "HTTP 401 from" in refused.stderr
    file_server.required_query = ""
    fetched = run_dyno(home, {"SLUGSLIM_MODELS_AUTH": "deploy:pa55word!"}, "test -f models/classifier.h5")
    assert fetched.returncode == 0, fetched.stderr
