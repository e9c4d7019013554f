"""The finish-phase fix-up on real installs: fake TensorFlow wheels, real pip, the app's own interpreter."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from slugslim.core import installed, pip
from slugslim.core.config import Config, SwapConfig
from slugslim.core.context import FinishContext
from slugslim.core.errors import FixupError
from slugslim.core.state import PrepareState, SwapState
from slugslim.finish.fixup import fixup
from tests.wheelfactory import WheelSpec, build_wheel, tensorflow_cpu_spec, tf_family

pytestmark = pytest.mark.usefixtures("isolated_pip")


@pytest.fixture(autouse=True)
def build_pip_finds(isolated_pip: None, monkeypatch: pytest.MonkeyPatch, wheelhouse: Path) -> None:
    """Where the build's pip finds packages: the build's environment (a Heroku build's would name PyPI)."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    tf_family(out)
    build_wheel(WheelSpec(name="cuda-user", requires=["nvidia-cublas-cu12"], files={"cuda_user/__init__.py": ""}),
                out)
    return out


class App:
    """BUILD_DIR with .heroku/python laid out as heroku/python leaves it (here a venv without pip)."""

    def __init__(self, root: Path, wheelhouse: Path, with_pip: bool = True) -> None:
        self.build = root / "build"
        self.build.mkdir(parents=True)
        venv.create(self.build / ".heroku" / "python", with_pip=False, symlinks=True)
        self.python = self.build / ".heroku" / "python" / "bin" / "python"
        self.site = next((self.build / ".heroku" / "python" / "lib").glob("python3.*/site-packages"))
        self.wheelhouse = wheelhouse
        self.with_pip = with_pip
        if with_pip:
            # heroku/python leaves pip in the app's Python (not with uv). Copying ours is much faster
            # than ensurepip, and pip is pure Python.
            import pip

            source = Path(pip.__file__).parent
            shutil.copytree(source, self.site / "pip")
            info = next(source.parent.glob("pip-*.dist-info"))
            shutil.copytree(info, self.site / info.name)

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The app's pip, or ours pointed at the app's interpreter when it has none."""
        command = [str(self.python), "-m", "pip"] if self.with_pip else [
            sys.executable, "-m", "pip", "--python", str(self.python)]
        return subprocess.run([*command, *args], capture_output=True, text=True, check=False)

    def pip_install(self, *requirements: str, find_links: Path | None = None) -> subprocess.CompletedProcess[str]:
        links = find_links or self.wheelhouse
        return self.pip("install", "--no-index", "--find-links", str(links), "--no-cache-dir", "--quiet",
                        *requirements)

    def install(self, *requirements: str) -> None:
        done = self.pip_install(*requirements)
        assert done.returncode == 0, done.stderr

    def context(self, manager: str = "pip", config: Config | None = None) -> FinishContext:
        return FinishContext(
            build_dir=self.build, cache_dir=None, config=config or Config(), python=self.python,
            site_packages=self.site, state=PrepareState(swap=SwapState(manager=manager)), env={},
        )

    def run(self, code: str) -> str:
        done = subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def dists(self) -> dict[str, installed.Dist]:
        return installed.read_dists(self.site)


@pytest.fixture
def make_app(tmp_path: Path, wheelhouse: Path) -> App:
    return App(tmp_path, wheelhouse)


CHECK = ("import importlib.metadata as m, tensorflow; "
         "print(tensorflow.BUILD, m.version('tensorflow'), m.version('tensorflow-cpu'))")


def test_transitive_tf_keras_gets_the_cpu_build_and_a_metadata_only_tensorflow(make_app: App) -> None:
    app = make_app
    app.install("tf-keras==2.21.0")  # tf-keras requires tensorflow: the GPU build comes in
    assert (app.site / "tensorflow" / "libtensorflow_gpu.so.2").is_file()
    result = fixup.run(app.context())
    assert [a["action"] for a in result.actions] == ["installed"]
    assert "required by tf-keras" in result.actions[0]["detail"]
    assert not (app.site / "tensorflow" / "libtensorflow_gpu.so.2").exists()
    assert (app.site / "tensorflow" / "libtensorflow_cpu.so.2").is_file()
    assert app.run(CHECK) == "cpu 2.21.0 2.21.0"
    dists = app.dists()
    assert dists["tensorflow"].is_stand_in and [str(r) for r in dists["tensorflow"].requires] == [
        "tensorflow-cpu==2.21.0"]
    assert app.pip("check").returncode == 0
    assert not list(app.build.parent.glob(".slugslim-quarantine-*"))
    # Nothing left to do on the next run (the cached rebuild is in test_swap_e2e).
    assert fixup.run(app.context()).actions == []


def test_both_installed_gpu_last_reinstalls_the_cpu_files(make_app: App) -> None:
    app = make_app
    app.install("tensorflow-cpu==2.21.0")
    app.install("tensorflow==2.21.0")  # overwrites the shared tensorflow/ files
    assert app.run("import tensorflow; print(tensorflow.BUILD)") == "gpu"
    result = fixup.run(app.context())
    assert [a["action"] for a in result.actions] == ["reinstalled"]
    assert app.run(CHECK) == "cpu 2.21.0 2.21.0"
    assert not (app.site / "tensorflow" / "libtensorflow_gpu.so.2").exists()
    assert app.pip("check").returncode == 0


def test_both_installed_cpu_last_keeps_the_cpu_files_without_a_download(make_app: App) -> None:
    app = make_app
    app.install("tensorflow==2.21.0")
    app.install("tensorflow-cpu==2.21.0")
    result = fixup.run(app.context())
    assert [a["action"] for a in result.actions] == ["kept-cpu"]
    assert app.run(CHECK) == "cpu 2.21.0 2.21.0"
    assert not (app.site / "tensorflow" / "libtensorflow_gpu.so.2").exists()


def test_uv_lock_install_keeps_the_gpu_name_with_cpu_files_and_stubs_the_cuda_wheels(make_app: App,
                                                                                    tmp_path: Path) -> None:
    app = App(tmp_path / "uv", make_app.wheelhouse, with_pip=False)  # heroku/python's uv leaves no pip
    (app.build / "uv.lock").write_text("version = 1\n")
    # What `uv sync` does for a lock with tensorflow[and-cuda]: the GPU build and its CUDA wheels.
    app.install("tensorflow[and-cuda]==2.21.0")
    cublas = app.site / "nvidia" / "cublas" / "lib" / "libnvidia_cublas.so"
    assert cublas.is_file()
    result = fixup.run(app.context(manager="uv"))
    assert result.layout == "merged"
    assert sorted(a["action"] for a in result.actions) == ["installed", "removed", "removed"]
    assert not (app.site / "nvidia").exists()
    dists = app.dists()
    assert "tensorflow-cpu" not in dists  # uv would uninstall a package its lock does not list
    assert dists["tensorflow"].marked
    assert "tensorflow/libtensorflow_cpu.so.2" in dists["tensorflow"].paths()
    assert app.run("import importlib.metadata as m, tensorflow; print(tensorflow.BUILD, m.version('tensorflow'))") \
        == "cpu 2.21.0"
    assert app.pip("check").returncode == 0
    # The next sync finds every locked package installed, CUDA ones included: nothing to download.
    empty = tmp_path / "empty"
    empty.mkdir()
    done = app.pip_install("tensorflow[and-cuda]==2.21.0", find_links=empty)
    assert done.returncode == 0, done.stderr
    # And uninstalling tensorflow removes the CPU files it now owns.
    assert app.pip("uninstall", "-y", "tensorflow").returncode == 0
    assert not (app.site / "tensorflow").exists()


def test_cuda_wheels_something_else_needs_stay(make_app: App) -> None:
    app = make_app
    app.install("tensorflow[and-cuda]==2.21.0", "cuda-user==1.0.0")
    result = fixup.run(app.context())
    actions = {(a["action"], a["package"]) for a in result.actions}
    assert ("kept", "nvidia-cublas-cu12") in actions
    assert ("removed", "nvidia-cudnn-cu12") in actions
    assert (app.site / "nvidia" / "cublas").is_dir()
    assert app.pip("check").returncode == 0


def test_swap_false_and_keep_leave_the_gpu_build(make_app: App) -> None:
    app = make_app
    app.install("tensorflow==2.21.0")
    for config in (Config(swap=SwapConfig(enabled=False)), Config(swap=SwapConfig(keep=("tensorflow",)))):
        fixup.run(app.context(config=config))
        assert app.run("import tensorflow; print(tensorflow.BUILD)") == "gpu"
        assert "tensorflow-cpu" not in app.dists()


def test_a_cpu_build_that_fails_verification_puts_the_gpu_files_back_and_fails(
        make_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app
    app.install("tensorflow==2.21.0")
    broken = tmp_path / "broken-wheels"
    spec = tensorflow_cpu_spec()
    spec.files = {**spec.files, "tensorflow/__init__.py": "raise ImportError('this CPU build is broken')\n"}
    build_wheel(spec, broken)
    ctx = app.context()
    monkeypatch.setenv("PIP_FIND_LINKS", f"{broken} {app.wheelhouse}")
    with pytest.raises(FixupError) as caught:
        fixup.run(ctx)
    assert "this CPU build is broken" in caught.value.render()
    assert "swap: {keep: [tensorflow]}" in caught.value.render()
    # What only the GPU build had came back from the quarantine, which is gone.
    assert (app.site / "tensorflow" / "libtensorflow_gpu.so.2").is_file()
    assert not list(app.build.parent.glob(".slugslim-quarantine-*"))


def test_of_the_apps_pip_config_vars_only_the_extra_index_reaches_the_fixups_pip(
        make_app: App, wheelhouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """heroku/python's pip sees PIP_EXTRA_INDEX_URL of the config vars and nothing else: so does the fix-up's."""
    app = make_app
    app.install("tf-keras==2.21.0")
    shutil.copytree(wheelhouse, tmp_path / "pypi" / "wheels")
    as_in_the_hook(monkeypatch, LEAKING, tmp_path / "pypi" / "wheels")
    ctx = app.context()
    ctx.env.update(LEAKING)
    result = fixup.run(ctx)
    assert [a["action"] for a in result.actions] == ["installed"]
    assert app.run(CHECK) == "cpu 2.21.0 2.21.0"


LEAKING = {"PIP_INDEX_URL": "http://127.0.0.1:9/nowhere", "PIP_FIND_LINKS": "/nonexistent/links", "PIP_RETRIES": "0"}


def as_in_the_hook(monkeypatch: pytest.MonkeyPatch, config_vars: dict[str, str], source: Path) -> None:
    """heroku/python runs bin/post_compile with the config vars exported: the finish phase sees them in
    its environment too. The build's own pip settings (PyPI on Heroku) come from a pip config file here."""
    (source.parent / "pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {source}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(source.parent / "pip.conf"))
    for name in ("PIP_NO_INDEX", "PIP_FIND_LINKS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in config_vars.items():
        monkeypatch.setenv(name, value)


def test_our_pip_for_an_app_without_pip_installs_what_only_our_tools_have(tmp_path: Path) -> None:
    """A uv app has no pip, so slugslim runs its own for the app's Python. That pip must see the app's
    packages only: `packaging` is among slugslim's tools, and the app still gets its own copy."""
    house = tmp_path / "wheels"
    build_wheel(WheelSpec(name="needs-packaging", version="1.0", requires=["packaging"],
                          files={"needs_packaging/__init__.py": ""}), house)
    build_wheel(WheelSpec(name="packaging", version="99.0", files={"packaging/__init__.py": ""}), house)
    venv.create(tmp_path / "app", with_pip=False)
    site = installed.find_site_packages(tmp_path / "app")
    assert site is not None and not (site / "pip").exists()
    command, env = pip.for_app(tmp_path / "app/bin/python", site, {})
    subprocess.run([*command, "install", "--quiet", "--no-index", "--find-links", str(house), "needs-packaging"],
                   env=env, check=True)
    assert set(installed.read_dists(site)) == {"needs-packaging", "packaging"}
