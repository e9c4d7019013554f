#!/usr/bin/env bash
# Usage: python-runtime.sh PYTHON DEST
#
# Make DEST a Python runtime laid out like the ones heroku/python downloads: a CPython prefix
# (bin/python3.X, lib/libpython3.X.so, lib/python3.X with its stdlib) with pip in site-packages,
# copied from the interpreter PYTHON, so that it runs from wherever it is put: no pyvenv.cfg,
# nothing that points back at PYTHON's own prefix for the stdlib. Slimmed as the real archives
# are (no stdlib tests, no idle or tkinter, no static library).
# The emulated heroku/python copies DEST into BUILD_DIR/.heroku/python; the tests make DEST once.

set -euo pipefail

python="${1:?Usage: python-runtime.sh PYTHON DEST}"
dest="${2:?Usage: python-runtime.sh PYTHON DEST}"

read -r prefix version pip_dir < <("${python}" - <<'PY'
import os, sys
try:
    import pip
    pip_dir = os.path.dirname(pip.__file__)
except ImportError:
    pip_dir = "-"
print(sys.base_prefix, "%d.%d" % sys.version_info[:2], pip_dir)
PY
)
stdlib="lib/python${version}"
partial="${dest}.partial"
rm -rf "${partial}"
mkdir -p "${partial}/bin" "${partial}/lib" "${partial}/include"
cp -a "${prefix}/bin/python${version}" "${partial}/bin/"
ln -s "python${version}" "${partial}/bin/python3"
ln -s python3 "${partial}/bin/python"
cp -a "${prefix}"/lib/libpython"${version}"*.so* "${partial}/lib/" 2>/dev/null || true
tar -C "${prefix}" --create \
	--exclude="${stdlib}/site-packages" --exclude="${stdlib}/test" --exclude="${stdlib}/idlelib" \
	--exclude="${stdlib}/tkinter" --exclude="${stdlib}/turtledemo" --exclude="${stdlib}/config-*/*.a" \
	--exclude='*.opt-[12].pyc' "${stdlib}" | tar -C "${partial}" --extract
mkdir -p "${partial}/${stdlib}/site-packages"
[[ -d "${prefix}/include/python${version}" ]] && cp -a "${prefix}/include/python${version}" "${partial}/include/"
# The real runtimes are linked with --strip-all.
find "${partial}/lib" -name '*.so*' -type f -exec strip --strip-unneeded {} + 2>/dev/null || true

# pip, as heroku/python installs it: the one PYTHON has (faster than ensurepip), else ensurepip.
site="${partial}/${stdlib}/site-packages"
if [[ "${pip_dir}" != "-" ]]; then
	cp -a "${pip_dir}" "${site}/pip"
	cp -a "$(dirname "${pip_dir}")"/pip-*.dist-info "${site}/"
else
	"${partial}/bin/python3" -m ensurepip --default-pip >/dev/null
fi
rm -rf "${dest}"
mv "${partial}" "${dest}"
