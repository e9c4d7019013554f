#!/usr/bin/env bash
# Usage: python-runtime.sh PYTHON DEST PIP_WHEEL
#
# Make DEST a Python runtime laid out like the ones heroku/python downloads: an upstream-style
# CPython prefix (bin/python3.X, lib/python3.X with its stdlib, site-packages at
# lib/python3.X/site-packages) with pip in site-packages, copied from the interpreter PYTHON, so
# that it runs from wherever it is put: no pyvenv.cfg, nothing that points back at PYTHON's own
# prefix for the stdlib. Slimmed as the real archives are (no stdlib tests, no idle or tkinter,
# no static library). pip is unpacked from PIP_WHEEL, offline, whether PYTHON has pip or not, and
# PIP_WHEEL is what ensurepip bundles when PYTHON bundles no pip wheel.
#
# PYTHON may be a self-contained prefix (pyenv's, python.org's) or a distribution's /usr one.
# Debian and Ubuntu patch their stdlib for their own layout: site puts dist-packages on sys.path
# instead of site-packages (and from 3.11 on, site is frozen into the interpreter, so the copy of
# site.py is not what runs), sysconfig installs into local/lib/python3.X/dist-packages, and an
# EXTERNALLY-MANAGED file makes pip refuse to install. The copy gets upstream's behaviour back,
# as a runtime from heroku/python has it: sysconfig's default scheme, no marker, and site-packages
# on sys.path through a .pth file in the one directory Debian's site reads (it puts site-packages
# there and takes its own directory out again). Not a sitecustomize: slugslim's import recorder
# puts one first on PYTHONPATH, which would hide it. The script then checks the result.
# The emulated heroku/python copies DEST into BUILD_DIR/.heroku/python; the tests make DEST once.

set -euo pipefail

usage="Usage: python-runtime.sh PYTHON DEST PIP_WHEEL"
python="${1:?${usage}}"
dest="${2:?${usage}}"
pip_wheel="${3:?${usage}}"

read -r prefix version < <("${python}" -c 'import sys; print(sys.base_prefix, "%d.%d" % sys.version_info[:2])')
stdlib="lib/python${version}"
partial="${dest}.partial"
rm -rf "${partial}"
mkdir -p "${partial}/bin" "${partial}/lib" "${partial}/include"
cp -a "${prefix}/bin/python${version}" "${partial}/bin/"
ln -s "python${version}" "${partial}/bin/python3"
ln -s python3 "${partial}/bin/python"
cp -a "${prefix}"/lib/libpython"${version}"*.so* "${partial}/lib/" 2>/dev/null || true
tar -C "${prefix}" --create \
	--exclude="${stdlib}/site-packages" --exclude="${stdlib}/dist-packages" --exclude="${stdlib}/test" \
	--exclude="${stdlib}/idlelib" --exclude="${stdlib}/tkinter" --exclude="${stdlib}/turtledemo" \
	--exclude="${stdlib}/config-*/*.a" --exclude='*.opt-[12].pyc' \
	--exclude="${stdlib}/EXTERNALLY-MANAGED" --exclude="${stdlib}/sitecustomize.py" \
	"${stdlib}" | tar -C "${partial}" --extract
mkdir -p "${partial}/${stdlib}/site-packages"
[[ -d "${prefix}/include/python${version}" ]] && cp -a "${prefix}/include/python${version}" "${partial}/include/"
# The real runtimes are linked with --strip-all.
find "${partial}/lib" -name '*.so*' -type f -exec strip --strip-unneeded {} + 2>/dev/null || true

"${python}" - "${partial}/${stdlib}" "${pip_wheel}" <<'PY'
import shutil
import sys
import zipfile
from pathlib import Path

stdlib, pip_wheel = Path(sys.argv[1]), sys.argv[2]
SITE_PACKAGES_PTH = (  # one line: site runs a .pth line that starts with "import"
    "import os, site, sys; "
    "sys.path.remove(os.path.join(sys.prefix, 'lib', 'python3', 'dist-packages')); "
    "site.addsitedir(os.path.join(sys.prefix, 'lib', 'python%d.%d' % sys.version_info[:2], 'site-packages'))\n"
)
sysconfig = stdlib / "sysconfig.py"
text = sysconfig.read_text(encoding="utf-8")
if "'posix_local'" in text:  # Debian's scheme; upstream has posix_prefix
    sysconfig.write_text(text.replace("prefix_scheme = 'posix_local'", "prefix_scheme = 'posix_prefix'"),
                         encoding="utf-8")
    debian_site = stdlib.parent / "python3/dist-packages"
    debian_site.mkdir(parents=True)
    (debian_site / "heroku-runtime-site-packages.pth").write_text(SITE_PACKAGES_PTH, encoding="utf-8")
with zipfile.ZipFile(pip_wheel) as wheel:  # no bin/pip, no setuptools
    wheel.extractall(stdlib / "site-packages")
# CPython bundles a pip wheel in ensurepip, with which heroku/python installs Poetry and Pipenv;
# a distribution's Python may not (Debian moves it to a package of its own).
bundled = stdlib / "ensurepip" / "_bundled"
if not list(bundled.glob("pip-*.whl")):
    bundled.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pip_wheel, bundled)
PY
# heroku/python installs pip with pip, which compiles its bytecode.
"${partial}/bin/python3" -m compileall -q "${partial}/${stdlib}/site-packages/pip"

# What heroku/python's runtimes do, checked on the copy: site-packages on sys.path, pip installs there.
site="$(cd "${partial}/${stdlib}/site-packages" && pwd)"
if ! "${partial}/bin/python3" - "${site}" <<'PY'; then
import sys
import sysconfig

site = sys.argv[1]
purelib = sysconfig.get_paths()["purelib"]
if site not in sys.path or purelib != site or any("dist-packages" in entry for entry in sys.path):
    sys.exit(f"site-packages {site} is not on sys.path {sys.path} (or dist-packages is), "
             f"or is not the install scheme's purelib {purelib}")
import pip  # noqa: F401
PY
	echo "python-runtime.sh: the runtime copied from ${python} (prefix ${prefix}) does not use lib/python${version}/site-packages" >&2
	exit 1
fi
rm -rf "${dest}"
mv "${partial}" "${dest}"
