#!/usr/bin/env bash
# slugslim's own Python runs on the stack's system python3 (3.10 to 3.14), never in the app's
# site-packages. Its few dependencies (pyyaml, packaging, pip-tools) come from the hashed
# lib/tools.lock and are installed into CACHE_DIR, keyed by lock hash and Python version, so
# the next build reuses them. heroku-24-build's python3 has no pip: there we run pip's own
# zipapp, pinned by version and sha256. Failures are warnings: without its tools, bin/compile
# skips slugslim and the app builds as usual.

set -euo pipefail

# pip's zipapp from PyPA's bootstrap site. Bump the version and the sha256 together.
BOOTSTRAP_PIP_VERSION="25.0.1"
BOOTSTRAP_PIP_SHA256="0a7353fc4c345a9589c1cff7b59eb1868079d3de5c2663846bcb4290a69e3b41"
BOOTSTRAP_PIP_URL="https://bootstrap.pypa.io/pip/zipapp/pip-${BOOTSTRAP_PIP_VERSION}.pyz"
BOOTSTRAP_PIP_COMMAND=()

# Print the absolute path of the system python3, or fail the build if there is none >= 3.10.
function bootstrap::system_python() {
	local python
	if ! python="$(command -v python3)"; then
		output::warning <<-EOF
			Warning: No python3 found on this stack.

			slugslim runs on the stack image's own python3, which every Heroku
			stack (heroku-22, heroku-24, heroku-26) provides. This build runs on
			'${STACK:-an unknown stack}', which has none.

			Build on heroku-24 or heroku-26 (heroku stack:set heroku-24), or set
			the SLUGSLIM_DISABLE config var to 1 to skip slugslim.
		EOF
		return 1
	fi
	if ! "${python}" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
		output::warning <<-EOF
			Warning: The stack's python3 is too old for slugslim.

			slugslim needs Python 3.10 or newer to run (heroku-22 and later have it),
			but ${python} is $("${python}" --version 2>&1).

			Build on heroku-24 or heroku-26, or set the SLUGSLIM_DISABLE config var
			to 1 to skip slugslim.
		EOF
		return 1
	fi
	# Resolve launchers and shims (pyenv's depends on the cwd) to the interpreter itself, so the
	# hook later runs the very same Python, whatever directory it starts in.
	"${python}" -c 'import sys; print(sys.executable, end="")'
}

# Set BOOTSTRAP_PIP_COMMAND to a command that runs pip for python $1 (CACHE_DIR $2).
function bootstrap::pip_command() {
	local python="${1}" cache_dir="${2}"
	if [[ -n "${SLUGSLIM_PIP:-}" ]]; then
		# A local pip wheel or zipapp, for offline builds and tests. A wheel is importable
		# as a zip, and pip documents running it as "python pip.whl/pip".
		local source="${SLUGSLIM_PIP}"
		[[ "${source}" == *.whl ]] && source="${source}/pip"
		BOOTSTRAP_PIP_COMMAND=("${python}" "${source}")
		return 0
	fi
	if "${python}" -m pip --version >/dev/null 2>&1; then
		BOOTSTRAP_PIP_COMMAND=("${python}" -m pip)
		return 0
	fi
	local zipapp="${cache_dir}/slugslim/pip-${BOOTSTRAP_PIP_VERSION}.pyz"
	if ! bootstrap::verify_sha256 "${zipapp}" "${BOOTSTRAP_PIP_SHA256}"; then
		output::detail "This stack's python3 has no pip: downloading pip ${BOOTSTRAP_PIP_VERSION} (zipapp)" >&2
		local partial="${zipapp}.partial"
		if ! curl --fail --silent --show-error --location --retry 3 --connect-timeout 10 --max-time 120 \
			--output "${partial}" "${SLUGSLIM_PIP_ZIPAPP_URL:-${BOOTSTRAP_PIP_URL}}"; then
			rm -f "${partial}"
			output::warning <<-EOF
				Warning: Could not download pip.

				This stack's python3 has no pip, so slugslim downloads pip's official
				zipapp (pip ${BOOTSTRAP_PIP_VERSION}) to install its own build tools, and
				that download failed. This is usually a temporary network problem.

				Retry the build. If it keeps failing, set the SLUGSLIM_DISABLE config var
				to 1 to build without slugslim.
			EOF
			return 1
		fi
		if ! bootstrap::verify_sha256 "${partial}" "${BOOTSTRAP_PIP_SHA256}"; then
			rm -f "${partial}"
			output::warning <<-EOF
				Warning: The downloaded pip did not match its expected checksum.

				slugslim pins pip ${BOOTSTRAP_PIP_VERSION}'s zipapp by its sha256
				(${BOOTSTRAP_PIP_SHA256}), and the file that arrived is different.
				It was not used.

				Retry the build. If it keeps failing, set the SLUGSLIM_DISABLE config var
				to 1 to build without slugslim, and report it to the slugslim project.
			EOF
			return 1
		fi
		mv "${partial}" "${zipapp}"
	fi
	BOOTSTRAP_PIP_COMMAND=("${python}" "${zipapp}")
}

