"""Unused-requirement detection on a real pip-installed environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from slugslim.appcheck import unused
from slugslim.core import installed
from tests import sitefactory
from tests.heroku.build import REPO


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> installed.Installed:
    root = tmp_path_factory.mktemp("unused")
    wheels = sitefactory.build_app_wheels(root / "wheels")
    return installed.scan(sitefactory.install_app(wheels, root / "prefix"))


def names(found: list[unused.Unused]) -> list[str]:
    return [u.name for u in found]


def test_import_names_map_to_distributions_with_other_names(env: installed.Installed) -> None:
    providers = env.providers()
    assert providers["PIL"] == {"pillow"}
    assert providers["cv2"] == {"opencv-python-headless"}
    # A namespace package shared by two distributions resolves by its longer dotted name.
    assert providers["acme"] == {"acme-storage", "acme-metrics"}
    assert providers["acme.storage"] == {"acme-storage"}


def test_flags_only_what_the_app_never_uses(env: installed.Installed, tmp_path: Path) -> None:
    app = sitefactory.write_app(tmp_path / "app")
    found = unused.find_unused(app, env)
    # pillow (PIL), opencv (cv2), acme-storage and flask-fake are imported; gunicorn runs from
    # the Procfile; markupthing is a dependency of flask-fake; psycopg2 is a database driver.
    assert names(found)[0] == "jupyter-fake"  # biggest first
    assert sorted(names(found)) == ["acme-metrics", "jupyter-fake", "plugin-thing"]


def test_size_includes_dependencies_only_the_unused_one_needs(env: installed.Installed, tmp_path: Path) -> None:
    app = sitefactory.write_app(tmp_path / "app")
    jupyter = next(u for u in unused.find_unused(app, env) if u.name == "jupyter-fake")
    assert jupyter.bytes >= 200_000  # bigdep's blob comes with it
    assert jupyter.bytes == env.distributions["jupyter-fake"].bytes + env.distributions["bigdep"].bytes
    assert jupyter.source == "requirements.txt line 7"
    assert jupyter.message(lambda n: f"{n} B").startswith("jupyter-fake (")
    assert "is never imported by your app" in jupyter.message(str)


def test_procfile_console_script_counts_as_used(env: installed.Installed, tmp_path: Path) -> None:
    without = sitefactory.write_app(tmp_path / "without", procfile="")
    assert "gunicorn" in names(unused.find_unused(without, env))
    wrapped = sitefactory.write_app(tmp_path / "wrapped", procfile='web: bash -c "exec gunicorn app:app"\n')
    assert "gunicorn" not in names(unused.find_unused(wrapped, env))


def test_procfile_module_arguments_count_as_imports(env: installed.Installed, tmp_path: Path) -> None:
    app = sitefactory.write_app(tmp_path / "app", procfile="worker: python -m plugin_thing.run --verbose\n")
    assert "plugin-thing" not in names(unused.find_unused(app, env))


def test_ignore_unused_silences_dynamic_imports(env: installed.Installed, tmp_path: Path) -> None:
    app = sitefactory.write_app(tmp_path / "app")
    found = unused.find_unused(app, env, ignore=["plugin_thing", "Jupyter-Fake"])
    assert names(found) == ["acme-metrics"]


def test_dynamic_imports_in_code_count(env: installed.Installed, tmp_path: Path) -> None:
    app = sitefactory.write_app(tmp_path / "app")
    (app / "settings.py").write_text(
        'import importlib\nMIDDLEWARE = ["acme.metrics.Middleware"]\nplugin = importlib.import_module("plugin_thing")\n'
    )
    assert names(unused.find_unused(app, env)) == ["jupyter-fake"]


def test_installed_environment_and_virtualenvs_are_not_app_code(env: installed.Installed, tmp_path: Path) -> None:
    app = sitefactory.write_app(tmp_path / "app")
    venv = app / "localenv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "uses_everything.py").write_text("import jupyter_fake\n")
    (app / ".heroku").mkdir()
    (app / ".heroku" / "x.py").write_text("import plugin_thing\n")
    assert sorted(names(unused.find_unused(app, env))) == ["acme-metrics", "jupyter-fake", "plugin-thing"]


def test_requirements_grammar(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("Flask[async]>=2 ; python_version >= '3.8'\n")
    (tmp_path / "requirements.txt").write_text(
        "-r base.txt\n--index-url https://example.invalid/simple\nnumpy==1.26.4 \\\n    --hash=sha256:abc\n"
        "-e git+https://example.invalid/x.git#egg=localpkg\n# comment\n\nrequests  # inline\n"
    )
    found = {r.name: r for r in unused.top_level_requirements(tmp_path)}
    assert set(found) == {"flask", "numpy", "localpkg", "requests"}
    assert found["flask"].extras == frozenset({"async"})
    assert found["flask"].source == "base.txt line 1"
    assert found["requests"].source == "requirements.txt line 8"


def test_pyproject_and_pipfile_are_read_on_the_stack_python(tmp_path: Path, primed_cache: Path,
                                                            stack_python: tuple[str, dict[str, str]]) -> None:
    """heroku-22's python3.10 has no tomllib: tomli from slugslim's tools reads the same files."""
    python, _path = stack_python
    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    tools = next((primed_cache / "slugslim").glob(f"tools-*-py{version}"))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\ndependencies = ["flask>=3", "Pillow"]\n')
    (tmp_path / "Pipfile").write_text('[packages]\nrequests = "*"\n')
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; from slugslim.appcheck import unused; "
            "print(sorted(r.name for r in unused.top_level_requirements(__import__('pathlib').Path(sys.argv[3]))))")
    done = subprocess.run([python, "-s", "-B", "-c", code, str(REPO / "lib"), str(tools), str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['flask', 'pillow', 'requests']"
