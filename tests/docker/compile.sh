#!/usr/bin/env bash
# make docker-compile: a Heroku build of an app on this machine, in a stack's build image, the way
# heroku-buildpack-python's own `make run` runs one: slugslim's bin/detect and bin/compile, then
# heroku/python's, then the release and the slug (tests/docker/compile-inside.sh is what runs in
# the container). It prints the build log and the slug's size, and exits non-zero when the build
# fails.
#
# Settings, from the environment (make passes its variables of the same names):
#   APP      the app's directory (tests/demo_app); its top-level .git stays out, as in a push
#   STACK    heroku-24 (or heroku-22, heroku-26): STACK in the build, and the default image
#   IMAGE    the build image: heroku/heroku:<N>-build for STACK heroku-<N> (pulled by docker), or
#            a stand-in such as tests/docker/stack-image.sh's slugslim-stack:bookworm
#   HEROKU_PYTHON_BUILDPACK  heroku/python from this machine: a checkout (its files as they are)
#            or a git directory (its HEAD). Empty: cloned from GitHub inside the container.
#   OUT      a directory to keep the build in: build/ (BUILD_DIR), cache/ (CACHE_DIR), log.txt and
#            slug.tgz. The same OUT again is a cached rebuild, as a second `git push` is. Empty:
#            nothing is kept but what the log shows.
#   DOCKER_ARGS  more `docker create` options, split on whitespace: `--network host` on an
#            engine without a bridge (dockerd --bridge=none), -e and -v for a build's environment.
#            Behind a TLS-intercepting proxy, mount its CA bundle and set both PIP_CERT and
#            REQUESTS_CA_BUNDLE to it: heroku/python installs pip with `pip --isolated`, which
#            ignores PIP_CERT. A stack image whose python3 has no pip (heroku-24's) makes slugslim
#            download pip's zipapp, unless SLUGSLIM_PIP names a pip wheel mounted in.
# The mounts (the repository, APP, HEROKU_PYTHON_BUILDPACK, OUT/cache) must be readable by the
# image's build user (heroku, uid 1000, on heroku-24). Needs a Docker engine; with the defaults,
# also Docker Hub and GitHub.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO
# Log helpers and the engine check, shared with make test-fresh.
# shellcheck source=../fresh/image.sh
source "${REPO}/tests/fresh/image.sh"

readonly APP="${APP:-tests/demo_app}"
readonly STACK="${STACK:-heroku-24}"
readonly IMAGE="${IMAGE:-heroku/heroku:${STACK#heroku-}-build}"
readonly HEROKU_PYTHON_BUILDPACK="${HEROKU_PYTHON_BUILDPACK:-}"
readonly OUT="${OUT:-}"

# What the trap removes; set as each comes to exist.
container=""
archive_dir=""
scratch_log=""
# The host directory mounted as heroku/python's files; empty: cloned in the container.
python_src=""
# The build's log: OUT/log.txt, else a temporary file.
log=""

cleanup() {
	if [[ -n "${container}" ]]; then
		docker rm --force "${container}" >/dev/null 2>&1 || true
	fi
	if [[ -n "${archive_dir}" ]]; then
		rm -rf "${archive_dir}"
	fi
	if [[ -n "${scratch_log}" ]]; then
		rm -f "${scratch_log}"
	fi
}

# "$@"'s output on the terminal and in the log: the lines this side adds to the build's own.
show() {
	"$@" | tee -a "${log}"
}

usage_error() {
	echo "Error: $*" | log::error
	exit 2
}

# Set python_src from HEROKU_PYTHON_BUILDPACK.
python_buildpack_source() {
	local given="${HEROKU_PYTHON_BUILDPACK}"
	if [[ -z "${given}" ]]; then
		return 0
	fi
	if [[ -f "${given}/bin/compile" ]]; then
		python_src="$(cd "${given}" && pwd)"
		return 0
	fi
	# A git directory (bare, or a mirror): its HEAD, as GitHub would serve it.
	local head
	if ! head="$(git --git-dir="${given}" rev-parse --verify --quiet HEAD 2>/dev/null)"; then
		usage_error "HEROKU_PYTHON_BUILDPACK=${given} is neither a checkout of heroku/heroku-buildpack-python (no bin/compile) nor a git directory of it."
	fi
	archive_dir="$(mktemp -d "${TMPDIR:-/tmp}/slugslim-python-buildpack.XXXXXX")"
	# mktemp's 0700 would keep out the image's build user (heroku, uid 1000, on heroku-24).
	chmod 755 "${archive_dir}"
	git --git-dir="${given}" archive HEAD | tar -x -C "${archive_dir}"
	if [[ ! -f "${archive_dir}/bin/compile" ]]; then
		usage_error "HEROKU_PYTHON_BUILDPACK=${given}: its HEAD (${head:0:12}) has no bin/compile."
	fi
	python_src="${archive_dir}"
}

