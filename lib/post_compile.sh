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

# Without its tools (something removed them from the cache since bin/compile), slugslim steps
# aside: the app's own hook goes back in its place and runs, as if slugslim were not there.
if [[ ! -x "${python:?}" || ! -f "${tools_dir:?}/.complete" ]]; then
	output::warning <<-EOF
		Warning: slugslim is skipped for the rest of this build.

		Its build tools, set up earlier in this build, are gone (${tools_dir}),
		so the slug is not slimmed. Your own bin/post_compile, if you have one,
		runs as usual.
	EOF
	stash="${build_dir}/.slugslim/app-post_compile"
	hook="${build_dir}/bin/post_compile"
	rm -f "${hook}" "${build_dir}/.slugslim/state.json"
	if [[ -e "${stash}" || -L "${stash}" ]]; then
		mv "${stash}" "${hook}"
		rmdir --ignore-fail-on-non-empty "${build_dir}/.slugslim"
		# heroku/python makes the hook executable to run it; the slug keeps the mode it was committed with.
		mode="$(stat -c %a "${hook}")"
		chmod +x "${hook}"
		status=0
		(cd "${build_dir}" && "./bin/post_compile") || status=$?
		chmod "${mode}" "${hook}"
		exit "${status}"
	fi
	rmdir --ignore-fail-on-non-empty "${build_dir}/bin" "${build_dir}/.slugslim" 2>/dev/null || true
	exit 0
fi
bootstrap::run "${python:?}" "${tools_dir:?}" finish --hook "${build_dir}" "${CACHE_DIR:-}" "${ENV_DIR:-}"