function bootstrap::verify_sha256() {
	local file="${1}" expected="${2}"
	[[ -f "${file}" ]] && [[ "$(sha256sum "${file}" | cut -d ' ' -f 1)" == "${expected}" ]]
}

# Install the tools for python $1 into CACHE_DIR $2 (reused when present); print the directory.
# ENV_DIR $3 may set PIP_INDEX_URL / PIP_EXTRA_INDEX_URL, which pip then uses.
function bootstrap::tools() {
	local python="${1}" cache_dir="${2}" env_dir="${3}"
	local lock="${BUILDPACK_DIR}/lib/tools.lock"
	local lock_hash python_version
	lock_hash="$(sha256sum "${lock}" | cut -c 1-16)"
	python_version="$("${python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
	local tools_dir="${cache_dir}/slugslim/tools-${lock_hash}-py${python_version}"

	if [[ -f "${tools_dir}/.complete" ]]; then
		output::detail "Using cached build tools (Python ${python_version})" >&2
		printf '%s' "${tools_dir}"
		return 0
	fi

	mkdir -p "${cache_dir}/slugslim"
	bootstrap::pip_command "${python}" "${cache_dir}"

	local partial="${tools_dir}.partial"
	rm -rf "${partial}"
	local log_file
	log_file="$(mktemp)"
	output::detail "Installing build tools (pyyaml, packaging, pip-tools) for Python ${python_version}" >&2
	local index_env=()
	local name value
	for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL; do
		value="$(env::get "${env_dir}" "${name}")"
		[[ -n "${value}" ]] && index_env+=("${name}=${value}")
	done
	if ! env "${index_env[@]}" "${BOOTSTRAP_PIP_COMMAND[@]}" install --require-hashes --no-deps --only-binary=:all: \
		--no-input --disable-pip-version-check --no-warn-script-location --quiet \
		--target "${partial}" --requirement "${lock}" >"${log_file}" 2>&1; then
		rm -rf "${partial}"
		output::warning <<-EOF
			Warning: Could not install slugslim's build tools.

			slugslim installs pyyaml, packaging and pip-tools (pinned by hash) into
			the build cache with pip, and pip failed:

			$(tail -n 15 "${log_file}")

			If your app sets PIP_INDEX_URL, check that the index serves these
			packages. Otherwise retry the build; to build without slugslim, set
			the SLUGSLIM_DISABLE config var to 1.
		EOF
		rm -f "${log_file}"
		return 1
	fi
	rm -f "${log_file}"
	touch "${partial}/.complete"
	rm -rf "${tools_dir}"
	mv "${partial}" "${tools_dir}"
	# Tools built from an older lock for this Python are dead weight in the cache.
	find "${cache_dir}/slugslim" -maxdepth 1 -type d -name "tools-*-py${python_version}" \
		! -path "${tools_dir}" -exec rm -rf {} +
	printf '%s' "${tools_dir}"
}

# Run slugslim's Python: bootstrap::run PYTHON TOOLS_DIR COMMAND [ARGS...]
# -s and -B keep user site-packages out and bytecode out of the buildpack; nothing is exported,
# so the app's own processes never see our sys.path.
function bootstrap::run() {
	local python="${1}" tools_dir="${2}"
	shift 2
	env -u PYTHONHOME -u PYTHONPATH "${python}" -s -B "${BUILDPACK_DIR}/lib/launch.py" "${tools_dir}" "$@"
}
