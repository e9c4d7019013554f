#!/usr/bin/env bash
# Sourced, not run: the clean Debian 12 image (debootstrap minbase plus git, ca-certificates and
# python3, then `docker import`) and the Docker checks shared by the scripts that use it:
# tests/fresh/run.sh (make test-fresh) runs the suite in it, and tests/docker/stack-image.sh
# (make test-docker) builds the Heroku stack stand-in from it.
#
# Callers set `set -euo pipefail` and remove ${fresh_rootfs} (fresh::remove_rootfs) in their EXIT
# trap: an interrupted debootstrap leaves a root-owned tree behind otherwise. Each part that
# fresh::ensure_image runs appends a line to the caller's `timings` array.

# Debian's bundle. The registries may be reached through a TLS proxy whose CA only the host's copy
# of this file trusts, so the host's is mounted over a container's (and pip is pointed at it).
# shellcheck disable=SC2034  # for the scripts that source this one
readonly CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
readonly FRESH_SUITE=bookworm
# The packages beyond minbase: git to clone, ca-certificates for the registries' TLS, python3 as
# the README asks for. Nothing else, so .ci/run must install what it needs itself.
readonly FRESH_INCLUDE=git,ca-certificates,python3

# The debootstrap tree while it exists (root-owned), for the caller's EXIT trap.
fresh_rootfs=""

log::step() {
	echo "-----> $*"
}

log::detail() {
	echo "       $*"
}

log::error() {
	sed 's/^/ !     /' >&2
}

# Like `command`, as root: debootstrap needs it, and its tree holds files only root may read.
as_root() {
	if [[ "${EUID}" -eq 0 ]]; then
		"$@"
	else
		sudo -- "$@"
	fi
}

# An argument the calling script does not take: --help prints that script's header comment, and
# anything else stops it with exit 2.
fresh::other_argument() {
	case "${1}" in
		-h | --help)
			sed -n '2,/^set -euo/p' "${BASH_SOURCE[-1]}" | sed '$d; s/^# \{0,1\}//'
			exit 0
			;;
		*)
			echo "Unknown argument: ${1} (see --help)" | log::error
			exit 2
			;;
	esac
}

fresh::remove_rootfs() {
	if [[ -n "${fresh_rootfs}" ]]; then
		# --one-file-system: should debootstrap have died with /proc still mounted in the tree,
		# never descend into it.
		as_root rm -rf --one-file-system "${fresh_rootfs}" || true
		fresh_rootfs=""
	fi
}

# Fails, saying how to get one, unless `docker` reaches a running engine. $1 names the make target
# and $2 says in one line what it runs in Docker.
fresh::require_engine() {
	local target="$1" what="$2"
	if ! command -v docker >/dev/null; then
		log::error <<-EOF
			Error: ${target} needs Docker, and there is no docker command here.

			${what} Install Docker (Debian/Ubuntu:
			apt-get install docker.io), start the engine, and run it again.
		EOF
		exit 1
	fi
	local said
	if ! said="$(docker info 2>&1 >/dev/null)"; then
		log::error <<-EOF
			Error: ${target} needs a running Docker engine, and \`docker info\` failed:
			$(tail -n 3 <<<"${said}")

			Start the engine (systemctl start docker, or as root:
			dockerd --iptables=false --ip-masq=false --bridge=none &), or make sure this user
			may use it, and run it again.
		EOF
		exit 1
	fi
}

# Make the image $1 with debootstrap from the mirror $3 (empty: debootstrap's default, the one
# Debian's own tools use), unless it exists and $2 is not 1.
fresh::ensure_image() {
	local image="$1" rebuild="$2" mirror="$3"
	if [[ "${rebuild}" != 1 ]] && docker image inspect "${image}" >/dev/null 2>&1; then
		log::step "Reusing ${image} (made $(docker image inspect --format '{{.Created}}' "${image}" | cut -c1-19); SLUGSLIM_FRESH_REBUILD=1 makes it again)"
		timings+=("image: reused ${image}")
		return
	fi
	local previous
	previous="$(docker image inspect --format '{{.Id}}' "${image}" 2>/dev/null || true)"
	# /usr/sbin is not on an ordinary user's PATH, but sudo finds it there.
	if ! command -v debootstrap >/dev/null && [[ ! -x /usr/sbin/debootstrap ]]; then
		log::step "Installing debootstrap"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	fi

	# Not under /tmp: debootstrap runs the tree's own binaries, and a /tmp mounted noexec stops it.
	fresh_rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/slugslim-fresh-rootfs.XXXXXX")"
	log::step "debootstrap --variant=minbase ${FRESH_SUITE} ${mirror}"
	local start
	start="${SECONDS}"
	as_root debootstrap --variant=minbase --include="${FRESH_INCLUDE}" \
		"${FRESH_SUITE}" "${fresh_rootfs}" ${mirror:+"${mirror}"} >"${fresh_rootfs}.debootstrap.log" 2>&1 || {
		tail -n 20 "${fresh_rootfs}.debootstrap.log" | log::error
		echo "Error: debootstrap failed (log above, in full in ${fresh_rootfs}.debootstrap.log)." | log::error
		exit 1
	}
	rm -f "${fresh_rootfs}.debootstrap.log"
	local seconds
	seconds="$((SECONDS - start))"
	log::detail "done in ${seconds} s ($(as_root du -sh "${fresh_rootfs}" | cut -f1))"
	timings+=("debootstrap: ${seconds} s")

	log::step "docker import as ${image}"
	start="${SECONDS}"
	# An imported image has no configuration at all; PATH and a shell are what any Debian image has.
	as_root tar -C "${fresh_rootfs}" -c . |
		docker import \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'CMD ["bash"]' \
			--message "debootstrap --variant=minbase --include=${FRESH_INCLUDE} ${FRESH_SUITE}" \
			- "${image}" >/dev/null
	seconds="$((SECONDS - start))"
	log::detail "done in ${seconds} s"
	timings+=("image import: ${seconds} s")
	# A rebuild leaves the image it replaced untagged; it is of no use to anyone.
	if [[ -n "${previous}" && "${previous}" != "$(docker image inspect --format '{{.Id}}' "${image}")" ]]; then
		docker image rm "${previous}" >/dev/null 2>&1 || true
	fi
	fresh::remove_rootfs
}
