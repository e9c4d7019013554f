#!/usr/bin/env bash
# make test-fresh: the README's promise ("on a Debian or Ubuntu machine with python3 and make,
# `make test` and `make demo` pass") tried where nothing has run before. A Debian 12 image made
# from Debian's own packages gets a clone of the committed HEAD and nothing else from this machine
# (no caches, no pip configuration, no /app); inside, `.ci/run` and then `make demo` run as a
# newcomer would run them.
#
# Needs a running Docker engine, root (or sudo) for debootstrap, and Debian's and PyPI's registries.
#
# Usage: tests/fresh/run.sh [--rebuild] [--keep]
#   --rebuild  make the image again even if it exists (also SLUGSLIM_FRESH_REBUILD=1)
#   --keep     keep the stopped container for a look inside (also SLUGSLIM_FRESH_KEEP=1)
# SLUGSLIM_FRESH_IMAGE (slugslim-fresh:bookworm), SLUGSLIM_FRESH_MIRROR (debootstrap's own default
# Debian mirror) and SLUGSLIM_FRESH_LOG (.cache/test-fresh.log) override the defaults.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO
# The image itself (debootstrap, docker import), CA_BUNDLE, the engine check and the log helpers.
# shellcheck source=image.sh
source "${REPO}/tests/fresh/image.sh"
readonly IMAGE="${SLUGSLIM_FRESH_IMAGE:-slugslim-fresh:bookworm}"
# Empty: debootstrap's default mirror, the one Debian's own tools use.
readonly MIRROR="${SLUGSLIM_FRESH_MIRROR:-}"
readonly LOG="${SLUGSLIM_FRESH_LOG:-${REPO}/.cache/test-fresh.log}"
# Where the clone lands inside: root's home, as on a machine someone just logged into.
readonly WORKDIR=/root/slugslim

rebuild="${SLUGSLIM_FRESH_REBUILD:-0}"
keep="${SLUGSLIM_FRESH_KEEP:-0}"
# What the trap cleans up; set as each thing comes to exist (and image.sh's fresh_rootfs).
clone_dir=""
container=""
# Wall times of the parts run on this side, for the closing summary (the container's own parts
# come from marker lines in its log).
timings=()
container_seconds=""
# The container's exit status: 0 when .ci/run and make demo both passed.
container_rc=""

cleanup() {
	if [[ -n "${container}" ]]; then
		if [[ "${keep}" == 1 ]]; then
			log::detail "kept container ${container} (docker rm ${container} when done)"
		else
			docker rm --force "${container}" >/dev/null 2>&1 || true
		fi
	fi
	if [[ -n "${clone_dir}" ]]; then
		rm -rf "${clone_dir}"
	fi
	fresh::remove_rootfs
}

parse_args() {
	local arg
	for arg in "$@"; do
		case "${arg}" in
			--rebuild) rebuild=1 ;;
			--keep) keep=1 ;;
			*) fresh::other_argument "${arg}" ;;
		esac
	done
}

# A clone, not the working tree: uncommitted files, .venv, .cache and build leftovers stay out,
# so the run shows what a newcomer cloning this commit would get.
clone_head() {
	local commit
	commit="$(git -C "${REPO}" rev-parse HEAD)"
	clone_dir="$(mktemp -d "${TMPDIR:-/tmp}/slugslim-fresh-clone.XXXXXX")"
	git clone --quiet --no-hardlinks "${REPO}" "${clone_dir}/slugslim"
	# The clone checks out the source's current branch; pin the exact commit in case HEAD is detached.
	git -C "${clone_dir}/slugslim" checkout --quiet --detach "${commit}"
	log::step "Clone of ${commit:0:12} ($(git -C "${REPO}" log -1 --format=%s | cut -c1-70))"
	if [[ -n "$(git -C "${REPO}" status --porcelain --untracked-files=no)" ]]; then
		log::detail "uncommitted changes in ${REPO} are not in it: commit them to test them here"
	fi
}

# What runs inside the container: .ci/run, then make demo, each timed; both run even if the first
# fails so that one run reports both. The marker lines are what the summary on this side reads.
# shellcheck disable=SC2016  # expanded by the container's bash, not here
readonly INSIDE='
cd "$1"
status=0
part() {
	local name="$1" start="${SECONDS}" rc=0
	shift
	echo "-----> [fresh] ${name}"
	"$@" || rc=$?
	echo "slugslim-fresh-part: ${name} | exit ${rc} | $((SECONDS - start)) s"
	if [[ "${rc}" -ne 0 ]]; then
		status=1
	fi
}
part ".ci/run" bash .ci/run
part "make demo" make demo
exit "${status}"
'

