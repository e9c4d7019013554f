"""The emulated heroku/python's runtime (python-runtime.sh) made from a distribution's /usr Python.

Every emulated build uses one made from the tests' own Python; this is the other layout a machine
may have (Debian 12's python3, heroku-24's python3.12), with the patches that layout brings.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.heroku.build import PYTHON_BUILDPACK, pip_wheel

# Debian's and Ubuntu's own python3 (stdlib in /usr/lib/python3.X, dist-packages, no pip), where this machine has it.
SYSTEM = Path("/usr/bin/python3")
IS_DISTRIBUTION_PYTHON = SYSTEM.is_file() and subprocess.run(
    [str(SYSTEM), "-c", "import sys, sysconfig; sys.exit(sys.base_prefix != '/usr' or "
     "'posix_local' not in sysconfig.get_scheme_names())"], check=False).returncode == 0


@pytest.mark.skipif(not IS_DISTRIBUTION_PYTHON, reason="no Debian or Ubuntu /usr/bin/python3 here")
def test_pip_installs_into_site_packages_and_the_app_imports_it(tmp_path: Path, tools_wheels: Path,
                                                                 wheelhouse: Path) -> None:
    python = str(SYSTEM)
    runtime = tmp_path / "python"
    subprocess.run([str(PYTHON_BUILDPACK / "lib/python-runtime.sh"), python, str(runtime),
                    str(pip_wheel(tools_wheels))], check=True)
    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    site = runtime / f"lib/python{version}/site-packages"
    assert not list(runtime.rglob("EXTERNALLY-MANAGED")) and not (runtime / "pyvenv.cfg").exists()
    assert list((site / "pip").glob("__pycache__/*.pyc"))  # as pip installs itself

    subprocess.run([str(runtime / "bin/python"), "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                    str(wheelhouse), "flask-fake"], check=True, env={"PIP_CONFIG_FILE": "/dev/null"})
    assert (site / "flask_fake/__init__.py").is_file()
    # With a sitecustomize first on PYTHONPATH, as slugslim's import recorder puts one there.
    (tmp_path / "recorder").mkdir()
    (tmp_path / "recorder/sitecustomize.py").write_text("RECORDING = True\n", encoding="utf-8")
    where = subprocess.run([str(runtime / "bin/python"), "-c", "import sys, flask_fake; print(flask_fake.__file__); "
                            "print(*[p for p in sys.path if 'packages' in p])"], capture_output=True, text=True,
                           check=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "recorder"})
    assert where.stdout.split() == [str(site / "flask_fake/__init__.py"), str(site)]  # no dist-packages
