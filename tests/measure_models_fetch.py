"""Boot-time fetch of a 100 MB model from local stores: `PYTHONPATH=lib .venv/bin/python -m tests.measure_models_fetch`.

Not part of `make test`. Prints how long the .profile.d script takes at dyno start to fetch and
verify the model (plain HTTP server and moto S3 on 127.0.0.1), and a second boot that finds it in place.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from slugslim.core.config import ModelsConfig
from slugslim.finish.models.models import Entry, render_manifest
from tests.modelservers import BOOT_SCRIPT, BUCKET, S3, run_dyno, sha256, start_file_server

SIZE = 100 * 1_000_000


def app_with(root: Path, entry: Entry) -> Path:
    app = root / "app"
    (app / ".profile.d").mkdir(parents=True)
    (app / ".slugslim").mkdir()
    shutil.copyfile(BOOT_SCRIPT, app / ".profile.d/slugslim-models.sh")
    (app / ".slugslim/models.json").write_text(render_manifest([entry], ModelsConfig()))
    return app


def boot(app: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    done = run_dyno(app, env)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(done.stderr)
    print("   ", done.stderr.strip().splitlines()[-1])
    return elapsed


def main() -> None:
    data = os.urandom(SIZE)
    digest = sha256(data)
    server = start_file_server()
    server.objects[f"/m/{digest}/big.h5"] = data
    with tempfile.TemporaryDirectory() as tmp:
        app = app_with(Path(tmp) / "http", Entry("models/big.h5", SIZE, digest, f"{server.url}/m/{digest}/big.h5",
                                                  "models/big.h5"))
        print(f"HTTP  first boot (fetch + sha256): {boot(app, {}):.2f}s")
        print(f"HTTP  second boot (in place, sha256 only): {boot(app, {}):.2f}s")

        import boto3
        from moto.server import ThreadedMotoServer

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        s3 = S3(f"http://{host}:{port}", None)
        client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1",
                              aws_access_key_id="AKIDTEST", aws_secret_access_key="secret")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=f"m/{digest}/big.h5", Body=data)
        env = s3.env()
        app = app_with(Path(tmp) / "s3", Entry("models/big.h5", SIZE, digest, f"s3://{BUCKET}/m/{digest}/big.h5",
                                                "models/big.h5"))
        print(f"S3    first boot (signed fetch + sha256): {boot(app, env):.2f}s")
        moto.stop()


if __name__ == "__main__":
    main()
