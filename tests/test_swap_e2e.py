"""The TensorFlow swap end to end: slugslim, then the emulated heroku/python, then a cached rebuild."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import HerokuBuild, write_app
from tests.heroku.build import Build
from tests.modelservers import run_dyno
from tests.wheelfactory import sha256_of

pytestmark = pytest.mark.slow


def wheel(wheelhouse: Path, prefix: str) -> Path:
    return next(wheelhouse.glob(f"{prefix}-*.whl"))


def dists(build: Build) -> set[str]:
    return {p.name for p in build.site_packages().glob("*.dist-info")}


def app_python(build: Build, code: str) -> str:
    done = subprocess.run([str(build.build_dir / ".heroku/python/bin/python"), "-c", code], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def without(wheelhouse: Path, tmp_path: Path, *prefixes: str) -> Path:
    """A copy of the wheelhouse lacking some wheels: a rebuild that needs them fails."""
    copy = tmp_path / "wheelhouse-without"
    shutil.copytree(wheelhouse, copy)
    for prefix in prefixes:
        for path in copy.glob(f"{prefix}-*.whl"):
            path.unlink()
    return copy


def find_links(offline_env: dict[str, str], wheelhouse: Path, replacement: Path) -> dict[str, str]:
    return {"PIP_FIND_LINKS": offline_env["PIP_FIND_LINKS"].replace(str(wheelhouse), str(replacement))}


CHECK = "import importlib.metadata as m, tensorflow; print(tensorflow.BUILD, m.version('tensorflow'))"


def test_hashed_requirements_with_nested_files_are_swapped_and_the_cache_survives(
        tmp_path: Path, heroku_build: HerokuBuild, wheelhouse: Path) -> None:
    h = {name: sha256_of(wheel(wheelhouse, name)) for name in
         ("tensorflow", "numpy_fake", "flask_fake", "nvidia_cublas_cu12", "nvidia_cudnn_cu12")}
    # requirements.txt: UTF-8 BOM, CRLF, comments, options, nested files, extras, a marker, a continuation.
    root = ("\ufeff# Production dependencies\r\n--only-binary :all:\r\n-r requirements/ml.txt\r\n"
            "-c requirements/constraints.txt\r\n\r\n"
            f'TensorFlow[and-cuda]==2.21.0 ; sys_platform == "linux" \\\r\n    --hash=sha256:{h["tensorflow"]}\r\n'
            f"flask-fake==3.0.0 \\\r\n    --hash=sha256:{h['flask_fake']}\r\n")
    ml = (f'tensorflow==2.21.0 ; sys_platform == "darwin" --hash=sha256:{h["tensorflow"]}\n'
          f"numpy-fake==1.26.4 --hash=sha256:{h['numpy_fake']}  # a dependency\n"
          f"nvidia-cublas-cu12==12.5.3.2 \\\n    --hash=sha256:{h['nvidia_cublas_cu12']}\n"
          f"nvidia-cudnn-cu12==9.3.0.75 --hash=sha256:{h['nvidia_cudnn_cu12']}\n")
    app = write_app(tmp_path / "app", {"requirements.txt": root.encode("utf-8"), "requirements/ml.txt": ml,
                                       "requirements/constraints.txt": "tensorflow_gpu<3\nTensorFlow==2.21.0\n",
                                       ".python-version": "3.11\n"})
    first = heroku_build(app)
    assert first.ok, first.log
    assert "requirements.txt line 6: TensorFlow[and-cuda]==2.21.0 → tensorflow-cpu==2.21.0 (" in first.log
    assert "requirements/ml.txt line 3: nvidia-cublas-cu12==12.5.3.2 removed" in first.log
    built = first.build_dir
    cpu_hash = sha256_of(wheel(wheelhouse, "tensorflow_cpu"))
    out = (built / "requirements.txt").read_bytes()
    header, rest = out.split(b"\r\n", 1)
    assert header.startswith("\ufeff# slugslim (Heroku buildpack) changed this file".encode())
    assert rest.decode() == root[1:].replace(
        f'TensorFlow[and-cuda]==2.21.0 ; sys_platform == "linux" \\\r\n    --hash=sha256:{h["tensorflow"]}',
        f'tensorflow-cpu==2.21.0 ; sys_platform == "linux" \\\r\n    --hash=sha256:{cpu_hash}')
    assert (built / "requirements/ml.txt").read_text().splitlines(keepends=True)[1:] == ml.splitlines(
        keepends=True)[:2]  # the darwin line is for laptops; the CUDA pins are gone
    assert (built / "requirements/constraints.txt").read_text().endswith(
        "tensorflow-cpu<3\ntensorflow-cpu==2.21.0\n")
    installed = dists(first)
    assert "tensorflow_cpu-2.21.0.dist-info" in installed
    assert not {d for d in installed if d.startswith(("tensorflow-", "nvidia"))}
    assert app_python(first, "import tensorflow; print(tensorflow.BUILD)") == "cpu"
    assert "GPU builds found" not in first.log
    with tarfile.open(first.slug) as slug:  # type: ignore[arg-type]
        assert "./app/requirements/ml.txt" in slug.getnames()

    # The rewrite is byte-identical, so heroku/python keeps its cache (it compares requirements.txt).
    second = heroku_build(app, slug=False)
    assert second.ok, second.log
    assert "-----> Restoring cache" in second.log
    assert "Requirement already satisfied: tensorflow-cpu==2.21.0" in second.log
    assert (second.build_dir / "requirements.txt").read_bytes() == out


def test_pip_tools_app_is_relocked_in_the_build(tmp_path: Path, heroku_build: HerokuBuild,
                                                wheelhouse: Path) -> None:
    h = {name: sha256_of(wheel(wheelhouse, name)) for name in ("tensorflow", "numpy_fake", "nvidia_cublas_cu12",
                                                               "nvidia_cudnn_cu12")}
    lock = ("#\n# This file is autogenerated by pip-compile with Python 3.11\n# by the following command:\n#\n"
            "#    pip-compile --generate-hashes\n#\n--prefer-binary\n\n"
            f"numpy-fake==1.26.4 \\\n    --hash=sha256:{h['numpy_fake']}\n    # via tensorflow\n"
            f"nvidia-cublas-cu12==12.5.3.2 \\\n    --hash=sha256:{h['nvidia_cublas_cu12']}\n    # via tensorflow\n"
            f"nvidia-cudnn-cu12==9.3.0.75 \\\n    --hash=sha256:{h['nvidia_cudnn_cu12']}\n    # via tensorflow\n"
            f"tensorflow[and-cuda]==2.21.0 \\\n    --hash=sha256:{h['tensorflow']}\n    # via -r requirements.in\n")
    app = write_app(tmp_path / "app", {"requirements.in": "tensorflow[and-cuda]==2.21.0\n", "requirements.txt": lock})
    build = heroku_build(app, slug=False)
    assert build.ok, build.log
    out = (build.build_dir / "requirements.txt").read_text()
    assert out.startswith("# slugslim (Heroku buildpack) re-locked this file")
    assert "#    pip-compile --generate-hashes\n#\n--prefer-binary\n\n" in out  # its header and options stay
    cpu_hash = sha256_of(wheel(wheelhouse, "tensorflow_cpu"))
    assert f"tensorflow-cpu==2.21.0 \\\n    --hash=sha256:{cpu_hash}\n    # via -r requirements.in\n" in out
    assert "nvidia" not in out
    assert "tensorflow_cpu-2.21.0.dist-info" in dists(build)
    assert app_python(build, "import tensorflow; print(tensorflow.BUILD)") == "cpu"


def test_tf_keras_pulling_gpu_tensorflow_next_to_cpu_is_fixed_and_not_fetched_again(
        tmp_path: Path, heroku_build: HerokuBuild, wheelhouse: Path, offline_env: dict[str, str]) -> None:
    # tensorflow-cpu as written, and tf-keras, which requires `tensorflow`: pip installs both builds.
    app = write_app(tmp_path / "app", {"requirements.txt": "tensorflow-cpu==2.21.0\ntf-keras==2.21.0\n"})
    first = heroku_build(app, slug=False)
    assert first.ok, first.log
    assert "GPU builds found after the install" in first.log
    assert "tensorflow 2.21.0 (required by tf-keras)" in first.log
    assert app_python(first, CHECK) == "cpu 2.21.0"
    assert not (first.site_packages() / "tensorflow" / "libtensorflow_gpu.so.2").exists()
    assert (first.build_dir / "requirements.txt").read_text() == "tensorflow-cpu==2.21.0\ntf-keras==2.21.0\n"

    no_gpu = without(wheelhouse, tmp_path, "tensorflow")
    second = heroku_build(app, env=find_links(offline_env, wheelhouse, no_gpu), slug=False)
    assert second.ok, second.log
    assert "-----> Restoring cache" in second.log
    assert "GPU builds found" not in second.log
    assert app_python(second, CHECK) == "cpu 2.21.0"


def test_slugslim_after_heroku_python_fixes_up_instead_of_rewriting(tmp_path: Path, offline_env: dict[str, str],
                                                                    primed_cache: Path) -> None:
    from tests.heroku.build import PYTHON_BUILDPACK, SLUGSLIM, run_build

    text = "tensorflow==2.21.0\nflask-fake==3.0.0\n"
    app = write_app(tmp_path / "app", {"requirements.txt": text})
    cache = tmp_path / "cache"
    shutil.copytree(primed_cache, cache, symlinks=True)
    build = run_build(app, tmp_path / "work", buildpacks=(PYTHON_BUILDPACK, SLUGSLIM), env=offline_env,
                      cache_dir=cache)
    assert build.ok, build.log
    assert (build.build_dir / "requirements.txt").read_text() == text  # too late to matter: left alone
    assert "tensorflow 2.21.0 (installed from pip) → tensorflow-cpu 2.21.0" in build.log
    assert app_python(build, CHECK) == "cpu 2.21.0"


def test_a_path_requirement_to_the_gpu_wheel_is_left_as_written_warned_and_fixed_up(
        tmp_path: Path, heroku_build: HerokuBuild, wheelhouse: Path) -> None:
    text = "# vendored wheel\r\n./vendor/tensorflow-2.21.0-py3-none-any.whl\r\nflask-fake==3.0.0\r\n"
    app = write_app(tmp_path / "app", {"requirements.txt": text.encode(),
                                       "vendor/tensorflow-2.21.0-py3-none-any.whl":
                                           wheel(wheelhouse, "tensorflow").read_bytes()})
    build = heroku_build(app, slug=False)
    assert build.ok, build.log
    assert (build.build_dir / "requirements.txt").read_bytes() == text.encode()
    assert " !     Warning: requirements.txt line 2: ./vendor/tensorflow-2.21.0-py3-none-any.whl left as written" \
        in build.log
    assert "tensorflow 2.21.0 (installed from pip) → tensorflow-cpu 2.21.0" in build.log
    assert app_python(build, CHECK) == "cpu 2.21.0"


def test_fixup_console_scripts_name_the_app_python_and_run_on_a_dyno(tmp_path: Path,
                                                                      heroku_build: HerokuBuild) -> None:
    # tf-keras requires `tensorflow`: the GPU build comes in, and the fix-up's pip install of the CPU
    # build rewrites bin/saved_model_cli. It must name the Python a dyno has: /app/.heroku/python.
    app = write_app(tmp_path / "app", {"requirements.txt": "tf-keras==2.21.0\n"})
    build = heroku_build(app)
    assert build.ok, build.log
    assert "tensorflow-cpu 2.21.0, installed with --no-deps" in build.log
    script = build.build_dir / ".heroku/python/bin/saved_model_cli"
    assert script.read_text().splitlines()[0] == "#!/app/.heroku/python/bin/python"
    # The slug carries its own Python runtime (no venv pointing elsewhere), which runs from /app.
    python_home = build.build_dir / ".heroku/python"
    assert not (python_home / "pyvenv.cfg").exists()
    assert list(python_home.glob("lib/python3.*/os.py"))
    home = tmp_path / "dyno"
    home.mkdir()
    subprocess.run(["tar", "-xzf", str(build.slug), "-C", str(home)], check=True)
    shutil.rmtree(build.build_dir)  # a dyno has no BUILD_DIR
    booted = run_dyno(home / "app", {}, "saved_model_cli; python -c 'import sys; print(sys.prefix)'")
    assert booted.returncode == 0, booted.stderr
    assert booted.stdout.split("\n")[:2] == ["saved_model_cli cpu", "/app/.heroku/python"]
