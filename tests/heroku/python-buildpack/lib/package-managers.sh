#!/usr/bin/env bash
# shellcheck shell=bash disable=SC2154 # python_home, python_major_version, tool_version, HERE, PROFILE: bin/compile's
# Sourced by bin/compile: uv, Poetry and Pipenv as heroku/python v351 installs them and runs them on
# a lock file (its lib/uv.sh, lib/poetry.sh, lib/pipenv.sh), with what slugslim can see of it: the
# same commands, flags and environment, the same places (uv and Poetry in the build cache, Pipenv in
# .heroku/python, so in the slug), the same build-log lines, a cached tool reused. The versions are
# requirements/<tool>.txt, as in heroku/python. Where it differs, and why:
#   - the tools come from the wheels in $EMULATED_PACKAGE_MANAGER_WHEELS, installed with no index
#     (heroku/python downloads uv from its CDN and pip-installs Poetry and Pipenv from PyPI): tests
#     reach no registry during a build;
#   - the tools run with HOME at a directory that is removed when compile ends, standing in for a
#     build's HOME (/app, empty, discarded), so that nothing of this machine's configuration or
#     caches (~/.config/uv, ~/.cache/pypoetry, ...) is read or written.

# The version pinned in requirements/<tool>.txt (tool==X.Y.Z).
function package_manager::version() {
	local requirement
	requirement="$(cat "${HERE}/requirements/${1}.txt")"
	echo "${requirement#"${1}=="}"
}

function package_manager::wheels() {
	echo "${EMULATED_PACKAGE_MANAGER_WHEELS:?this emulation installs uv, Poetry and Pipenv from the wheels in \$EMULATED_PACKAGE_MANAGER_WHEELS}"
}

# A throwaway HOME for the tools, made once per compile.
function package_manager::home() {
	if [[ -z "${TOOL_HOME:-}" ]]; then
		TOOL_HOME="$(mktemp -d "${TMPDIR:-/tmp}/emulated-build-home.XXXXXX")"
		# shellcheck disable=SC2064 # The path is fixed now, on purpose.
		trap "rm -rf '${TOOL_HOME}'" EXIT
	fi
}

# `python -m venv --without-pip VENV`, then TOOL==VERSION installed into it with the pip wheel that
# the Python runtime bundles in its stdlib (ensurepip), isolated from any pip configuration.
function package_manager::venv_install() {
	local venv="${1}" tool="${2}" version="${3}"
	local bundled_pip
	bundled_pip="$(compgen -G "${python_home}/lib/python${python_major_version}/ensurepip/_bundled/pip-*.whl" | tail --lines=1)" \
		|| fail <<<"Internal Error: the Python runtime bundles no pip wheel in ensurepip/_bundled."
	python -m venv --without-pip "${venv}"
	if ! "${venv}/bin/python" "${bundled_pip}/pip" install --disable-pip-version-check --isolated --no-cache-dir \
		--no-input --quiet --no-index --find-links "$(package_manager::wheels)" "${tool}==${version}" |& indent; then
		fail <<<"Error: Unable to install ${tool}."
	fi
}

# Write the tool's environment to this buildpack's export file (read by later buildpacks) and export it here.
function package_manager::export() {
	local line
	for line in "$@"; do
		echo "export ${line}" >>"${HERE}/export"
		eval "export ${line}"
	done
}

