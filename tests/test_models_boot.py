"""The .profile.d fetch script, run the way a dyno runs it, against real local servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from slugslim.core.config import ModelsConfig
from slugslim.finish.models.models import Entry, render_manifest
from tests.modelservers import (
    ACCESS_KEY,
    BOOT_SCRIPT,
    BUCKET,
    REPO,
    S3,
    SECRET_KEY,
    SESSION_TOKEN,
    FileServer,
    run_dyno,
    sha256,
)

HELPER = REPO / "lib" / "slugslim" / "boot" / "slugslim_models.py"


def make_app(root: Path, entries: list[Entry], **settings: object) -> Path:
    app = root / "app"
    (app / ".profile.d").mkdir(parents=True)
    (app / ".slugslim").mkdir()
    shutil.copyfile(BOOT_SCRIPT, app / ".profile.d" / "slugslim-models.sh")
    config = ModelsConfig(**settings)  # type: ignore[arg-type]
    (app / ".slugslim" / "models.json").write_text(render_manifest(entries, config), encoding="utf-8")
    return app


def serve(server: FileServer, path: str, data: bytes, model: str = "") -> Entry:
    key = f"/m/{sha256(data)}/{Path(path).name}"
    server.objects[key] = data
    return Entry(path, len(data), sha256(data), server.url + key, model or path)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if ".slugslim-" in p.name)


def test_fetch_then_fetch_again_without_downloading(tmp_path: Path, file_server: FileServer) -> None:
    data = os.urandom(300_000)
    small = b"weights" * 10
    entries = [serve(file_server, "models/a.h5", data), serve(file_server, "models/deep/b.onnx", small)]
    app = make_app(tmp_path, entries)

    first = run_dyno(app, {})
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "started"
    assert (app / "models/a.h5").read_bytes() == data
    assert (app / "models/deep/b.onnx").read_bytes() == small
    assert "fetched models/a.h5 (300.0 KB) in " in first.stderr
    assert "fetched 2 file(s), 300.0 KB, in " in first.stderr
    assert oct((app / "models/a.h5").stat().st_mode & 0o777) == "0o644"
    assert file_server.count("GET") == 2

    second = run_dyno(app, {})
    assert second.returncode == 0, second.stderr
    assert file_server.count("GET") == 2, "a file already in place is not downloaded again"
    assert "all 2 model file(s) already in place" in second.stderr


def test_a_wrong_file_at_the_path_is_replaced(tmp_path: Path, file_server: FileServer) -> None:
    data = os.urandom(5000)
    app = make_app(tmp_path, [serve(file_server, "m.keras", data)])
    (app / "m.keras").write_bytes(b"x" * 5000)
    assert run_dyno(app, {}).returncode == 0
    assert (app / "m.keras").read_bytes() == data


def test_sourcing_leaks_no_shell_options_functions_or_variables(tmp_path: Path, file_server: FileServer) -> None:
    app = make_app(tmp_path, [serve(file_server, "m.h5", b"abc")])
    probe = 'echo "opts=$-"; set -o | grep -E "^(errexit|nounset|pipefail) " | tr -s " \\t" " "; ' \
            'declare -F | grep -c slugslim || true; set | grep -c "^slugslim\\|^__slugslim" || true; trap -p EXIT'
    done = run_dyno(app, {}, probe)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "e" not in lines[0].split("=")[1]
    assert lines[1:4] == ["errexit off", "nounset off", "pipefail off"]
    assert lines[4:6] == ["0", "0"]
    assert len(lines) == 6, "no EXIT trap is left behind"


def test_sha_mismatch_is_refused_and_nothing_is_left(tmp_path: Path, file_server: FileServer) -> None:
    data = os.urandom(20_000)
    entry = serve(file_server, "models/a.h5", data)
    file_server.faults[entry.source.removeprefix(file_server.url)] = "corrupt"
    app = make_app(tmp_path, [entry])
    done = run_dyno(app, {})
    assert done.returncode == 1
    assert "started" not in done.stdout, "the dyno stops instead of serving without its model"
    assert "does not match its sha256, so it was refused" in done.stderr
    assert "stopping the dyno" in done.stderr
    assert not (app / "models/a.h5").exists()
    assert leftovers(app) == []


def test_404_fails_the_dyno_or_warns(tmp_path: Path, file_server: FileServer) -> None:
    entry = Entry("models/gone.h5", 10, "0" * 64, file_server.url + "/m/nothing/gone.h5", "models/gone.h5")
    app = make_app(tmp_path, [entry])
    failed = run_dyno(app, {})
    assert failed.returncode == 1
    assert "could not fetch models/gone.h5: HTTP 404 from " in failed.stderr
    assert file_server.count("GET") == 1, "a 404 is not retried"

    warned = run_dyno(app, {"SLUGSLIM_MODELS_ON_FETCH_FAILURE": "warn"})
    assert warned.returncode == 0
    assert warned.stdout.strip() == "started"
    assert "WARNING: 1 model file(s) are missing" in warned.stderr

    one_off = run_dyno(app, {"DYNO": "run.4321"}, "echo shell")
    assert one_off.returncode == 0 and one_off.stdout.strip() == "shell"
    assert "continuing anyway" in one_off.stderr

    # Even from a shell running under 'set -euo pipefail', a one-off dyno still gets its shell.
    strict_shell = subprocess.run(
        ["bash", "-c", 'set -euo pipefail; . "$HOME/.profile.d/slugslim-models.sh"; echo shell'],
        env={"HOME": str(app), "PATH": os.environ["PATH"], "DYNO": "run.1"}, capture_output=True, text=True,
        check=False,
    )
    assert strict_shell.returncode == 0 and strict_shell.stdout.strip() == "shell", strict_shell.stderr
    assert leftovers(app) == []


def test_the_total_time_bound_holds(tmp_path: Path, file_server: FileServer) -> None:
    entries = [serve(file_server, f"models/{n}.h5", os.urandom(1000)) for n in "abc"]
    for entry in entries:
        file_server.faults[entry.source.removeprefix(file_server.url)] = "hang"
    app = make_app(tmp_path, entries, boot_timeout=2)
    started = time.monotonic()
    done = run_dyno(app, {})
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    # The server would hang for 30 s; the margin above 2 s is for bash and curl on a busy machine.
    assert elapsed < 8, f"three hanging downloads in parallel must stop at the 2 s bound, took {elapsed:.1f}s"
    assert done.stderr.count(": timed out") == 3
    assert not (app / "models").exists() or not any((app / "models").iterdir())


def test_downloads_run_in_parallel(tmp_path: Path, file_server: FileServer) -> None:
    entries = [serve(file_server, f"models/{n}.pt", os.urandom(1000)) for n in "abcdef"]
    for entry in entries:
        file_server.faults[entry.source.removeprefix(file_server.url)] = "slow"
    app = make_app(tmp_path, entries)
    assert run_dyno(app, {}).returncode == 0
    assert all((app / e.path).exists() for e in entries)
    # Four at a time at most; at least two overlap even when a busy machine is slow to start them.
    assert 2 <= file_server.max_active <= 4


def test_a_truncated_transfer_is_retried_and_never_left_in_place(tmp_path: Path, file_server: FileServer) -> None:
    data = os.urandom(200_000)
    once = serve(file_server, "models/once.h5", data)
    file_server.faults[once.source.removeprefix(file_server.url)] = "truncate-once"
    app = make_app(tmp_path, [once])
    done = run_dyno(app, {})
    assert done.returncode == 0, done.stderr
    assert (app / "models/once.h5").read_bytes() == data
    assert file_server.count("GET") == 2

    always = serve(file_server, "models/always.h5", os.urandom(200_000))
    file_server.faults[always.source.removeprefix(file_server.url)] = "truncate"
    app2 = make_app(tmp_path / "2", [always], boot_timeout=2)
    done = run_dyno(app2, {})
    assert done.returncode == 1
    assert "could not fetch models/always.h5: timed out after" in done.stderr
    assert not (app2 / "models/always.h5").exists()
    assert leftovers(app2) == []


def test_paths_that_escape_the_app_are_refused(tmp_path: Path, file_server: FileServer) -> None:
    payload = serve(file_server, "x", b"root:x:0:0::/root:/bin/bash\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    nested = tmp_path / "deep" / "er"
    nested.mkdir(parents=True)
    bad = [
        Entry("../../etc/passwd", payload.bytes, payload.sha256, payload.source, "../../etc/passwd"),
        Entry(str(outside / "abs.h5"), payload.bytes, payload.sha256, payload.source, "abs"),
        Entry("models/./x.h5", payload.bytes, payload.sha256, payload.source, "dot"),
        Entry("link/evil.h5", payload.bytes, payload.sha256, payload.source, "link"),
    ]
    app = make_app(nested, bad, on_fetch_failure="warn")
    (app / "link").symlink_to(outside)
    done = run_dyno(app, {})
    assert done.returncode == 0
    assert done.stderr.count("refused the manifest path") == 4
    assert "WARNING: 4 model file(s) are missing" in done.stderr
    assert file_server.count("GET") == 0, "nothing is even downloaded"
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "etc").exists() and not (nested / "etc").exists()

    strict = make_app(tmp_path / "strict", bad[:1])
    assert run_dyno(strict, {}).returncode == 1


def test_a_tampered_manifest_line_is_refused(tmp_path: Path, file_server: FileServer) -> None:
    app = make_app(tmp_path, [serve(file_server, "m.h5", b"abc")])
    manifest = app / ".slugslim" / "models.json"
    manifest.write_text(manifest.read_text().replace('"m.h5"', '"m\\\\..\\\\h5"', 1))
    done = run_dyno(app, {})
    assert done.returncode == 1
    assert "refused line" in done.stderr


def test_savedmodel_directories_are_fetched_whole(tmp_path: Path, file_server: FileServer) -> None:
    files = {
        "models/sm/saved_model.pb": os.urandom(3000),
        "models/sm/fingerprint.pb": os.urandom(50),
        "models/sm/variables/variables.index": os.urandom(100),
        "models/sm/variables/variables.data-00000-of-00001": os.urandom(40_000),
    }
    entries = [serve(file_server, p, d, "models/sm") for p, d in files.items()]
    app = make_app(tmp_path, entries)
    assert run_dyno(app, {}).returncode == 0
    for relative, data in files.items():
        assert (app / relative).read_bytes() == data
    assert (app / "models/sm/assets").exists() is False


def test_s3_fetch_is_signed_and_credentials_never_show(tmp_path: Path, s3_server: S3) -> None:
    data = os.urandom(100_000)
    digest = sha256(data)
    s3_server.client.put_object(Bucket=BUCKET, Key=f"app/{digest}/net.keras", Body=data)
    entry = Entry("models/net.keras", len(data), digest, f"s3://{BUCKET}/app/{digest}/net.keras", "models/net.keras")
    app = make_app(tmp_path, [entry])
    env = s3_server.env(AWS_SESSION_TOKEN=SESSION_TOKEN)
    done = run_dyno(app, env)
    assert done.returncode == 0, done.stderr
    assert (app / "models/net.keras").read_bytes() == data
    for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
        assert secret not in done.stdout + done.stderr

    missing = make_app(tmp_path / "2", [Entry("m.h5", 3, digest, f"s3://{BUCKET}/app/nope/m.h5", "m.h5")])
    failed = run_dyno(missing, env)
    assert failed.returncode == 1
    assert f"HTTP 404 from s3://{BUCKET}/app/nope/m.h5" in failed.stderr
    for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
        assert secret not in failed.stdout + failed.stderr

    no_keys = run_dyno(make_app(tmp_path / "3", [entry]), {"AWS_ENDPOINT_URL": s3_server.endpoint})
    assert no_keys.returncode == 1
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set" in no_keys.stderr


def test_lazy_helper_fetches_on_first_use(tmp_path: Path, file_server: FileServer) -> None:
    data = os.urandom(10_000)
    app = make_app(tmp_path, [serve(file_server, "models/lazy.h5", data)], boot_timeout=0)
    shutil.copyfile(HELPER, app / "slugslim_models.py")
    boot = run_dyno(app, {})
    assert boot.returncode == 0
    assert "fetched on first use" in boot.stderr
    assert not (app / "models/lazy.h5").exists()

    code = (
        "import slugslim_models as m\n"
        "p = m.path('models/lazy.h5'); print(p); print(open(p, 'rb').read() == DATA)\n"
        "print(m.path('models/lazy.h5') == p)\n"
        "print(m.path('not/in/manifest.txt'))\n"
        "try:\n    m.path('../etc/passwd')\nexcept ValueError:\n    print('refused')\n"
    ).replace("DATA", repr(data))
    env = {"HOME": str(app), "PATH": os.environ["PATH"], "PYTHONPATH": str(app)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out == [str(app / "models/lazy.h5"), "True", "True", str(app / "not/in/manifest.txt"), "refused"]
    assert file_server.count("GET") == 1


def test_lazy_helper_raises_when_the_fetch_fails(tmp_path: Path, file_server: FileServer) -> None:
    entry = Entry("models/gone.h5", 10, "0" * 64, file_server.url + "/m/nothing/gone.h5", "models/gone.h5")
    app = make_app(tmp_path, [entry], boot_timeout=0)
    shutil.copyfile(HELPER, app / "slugslim_models.py")
    code = "import slugslim_models as m\ntry:\n    m.path('models/gone.h5')\nexcept m.FetchError as e:\n    print(e)\n"
    done = subprocess.run([sys.executable, "-c", code], env={"PATH": os.environ["PATH"], "PYTHONPATH": str(app)},
                          capture_output=True, text=True, check=False)
    assert "could not fetch models/gone.h5" in done.stdout
    assert "HTTP 404" in done.stdout


def test_curl_signs_the_boot_request_as_botocore_would(tmp_path: Path, file_server: FileServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """moto does not check signatures, so check curl's against botocore's on the captured request."""
    data = b"weights"
    key = f"/{BUCKET}/p/{sha256(data)}/m.h5"
    file_server.objects[key] = data
    app = make_app(tmp_path, [Entry("m.h5", len(data), sha256(data), f"s3:/{key}", "m.h5")])
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_SESSION_TOKEN": SESSION_TOKEN,
           "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": file_server.url}
    done = run_dyno(app, env)
    assert done.returncode == 0, done.stderr
    sent = {k.lower(): v for k, v in file_server.headers[-1].items()}
    moment = datetime.strptime(sent["x-amz-date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)
    request = AWSRequest(method="GET", url=file_server.url + key)
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "s3", "eu-west-1").add_auth(request)
    assert sent["authorization"] == request.headers["Authorization"]
    assert sent["x-amz-security-token"] == SESSION_TOKEN


def test_works_with_coreutils_alone_when_openssl_is_missing(tmp_path: Path, file_server: FileServer) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "curl", "sha256sum", "stat", "mktemp", "mv", "rm", "mkdir", "dirname", "basename", "chmod",
                 "head", "tr", "cat", "wc", "sleep"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    data = os.urandom(50_000)
    app = make_app(tmp_path, [serve(file_server, "models/a.h5", data)])
    done = run_dyno(app, {"PATH": str(tools)})
    assert done.returncode == 0, done.stderr
    assert (app / "models/a.h5").read_bytes() == data
    assert run_dyno(app, {"PATH": str(tools)}).returncode == 0
    assert file_server.count("GET") == 1