main() {
	[[ -d "${APP}" ]] || usage_error "APP=${APP} is not a directory"
	[[ "${STACK}" =~ ^heroku-[0-9]+$ ]] || usage_error "STACK=${STACK} is not heroku-<N> (heroku-22, heroku-24, heroku-26)"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	fresh::require_engine "make docker-compile" "It builds the app in a Heroku stack's build image."

	local app out=""
	app="$(cd "${APP}" && pwd)"
	python_buildpack_source
	if [[ -n "${OUT}" ]]; then
		mkdir -p "${OUT}"
		out="$(cd "${OUT}" && pwd)"
		log="${out}/log.txt"
	else
		scratch_log="$(mktemp)"
		log="${scratch_log}"
	fi
	: >"${log}"

	# As heroku-buildpack-python's `make run`: /app a tmpfs of the container's own (exec, as on a
	# dyno), HOME=/app, STACK, the image's default user. The inputs are read-only mounts; the
	# outputs are copied out of the stopped container below, so that they belong to whoever runs
	# this, whatever user the image builds as. So /tmp is the container's own disk: a tmpfs would
	# be gone by then.
	local args=(
		--platform linux/amd64
		--tmpfs /app:exec
		--env HOME=/app
		--env STACK="${STACK}"
		--workdir /tmp
		--volume "${REPO}:/buildpack:ro"
		--volume "${app}:/src:ro"
	)
	if [[ -n "${python_src}" ]]; then
		args+=(--volume "${python_src}:/python-buildpack-src:ro")
	fi
	local cached=0
	if [[ -n "${out}" && -d "${out}/cache" ]]; then
		args+=(--volume "${out}/cache:/cache-in:ro")
		cached=1
	fi
	local extra=()
	read -r -a extra <<<"${DOCKER_ARGS:-}"

	show log::step "docker-compile: ${APP} on ${STACK} in ${IMAGE}"
	show log::detail "heroku/python: ${HEROKU_PYTHON_BUILDPACK:-cloned from GitHub in the container}"
	if [[ ${#extra[@]} -gt 0 ]]; then
		show log::detail "DOCKER_ARGS: ${extra[*]}"
	fi
	if [[ -n "${out}" ]]; then
		show log::detail "OUT=${OUT}$([[ "${cached}" == 1 ]] && echo ": a cached rebuild with its cache/")"
	fi
	if ! container="$(docker create "${args[@]}" "${extra[@]}" "${IMAGE}" bash /buildpack/tests/docker/compile-inside.sh)"; then
		container=""
		log::error 2>&1 <<-EOF | tee -a "${log}" >&2
			Error: docker could not create the build container from ${IMAGE} (see above).

			Where Docker Hub cannot be reached, tests/docker/stack-image.sh makes a Debian 12
			stand-in for heroku-24-build: then IMAGE=slugslim-stack:bookworm.
		EOF
		exit 1
	fi
	local start status
	start="${SECONDS}"
	# The status comes from docker inspect: `docker start --attach` passes on the container's
	# only in newer clients.
	docker start --attach "${container}" 2>&1 | tee -a "${log}" || true
	status="$(docker inspect --format '{{.State.ExitCode}}' "${container}")"
	local seconds="$((SECONDS - start))"

	if [[ -n "${out}" ]]; then
		keep_outputs "${out}" "${status}"
	fi
	if [[ "${status}" -ne 0 ]]; then
		echo "Error: the build failed (exit ${status}) after ${seconds} s; the log is above${out:+ and in ${out}/log.txt}." |
			log::error 2>&1 | tee -a "${log}" >&2
		exit "${status}"
	fi
	local bytes
	if [[ -n "${out}" ]]; then
		bytes="$(stat -c %s "${out}/slug.tgz")"
	else
		bytes="$(docker cp "${container}:/tmp/slug.tgz" - | tar -x -O | wc -c)"
	fi
	show log::step "Built in ${seconds} s; slug size: $(awk '{ printf "%.1f MB", $1 / 1e6 }' <<<"${bytes}") (${bytes} bytes)"
}

# Copy BUILD_DIR, the slug and (after a build that passed) CACHE_DIR out of the stopped container
# into $1. A failed build keeps the previous cache, as Heroku does.
keep_outputs() {
	local out="$1" status="$2"
	rm -rf "${out}/build" "${out}/slug.tgz"
	docker cp "${container}:/tmp/build_1" "${out}/build" 2>/dev/null || true
	if [[ "${status}" -eq 0 ]]; then
		docker cp "${container}:/tmp/slug.tgz" "${out}/slug.tgz"
		rm -rf "${out}/cache.new"
		docker cp "${container}:/tmp/cache" "${out}/cache.new"
		rm -rf "${out}/cache"
		mv "${out}/cache.new" "${out}/cache"
		show log::detail "Kept in ${OUT}: build/, cache/, log.txt, slug.tgz"
	else
		show log::detail "Kept in ${OUT}: build/ and log.txt (cache/ is the previous build's)"
	fi
}

main "$@"