function uv::install() {
	local uv_dir="${CACHE_DIR}/.heroku/python-uv"
	if [[ -f "${uv_dir}/uv" ]]; then
		step "Using cached uv ${tool_version}"
	else
		step "Installing uv ${tool_version}"
		mkdir -p "${uv_dir}"
		# What heroku/python's download holds: the uv and uvx binaries, here from the uv wheel.
		python - "$(package_manager::wheels)" "${tool_version}" "${uv_dir}" <<-'PY'
			import os, sys, zipfile
			from pathlib import Path
			wheels, version, dest = sys.argv[1:]
			wheel = next(Path(wheels).glob(f"uv-{version}-*.whl"))
			with zipfile.ZipFile(wheel) as archive:
			    for name in archive.namelist():
			        if ".data/scripts/" in name:
			            target = Path(dest, name.rsplit("/", 1)[1])
			            target.write_bytes(archive.read(name))
			            target.chmod(0o755)
		PY
	fi
	package_manager::export "PATH=\"${uv_dir}:\${PATH}\"" "UV_PROJECT_ENVIRONMENT=\"${python_home}\"" \
		'UV_NO_MANAGED_PYTHON="1"' 'UV_PYTHON_DOWNLOADS="never"' 'UV_LINK_MODE="hardlink"'
}

function uv::install_dependencies() {
	local command=(uv sync --locked --no-default-groups)
	step "Installing dependencies using '${command[*]}'"
	# heroku/python puts uv's cache in /tmp/uv-cache when the build is under /tmp; this HOME stands for both.
	if ! HOME="${TOOL_HOME}" UV_CACHE_DIR="${TOOL_HOME}/uv-cache" "${command[@]}" --color always --compile-bytecode \
		--no-progress |& indent; then
		fail <<<"Error: Unable to install dependencies using uv."
	fi
}

# TOOL in a venv of its own at ROOT/venv, ROOT/bin/TOOL a link to its script (so that the rest of the
# venv's bin/ stays off PATH), unless that link resolves: then the cached one is used.
function package_manager::venv_tool() {
	local root="${1}" tool="${2}" name="${3}"
	if [[ -e "${root}/bin/${tool}" ]]; then
		step "Using cached ${name} ${tool_version}"
		return 0
	fi
	step "Installing ${name} ${tool_version}"
	rm -rf "${root}"
	mkdir -p "${root}/bin"
	HOME="${TOOL_HOME}" package_manager::venv_install "${root}/venv" "${tool}" "${tool_version}"
	ln --symbolic --no-target-directory "${root}/venv/bin/${tool}" "${root}/bin/${tool}"
}

function poetry::install() {
	local poetry_root="${CACHE_DIR}/.heroku/python-poetry"
	package_manager::venv_tool "${poetry_root}" poetry Poetry
	package_manager::export "PATH=\"${poetry_root}/bin:\${PATH}\"" 'POETRY_VIRTUALENVS_CREATE="false"' \
		'POETRY_VIRTUALENVS_USE_POETRY_PYTHON="true"'
}

function poetry::install_dependencies() {
	local command=(poetry sync --only main)
	step "Installing dependencies using '${command[*]}'"
	if ! HOME="${TOOL_HOME}" "${command[@]}" --compile --no-ansi --no-interaction \
		|& sed --unbuffered --expression '/Skipping virtualenv creation/d' | indent; then
		fail <<<"Error: Unable to install dependencies using Poetry."
	fi
}

function pipenv::install() {
	# In .heroku/python, through its /app path: apps may run `pipenv` on the dyno.
	local pipenv_root="${python_home}/pipenv"
	package_manager::venv_tool "${pipenv_root}" pipenv Pipenv
	local settings=("PATH=\"${pipenv_root}/bin:\${PATH}\"" 'PIPENV_SYSTEM="1"' 'PIPENV_VERBOSITY="-1"'
		"VIRTUAL_ENV=\"${python_home}\"")
	package_manager::export "${settings[@]}"
	printf 'export %s\n' "${settings[@]}" >>"${PROFILE}"
}

function pipenv::install_dependencies() {
	local command=(pipenv install --deploy)
	step "Installing dependencies using '${command[*]}'"
	if ! HOME="${TOOL_HOME}" PIPENV_NOSPIN=1 PIP_SRC="${python_home}/src" "${command[@]}" |& indent; then
		fail <<<"Error: Unable to install dependencies using Pipenv."
	fi
}
