#!/usr/bin/env bash
# The body of the bin/post_compile hook that bin/compile installs in the app.
# heroku/python executes the hook after installing every package, with cwd BUILD_DIR and
# BUILD_DIR, CACHE_DIR, ENV_DIR and the app's config vars exported.
# Usage: post_compile.sh --python SYSTEM_PYTHON --tools TOOLS_DIR --buildpack BUILDPACK_DIR

set -euo pipefail

while [[ $# -gt 0 ]]; do
	case "${1}" in
		--python) python="${2}" ;;
		--tools) tools_dir="${2}" ;;
		--buildpack) BUILDPACK_DIR="${2}" ;;
		*) echo "post_compile.sh: unknown argument ${1}" >&2 && exit 2 ;;
	esac
	shift 2
done

source "${BUILDPACK_DIR}/lib/output.sh"
source "${BUILDPACK_DIR}/lib/bootstrap.sh"

if [[ "${BUILDPACK_XTRACE:-0}" == "1" ]]; then
	set -o xtrace
fi

build_dir="${BUILD_DIR:-${PWD}}"
bootstrap::run "${python:?}" "${tools_dir:?}" finish --hook "${build_dir}" "${CACHE_DIR:-}" "${ENV_DIR:-}"