run_container() {
	log::step "Running .ci/run and make demo in a fresh ${IMAGE} container (log: ${LOG})"
	# --network host: the registries are reached as the host reaches them, and the engine needs no
	#   bridge or iptables rules (ours runs with --bridge=none).
	# SYS_ADMIN and no seccomp: the emulated build makes a private /app in mount and user
	#   namespaces (bubblewrap); --privileged would also do but is more than that and is refused on
	#   some engines. AppArmor, where the host has it, would refuse those mounts too.
	# --tmpfs /tmp:exec: the tests' scratch trees are many small files, and tmpfs keeps them fast
	#   and gone with the container; exec because built wheels and scripts run from there.
	# Environment: only what is given here; docker passes nothing of this shell's. Proxy variables
	#   pass through when set, since they are how this machine reaches the network; pip's own
	#   settings (PIP_*, pip.conf, find-links) deliberately do not.
	local -a security=(--cap-add SYS_ADMIN --security-opt seccomp=unconfined)
	if [[ -e /sys/kernel/security/apparmor ]]; then
		security+=(--security-opt apparmor=unconfined)
	fi
	container="$(docker create \
		--label slugslim-fresh \
		--init \
		--network host \
		"${security[@]}" \
		--tmpfs /tmp:exec \
		--volume "${CA_BUNDLE}:${CA_BUNDLE}:ro" \
		--env HOME=/root \
		--env LANG=C.UTF-8 \
		--env CI=true \
		--env SLUGSLIM_IN_FRESH_CONTAINER=1 \
		--env PIP_CERT="${CA_BUNDLE}" \
		--env http_proxy --env https_proxy --env no_proxy \
		--env HTTP_PROXY --env HTTPS_PROXY --env NO_PROXY \
		--workdir /root \
		"${IMAGE}" bash -uo pipefail -c "${INSIDE}" inside "${WORKDIR}")"
	# docker cp writes as root inside, so the clone is the container's own to write in, and git
	# there never sees another user's repository.
	docker cp "${clone_dir}/slugslim" "${container}:${WORKDIR}"

	mkdir -p "$(dirname "${LOG}")"
	local start
	start="${SECONDS}"
	# The status comes from docker inspect below: `docker start --attach` passes on the container's
	# only in newer clients.
	docker start --attach "${container}" 2>&1 | tee "${LOG}" || true
	container_rc="$(docker inspect --format '{{.State.ExitCode}}' "${container}")"
	container_seconds="$((SECONDS - start))"
}

summary() {
	local rc="$1" total="$2" line
	echo
	log::step "test-fresh summary (full log: ${LOG})"
	for line in "${timings[@]}"; do
		log::detail "${line}"
	done
	if [[ -n "${container_seconds}" ]]; then
		log::detail "container: ${container_seconds} s, of which"
		grep '^slugslim-fresh-part: ' "${LOG}" | sed 's/^slugslim-fresh-part: /         /' || true
	fi
	log::detail "test-fresh in all: ${total} s"
	log::detail "pytest:"
	# pytest's closing lines ("==== 3 failed, 280 passed in 190.2s ===="), one per pytest run, and
	# the one line of a session stopped before any test ran ("Exit: ...").
	grep -E '^(=+ .*\b(passed|failed|errors?|skipped|no tests ran)\b.* in [0-9.]+s|Exit: )' "${LOG}" |
		sed 's/^/         /' || log::detail "  (no pytest summary line in the log)"
	if [[ "${rc}" -eq 0 ]]; then
		log::detail "PASSED: .ci/run and make demo on a fresh Debian 12"
	else
		echo "FAILED: see the parts above and ${LOG}" | log::error
	fi
}

main() {
	parse_args "$@"
	trap cleanup EXIT
	# A signal ends the script through exit, so the EXIT trap still removes the container.
	trap 'exit 130' INT
	trap 'exit 143' TERM
	fresh::require_engine "make test-fresh" "It runs the suite in a clean Debian 12 container."
	if [[ ! -r "${CA_BUNDLE}" ]]; then
		echo "Error: no CA bundle at ${CA_BUNDLE} to give the container (Debian: ca-certificates)." | log::error
		exit 1
	fi
	local start
	start="${SECONDS}"
	fresh::ensure_image "${IMAGE}" "${rebuild}" "${MIRROR}"
	clone_head
	run_container
	summary "${container_rc}" "$((SECONDS - start))"
	[[ "${container_rc}" -eq 0 ]]
}

main "$@"
