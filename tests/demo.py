"""`make demo`: the sample Flask + Keras app through the emulated Heroku build, slugslim in front.

It prints the build log as Heroku would show it and the size of the resulting slug. The demo's
model goes to a model store on 127.0.0.1 during the build and comes back when the slug boots
the way a dyno does (bash sources .profile.d with HOME at the unpacked app). The real
tensorflow-cpu and its dependencies are downloaded once into ~/.cache/slugslim-demo/wheels; the
build itself then runs offline from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.heroku import appdir
from tests.heroku.build import BASE_PYTHON, REPO, pip_for, python_runtime, run_build
from tests.modelservers import run_dyno, start_file_server

APP = Path(__file__).resolve().parent / "demo_app"
# What the emulated heroku/python installs once slugslim has swapped tensorflow for tensorflow-cpu.
WHEELS_NEEDED = ["tensorflow-cpu==2.21.0", "flask", "gunicorn", "pillow"]
# The GPU wheel is only looked at, so the build log can show both wheel sizes of the swap.
WHEELS_LOOKED_UP = ["tensorflow==2.21.0"]


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "slugslim-demo"


def ensure_wheels(wheels: Path) -> None:
    print(f"-----> Fetching the demo's wheels into {wheels} (once; about 300 MB)", flush=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--dest", str(wheels)]
    subprocess.run([*pip, *WHEELS_NEEDED], check=True)
    subprocess.run([*pip, "--no-deps", *WHEELS_LOOKED_UP], check=True)


def main() -> int:
    if missing := appdir.problem():
        print(missing, file=sys.stderr)
        return 1
    root = cache_root()
    wheels = root / "wheels"
    ensure_wheels(wheels)
    tools_wheels = Path(os.environ.get("SLUGSLIM_TEST_TOOLS_WHEELS", REPO / ".cache" / "tools-wheels"))
    template = python_runtime(root, tools_wheels)
    workdir = REPO / ".cache" / "demo"
    shutil.rmtree(workdir, ignore_errors=True)
    env = {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{wheels} {tools_wheels}",
        "EMULATED_PYTHON": BASE_PYTHON,
        "EMULATED_PYTHON_TEMPLATE": str(template),
        **pip_for(shutil.which("python3") or "python3", tools_wheels),
    }
    # A local model store (accepts PUT) stands in for S3; the demo's model is small, hence min_size.
    store = start_file_server()
    config_vars = {
        "SLUGSLIM_MODELS_SOURCE": f"{store.url}/models",
        "SLUGSLIM_MODELS_UPLOAD": "true",
        "SLUGSLIM_MODELS_MIN_SIZE": "0.01",
    }
    # The app pins its Python, as heroku/python asks apps to; here, to the Python this demo runs on.
    source = workdir / "src"
    shutil.copytree(APP, source, ignore=shutil.ignore_patterns("__pycache__", "make_model.py"))
    (source / ".python-version").write_text("{}.{}\n".format(*sys.version_info[:2]))
    print(f"-----> Building {APP.relative_to(REPO)} with slugslim in front of (emulated) heroku/python\n", flush=True)
    build = run_build(source, workdir, env=env, config_vars=config_vars)
    print(build.log)
    if not build.ok or build.slug is None:
        print(f"The demo build failed (exit {build.returncode}).", file=sys.stderr)
        return 1
    if "slugslim is skipped" in build.log:
        print("The demo build passed without slugslim: it skipped itself (see the warning above).", file=sys.stderr)
        return 1
    print(f"Slug: {build.slug} ({build.slug_bytes / 1e6:.1f} MB compressed), built in {build.seconds:.0f}s")
    return boot(build.slug, workdir / "dyno", config_vars)


def boot(slug: Path, dyno: Path, config_vars: dict[str, str]) -> int:
    """Unpack the slug and start it as a dyno would, to show the model coming back."""
    dyno.mkdir()
    subprocess.run(["tar", "-xzf", str(slug), "-C", str(dyno)], check=True)
    home = dyno / "app"
    model = "models/classifier.keras"
    print(f"\n-----> Dyno boot from the slug ({model} in the slug: {(home / model).exists()})")
    # The web process would be gunicorn; one request through Flask's test client shows the same thing:
    # the pruned TensorFlow loads the fetched model and predicts.
    request = (
        "python -c 'from app import app; "
        "print(app.test_client().post(\"/predict\", json={\"features\": [6.6, 3.0, 5.6, 2.0]}).get_json())'"
    )
    done = run_dyno(home, {**config_vars, "TF_CPP_MIN_LOG_LEVEL": "2"}, f"sha256sum {model} | cut -c1-16 && {request}",
                    timeout=300)
    print(done.stderr.rstrip()[-2000:])
    if done.returncode != 0:
        print("The dyno did not start.", file=sys.stderr)
        return 1
    digest, _, answer = done.stdout.strip().partition("\n")
    print(f"       {model} is back, sha256 {digest}...")
    print(f"       POST /predict {{\"features\": [6.6, 3.0, 5.6, 2.0]}} -> {answer.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
