"""The finish-phase models step: upload, skip-if-present, exclusion, manifest, and its failures."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from slugslim.core.config import Config, ModelsConfig
from slugslim.core.context import FinishContext
from slugslim.core.errors import ModelStoreError
from slugslim.finish.models import models, sigv4, store
from tests.modelservers import (
    ACCESS_KEY,
    BUCKET,
    S3,
    SECRET_KEY,
    SESSION_TOKEN,
    FileServer,
    run_dyno,
    sha256,
)


def test_sigv4_matches_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    moment = datetime(2026, 11, 28, 12, 30, 5, tzinfo=timezone.utc)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment.replace(tzinfo=None))
    creds = sigv4.Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    path = "/" + sigv4.quote_key("prefix/abc123/my model+v2.h5")
    body = b"model bytes"
    for method, payload in (("PUT", body), ("HEAD", b"")):
        extra = {"content-type": "application/octet-stream"} if payload else {}
        ours = sigv4.sign(method, "bucket.s3.eu-west-1.amazonaws.com", path, extra, sha256(payload), creds,
                          "eu-west-1", now=moment)
        request = AWSRequest(method=method, url=f"http://bucket.s3.eu-west-1.amazonaws.com{path}",
                             headers=extra, data=payload)
        S3SigV4Auth(BotoCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "s3", "eu-west-1").add_auth(request)
        assert ours["authorization"] == request.headers["Authorization"]
        assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
    assert SECRET_KEY[:6] not in repr(creds)


def make_app(root: Path, files: dict[str, bytes]) -> Path:
    app = root / "build"
    for relative, data in files.items():
        path = app / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return app


def context(app: Path, env: dict[str, str], **settings: object) -> FinishContext:
    config = Config(models=ModelsConfig(**settings))  # type: ignore[arg-type]
    return FinishContext(build_dir=app, cache_dir=None, env=env, config=config, python=Path(sys.executable),
                         site_packages=None)


def manifest(app: Path) -> list[dict[str, object]]:
    files = json.loads((app / ".slugslim/models.json").read_text())["files"]
    assert isinstance(files, list)
    return files


MODEL = os.urandom(40_000)
SM = {
    "export/sm/saved_model.pb": os.urandom(5000),
    "export/sm/variables/variables.index": os.urandom(200),
    "export/sm/variables/variables.data-00000-of-00001": os.urandom(30_000),
}


def test_upload_to_s3_then_skip_when_present(tmp_path: Path, s3_server: S3, capfd: pytest.CaptureFixture[str]) -> None:
    app = make_app(tmp_path, {"models/net.h5": MODEL, "models/tiny.h5": b"t" * 10, **SM, "app.py": b"print(1)"})
    env = s3_server.env(AWS_SESSION_TOKEN=SESSION_TOKEN)
    ctx = context(app, env, source=f"s3://{BUCKET}/apps/demo", upload=True, min_size=0.01)
    result = models.run(ctx)

    digest = sha256(MODEL)
    assert [m.path for m in result.removed] == ["export/sm", "models/net.h5"]
    assert result.uploaded_files == 4
    assert not (app / "models/net.h5").exists() and not (app / "export/sm").exists()
    assert (app / "models/tiny.h5").exists(), "below models.min_size: stays"
    assert f"apps/demo/{digest}/net.h5" in s3_server.object_keys()
    assert len(s3_server.object_keys()) == 4
    entries = manifest(app)
    assert {"path": "models/net.h5", "bytes": len(MODEL), "sha256": digest,
            "source": f"s3://{BUCKET}/apps/demo/{digest}/net.h5", "model": "models/net.h5"} in entries
    assert {e["model"] for e in entries} == {"export/sm", "models/net.h5"}
    assert (app / ".profile.d/slugslim-models.sh").stat().st_mode & 0o111
    assert "slugslim-models-helper" in (app / "slugslim_models.py").read_text()
    assert ctx.results.models is not None
    assert ctx.results.models.removed_bytes == len(MODEL) + sum(len(d) for d in SM.values())
    out, err = capfd.readouterr()
    assert "models/net.h5 (40.0 KB, Keras/HDF5 file)" in out
    assert "export/sm (35.2 KB, SavedModel directory, 3 files)" in out
    assert f"models/net.h5: uploading 40.0 KB to s3://{BUCKET}/apps/demo/{digest}/net.h5" in out

    # The next build of the same app: everything is there already, nothing is uploaded.
    again = make_app(tmp_path / "again", {"models/net.h5": MODEL, **SM})
    second = models.run(context(again, env, source=f"s3://{BUCKET}/apps/demo", upload=True, min_size=0.01))
    assert second.uploaded_files == 0 and second.present_files == 4
    assert [m.path for m in second.removed] == ["export/sm", "models/net.h5"]
    out2, err2 = capfd.readouterr()
    assert "already at s3://" in out2
    for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
        assert secret not in out + err + out2 + err2
        assert secret not in json.dumps(ctx.results.models.to_json() if ctx.results.models else {})

    # And the dyno gets them back.
    booted = run_dyno(app, env)
    assert booted.returncode == 0, booted.stderr
    assert (app / "models/net.h5").read_bytes() == MODEL
    for relative, data in SM.items():
        assert (app / relative).read_bytes() == data


def test_without_upload_only_models_present_at_the_source_are_removed(tmp_path: Path, s3_server: S3) -> None:
    other = os.urandom(20_000)
    s3_server.client.put_object(Bucket=BUCKET, Key=f"m/{sha256(MODEL)}/net.h5", Body=MODEL)
    app = make_app(tmp_path, {"models/net.h5": MODEL, "models/other.onnx": other})
    result = models.run(context(app, s3_server.env(), source=f"s3://{BUCKET}/m", min_size=0.01))
    assert [m.path for m in result.removed] == ["models/net.h5"]
    assert [(m.path, why) for m, why in result.kept] == [
        ("models/other.onnx", f"it is not at s3://{BUCKET}/m/{sha256(other)}/other.onnx, and models.upload is not true")
    ]
    assert (app / "models/other.onnx").exists()
    assert [e["path"] for e in manifest(app)] == ["models/net.h5"]


def test_https_put_upload_and_boot(tmp_path: Path, file_server: FileServer) -> None:
    app = make_app(tmp_path, {"models/net.keras": MODEL})
    result = models.run(context(app, {}, source=f"{file_server.url}/store/v1", upload=True, min_size=0.01))
    assert result.uploaded_files == 1
    key = f"/store/v1/{sha256(MODEL)}/net.keras"
    assert file_server.objects[key] == MODEL
    assert file_server.count("HEAD", key) == 1 and file_server.count("PUT", key) == 1
    booted = run_dyno(app, {})
    assert booted.returncode == 0, booted.stderr
    assert (app / "models/net.keras").read_bytes() == MODEL


def test_a_failed_upload_keeps_the_model(tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(store, "RETRY_DELAY", 0.0)
    key = f"/s/{sha256(MODEL)}/net.h5"
    file_server.faults[key] = "put-error"
    app = make_app(tmp_path, {"models/net.h5": MODEL})
    result = models.run(context(app, {}, source=f"{file_server.url}/s", upload=True, min_size=0.01))
    assert result.removed == []
    assert (app / "models/net.h5").read_bytes() == MODEL
    assert not (app / ".slugslim/models.json").exists()
    assert not (app / ".profile.d/slugslim-models.sh").exists()
    assert file_server.count("PUT", key) == store.ATTEMPTS, "a server error is retried"
    err = capfd.readouterr().err
    assert "Warning: 1 model(s) stay in the slug" in err
    assert "returned HTTP 500" in err


def test_strict_fails_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "RETRY_DELAY", 0.0)
    app = make_app(tmp_path, {"models/net.h5": MODEL})
    with pytest.raises(ModelStoreError) as raised:
        models.run(context(app, {}, source="http://127.0.0.1:9/nowhere", upload=True, strict=True, min_size=0.01))
    assert "models/net.h5: could not reach http://127.0.0.1:9" in raised.value.render()
    assert (app / "models/net.h5").exists()


def test_s3_without_credentials_keeps_models_and_says_why(tmp_path: Path,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    app = make_app(tmp_path, {"models/net.h5": MODEL})
    result = models.run(context(app, {}, source="s3://bucket/x", upload=True, min_size=0.01))
    assert result.removed == [] and (app / "models/net.h5").exists()
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set" in capfd.readouterr().err


def test_no_source_keeps_models_with_a_warning(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    app = make_app(tmp_path, {"models/net.h5": MODEL})
    result = models.run(context(app, {}, min_size=0.01))
    assert result.removed == [] and (app / "models/net.h5").exists()
    assert "Warning: 1 model(s) (40.0 KB) stay in the slug." in capfd.readouterr().err
    assert (app / "slugslim_models.py").exists(), "app code calling slugslim_models.path() still imports"


def test_models_false_does_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    app = make_app(tmp_path, {"models/net.h5": MODEL})
    ctx = context(app, {}, enabled=False, source="s3://bucket/x", min_size=0.01)
    models.run(ctx)
    assert (app / "models/net.h5").exists()
    assert capfd.readouterr().out == ""
    assert ctx.results.models is not None and ctx.results.models.enabled is False


def test_an_apps_own_slugslim_models_module_is_left_alone(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"models/net.h5": MODEL, "slugslim_models.py": b"MINE = 1\n"})
    models.run(context(app, {}, min_size=0.01))
    assert (app / "slugslim_models.py").read_bytes() == b"MINE = 1\n"


def test_a_partial_object_at_the_source_is_uploaded_again(tmp_path: Path, file_server: FileServer) -> None:
    key = f"/s/{sha256(MODEL)}/net.h5"
    file_server.objects[key] = MODEL[:1000]
    app = make_app(tmp_path, {"models/net.h5": MODEL})
    result = models.run(context(app, {}, source=f"{file_server.url}/s", upload=True, min_size=0.01))
    assert result.uploaded_files == 1 and result.present_files == 0
    assert file_server.objects[key] == MODEL
