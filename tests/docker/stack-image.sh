#!/usr/bin/env bash
# A stand-in for Heroku's heroku-24-build image, made from Debian's own packages, for
# `make test-docker` and for `make docker-compile IMAGE=slugslim-stack:bookworm` on machines that
# cannot pull heroku/heroku:24-build. It is the fresh Debian 12 image of make test-fresh
# (tests/fresh/image.sh makes it when missing) plus what heroku-24-build has that slugslim and a
# Python build rely on: bash, curl, ca-certificates, python3 without pip, binutils (strip),
# patchelf, zstd, git, tar, gzip, and jq (heroku/python records its build data with it, and fails
# without it); and, as on heroku-24-build, a `heroku` user (uid and gid 1000) that builds run as
# by default.
#
# What it does not reproduce of heroku-24-build:
#   - Ubuntu 24.04: this is Debian 12 (glibc 2.36, not 2.39), so a binary linked on 24.04 (such as
#     heroku/python's own Python runtimes) may not run here; heroku/python picks its runtime by
#     STACK, not by the distribution, so it downloads the ubuntu-24.04 build all the same.
#   - Python 3.12: the system python3 is Debian's 3.11 (also without pip or venv, like 24.04's).
#   - The rest of the build image: compilers, the -dev packages, locales (en_US.UTF-8, which
#     heroku/python sets in LANG), ImageMagick and the like. Only what is listed above.
#
# Needs a running Docker engine and Debian's package registry (apt-get, in a container).
#
# Usage: tests/docker/stack-image.sh [--rebuild]
#   --rebuild  make the image again even if it exists (also SLUGSLIM_STACK_REBUILD=1); the fresh
#              image under it is reused (SLUGSLIM_FRESH_REBUILD=1 makes that one again as well)
# SLUGSLIM_STACK_IMAGE (slugslim-stack:bookworm) names it; SLUGSLIM_FRESH_IMAGE and
# SLUGSLIM_FRESH_MIRROR are as for tests/fresh/run.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO
# shellcheck source=../fresh/image.sh
source "${REPO}/tests/fresh/image.sh"
readonly IMAGE="${SLUGSLIM_STACK_IMAGE:-slugslim-stack:bookworm}"
readonly FRESH_IMAGE="${SLUGSLIM_FRESH_IMAGE:-slugslim-fresh:bookworm}"
readonly PACKAGES=(bash curl ca-certificates python3 binutils patchelf zstd git tar gzip jq)
# heroku-24's own: `useradd heroku --uid 1000 --gid 1000 --shell /bin/bash --create-home`, and
# the build image's USER.
readonly BUILD_USER=heroku
readonly BUILD_UID=1000

rebuild="${SLUGSLIM_STACK_REBUILD:-0}"
# The container apt runs in, removed by the trap.
container=""
# fresh::ensure_image appends to it; read by nothing here but the log.
timings=()

cleanup() {
	if [[ -n "${container}" ]]; then
		docker rm --force "${container}" >/dev/null 2>&1 || true
	fi
	fresh::remove_rootfs
}

# What runs as root in a container of the fresh image before it is committed: the user's name and
# uid, then the packages. Arguments, not --env: docker commit would keep those in the image.
# shellcheck disable=SC2016  # expanded by the container's bash, not here
readonly INSIDE='
set -euo pipefail
user="$1" uid="$2"
shift 2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
groupadd --gid "${uid}" "${user}"
useradd "${user}" --uid "${uid}" --gid "${uid}" --shell /bin/bash --create-home
# As Heroku does at the end of its image build: no package lists or downloads in the image.
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /root/*
# The fact this stand-in exists for: a python3 that has no pip.
if python3 -c "import pip" 2>/dev/null; then
	echo "python3 has pip here, unlike heroku-24-build" >&2
	exit 1
fi
python3 --version
'

main() {
	local arg
	for arg in "$@"; do
		case "${arg}" in
			--rebuild) rebuild=1 ;;
			*) fresh::other_argument "${arg}" ;;
		esac
	done
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	fresh::require_engine "make test-docker" "It builds an app in a Debian 12 stand-in for Heroku's build image."
	# An image made from another package list (an older version of this script) is made again.
	if [[ "${rebuild}" != 1 ]] \
		&& [[ "$(docker image inspect --format '{{index .Config.Labels "slugslim.packages"}}' "${IMAGE}" 2>/dev/null)" == "${PACKAGES[*]}" ]]; then
		log::step "Reusing ${IMAGE} (made $(docker image inspect --format '{{.Created}}' "${IMAGE}" | cut -c1-19); SLUGSLIM_STACK_REBUILD=1 makes it again)"
		return
	fi
	fresh::ensure_image "${FRESH_IMAGE}" "${SLUGSLIM_FRESH_REBUILD:-0}" "${SLUGSLIM_FRESH_MIRROR:-}"

	log::step "Installing ${PACKAGES[*]} in ${FRESH_IMAGE}"
	local previous start
	previous="$(docker image inspect --format '{{.Id}}' "${IMAGE}" 2>/dev/null || true)"
	start="${SECONDS}"
	# --network host: the engine may have no bridge (ours runs with --bridge=none). The host's CA
	# bundle and proxy variables: how this machine reaches Debian's registry. The proxies are given
	# to the command, not with --env, which docker commit would keep in the image.
	local proxy_env=() name
	for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
		if [[ -n "${!name:-}" ]]; then
			proxy_env+=("${name}=${!name}")
		fi
	done
	container="$(docker create \
		--network host \
		--user root \
		--volume "${CA_BUNDLE}:${CA_BUNDLE}:ro" \
		"${FRESH_IMAGE}" env "${proxy_env[@]}" bash -c "${INSIDE}" inside "${BUILD_USER}" "${BUILD_UID}" "${PACKAGES[@]}")"
	local said
	if ! said="$(docker start --attach "${container}" 2>&1)" \
		|| [[ "$(docker inspect --format '{{.State.ExitCode}}' "${container}")" != 0 ]]; then
		tail -n 20 <<<"${said}" | log::error
		echo "Error: installing the stack stand-in's packages failed (above)." | log::error
		exit 1
	fi
	log::detail "${said##*$'\n'} as the system python3, without pip"

	# The build image runs builds as its `heroku` user; HOME is set by each build (/app).
	docker commit \
		--change "USER ${BUILD_USER}" \
		--change 'WORKDIR /' \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' \
		--change "LABEL slugslim.stand-in-for=heroku/heroku:24-build slugslim.from=${FRESH_IMAGE}" \
		--change "LABEL slugslim.packages=\"${PACKAGES[*]}\"" \
		--message "slugslim's heroku-24-build stand-in: ${FRESH_IMAGE} + ${PACKAGES[*]}, user ${BUILD_USER}" \
		"${container}" "${IMAGE}" >/dev/null
	log::detail "${IMAGE} made in $((SECONDS - start)) s ($(docker image inspect --format '{{.Size}}' "${IMAGE}" | numfmt --to=si)B)"
	if [[ -n "${previous}" && "${previous}" != "$(docker image inspect --format '{{.Id}}' "${IMAGE}")" ]]; then
		docker image rm "${previous}" >/dev/null 2>&1 || true
	fi
}

main "$@"
