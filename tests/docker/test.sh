#!/usr/bin/env bash
# make test-docker: `make docker-compile` run for real, in a Debian 12 stand-in for Heroku's
# heroku-24-build image (tests/docker/stack-image.sh: a python3 without pip, the `heroku` user),
# with the emulated heroku/python (tests/heroku/python-buildpack) on a small gunicorn app
# (tests/docker/app):
#   1. the build passes, keeps its outputs in OUT, and its slug keeps symlinks as symlinks;
#   2. the same OUT again is a cached rebuild (slugslim's tools and heroku/python's cache reused);
#   3. the slug boots in a second container as a dyno (/app, HOME=/app, PORT, .profile.d, the
#      Procfile's web command) and answers HTTP from the slug's own Python;
#   4. a build with a broken slugslim.yml fails, with slugslim's message, and exits non-zero.
#
# What it downloads, once: Debian's packages for the stand-in image (when it is missing), and,
# with TEST_DOCKER_PYTHON's pip (python3 unless set; make passes the dev venv's), slugslim's tools
# pinned in lib/tools.lock (pip among them) and the app's gunicorn, as wheels for the stand-in's
# Python, into .cache/test-docker/. After that it is offline: the builds and the dyno run with
# --network none, pip installs from those wheels (PIP_NO_INDEX, PIP_FIND_LINKS), slugslim's
# bootstrap takes pip from the local wheel (SLUGSLIM_PIP) instead of downloading its zipapp, and
# the emulated heroku/python makes its runtime from the stand-in's python3 with that wheel's pip
# (EMULATED_PIP_WHEEL).
#
# Needs a running Docker engine. Usage: tests/docker/test.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO
# shellcheck source=../fresh/image.sh
source "${REPO}/tests/fresh/image.sh"
readonly IMAGE="${SLUGSLIM_STACK_IMAGE:-slugslim-stack:bookworm}"
readonly PYTHON="${TEST_DOCKER_PYTHON:-python3}"
readonly CACHE="${REPO}/.cache/test-docker"
# Each run's OUT directories; removed at the start of the next run, kept for a look until then.
readonly WORK="${CACHE}/run"
readonly APP_DIR=tests/docker/app
readonly EMULATED_PYTHON_BUILDPACK=tests/heroku/python-buildpack
# The port the web process listens on in the dyno (its own network namespace: any port is free).
readonly DYNO_PORT=5000

# The summary's lines, and the parts that failed.
timings=()
failures=()

fail_check() {
	echo "FAILED: $*" | log::error
	failures+=("$*")
}

# Run "$@" as the part named $1 of the summary, timed; the next part runs even if it failed.
part() {
	local name="$1" start="${SECONDS}" rc
	shift
	log::step "[test-docker] ${name}"
	# A subshell with -e of its own: a function called as `f || ...` would run with -e ignored,
	# and go on past a failed check.
	set +e
	(
		set -e
		"$@"
	)
	rc=$?
	set -e
	timings+=("${name}: $((SECONDS - start)) s$([[ "${rc}" -eq 0 ]] || echo ", FAILED")")
	if [[ "${rc}" -ne 0 ]]; then
		fail_check "${name}"
	fi
	return 0
}

# The stand-in's python3 version (X.Y), checked to have no pip, like heroku-24-build's.
stack_python_version=""
inspect_image() {
	local said
	said="$(docker run --rm --network none "${IMAGE}" bash -c \
		'python3 -c "import sys; print(\"%d.%d\" % sys.version_info[:2])"; python3 -c "import pip" 2>/dev/null && echo has-pip || true')"
	stack_python_version="$(head -n 1 <<<"${said}")"
	if [[ "${said}" == *has-pip* ]]; then
		echo "${IMAGE}'s python3 has pip; the stand-in is meant to have none" | log::error
		return 1
	fi
	log::detail "${IMAGE}: python3 ${stack_python_version}, without pip"
}

# slugslim's tools (lib/tools.lock, pip among them) and the app's requirements as wheels for the
# stand-in's Python, downloaded once; a change to either file downloads them again.
wheels=""
download_wheels() {
	local key
	key="$(cat "${REPO}/lib/tools.lock" "${REPO}/${APP_DIR}/requirements.txt" | sha256sum | cut -c1-12)"
	wheels="${CACHE}/wheels-py${stack_python_version}"
	if [[ -f "${wheels}/.complete-${key}" ]]; then
		log::detail "Reusing the wheels in ${wheels#"${REPO}/"}"
		return 0
	fi
	rm -rf "${wheels}"
	log::detail "Downloading slugslim's tools and the app's requirements for Python ${stack_python_version} with ${PYTHON} -m pip"
	local common=(--quiet --disable-pip-version-check --only-binary :all: --python-version "${stack_python_version}"
		--dest "${wheels}")
	"${PYTHON}" -m pip download "${common[@]}" --no-deps --require-hashes --requirement "${REPO}/lib/tools.lock"
	"${PYTHON}" -m pip download "${common[@]}" --requirement "${REPO}/${APP_DIR}/requirements.txt"
	touch "${wheels}/.complete-${key}"
}

# make docker-compile, as a user runs it, with what makes the build offline.
compile() {
	local app="$1" out="$2" pip_wheel
	pip_wheel="$(cd "${wheels}" && ls pip-*.whl)"
	local docker_args=(
		# Nothing outside the container: the build must need no network at all.
		--network none
		--volume "${wheels}:/wheels:ro"
		--env PIP_NO_INDEX=1
		--env PIP_FIND_LINKS=/wheels
		--env PIP_DISABLE_PIP_VERSION_CHECK=1
		# pip for slugslim's bootstrap on the pip-less python3 (else it downloads pip's zipapp),
		# and for the runtime the emulated heroku/python makes from that python3 in each build.
		--env "SLUGSLIM_PIP=/wheels/${pip_wheel}"
		--env "EMULATED_PIP_WHEEL=/wheels/${pip_wheel}"
	)
	"${MAKE:-make}" --no-print-directory -C "${REPO}" docker-compile \
		APP="${app}" IMAGE="${IMAGE}" STACK=heroku-24 OUT="${out}" \
		HEROKU_PYTHON_BUILDPACK="${EMULATED_PYTHON_BUILDPACK}" DOCKER_ARGS="${docker_args[*]}"
}

# Fails unless the file $1 has the line part $2.
expect_in() {
	if ! grep -qF -- "$2" "$1"; then
		echo "expected in ${1#"${REPO}/"}: $2" | log::error
		return 1
	fi
}

build_once() {
	local out="${WORK}/build"
	compile "${APP_DIR}" "${out}"
	expect_in "${out}/log.txt" "-----> Preparing a slim slug (slugslim)"
	expect_in "${out}/log.txt" "Installing build tools (pyyaml, packaging, pip-tools)"
	expect_in "${out}/log.txt" "slugslim finished in"
	expect_in "${out}/log.txt" "-----> Compressing..."
	[[ -f "${out}/slug.tgz" && -d "${out}/build/.heroku/python" && -d "${out}/cache/.heroku/python" ]] || {
		echo "OUT lacks slug.tgz, build/.heroku/python or cache/.heroku/python" | log::error
		return 1
	}
	# Copied out of the container, so the runner's own files, whatever user built them.
	local foreign
	foreign="$(find "${out}" ! -user "$(id -u)" -print -quit)"
	[[ -z "${foreign}" ]] || {
		echo "${foreign} is not owned by uid $(id -u)" | log::error
		return 1
	}
	# The runtime's bin/python -> python3 stays a link in the slug (tar without -h).
	# (grep reads it all: grep -q would stop early, and tar's SIGPIPE fail the pipeline.)
	tar -tvzf "${out}/slug.tgz" | grep -E '^l.* \./app/\.heroku/python/bin/python -> python3$' >/dev/null || {
		echo "the slug's ./app/.heroku/python/bin/python is not a symlink" | log::error
		return 1
	}
	log::detail "slug: $(stat -c %s "${out}/slug.tgz") bytes"
}

rebuild_cached() {
	local out="${WORK}/build"
	compile "${APP_DIR}" "${out}"
	expect_in "${out}/log.txt" "a cached rebuild with its cache/"
	expect_in "${out}/log.txt" "Using cached build tools"
	expect_in "${out}/log.txt" "-----> Restoring cache"
	expect_in "${out}/log.txt" "slugslim finished in"
}

# What the dyno container runs: the slug unpacked at /app by the image's user, .profile.d sourced,
# the Procfile's web command started as Heroku starts it (bash -c), then GET / from inside.
# shellcheck disable=SC2016  # expanded by the container's bash, not here
readonly DYNO='
set -euo pipefail
tar -C /app --strip-components=2 -xzf /slug.tgz
cd /app
web="$(sed -n "s/^web:[[:space:]]*//p" Procfile)"
echo "       web: ${web}"
# Not under -u or -e: .profile.d scripts are written for a plain shell.
bash -c "for f in /app/.profile.d/*.sh; do source \"\$f\"; done; exec bash -c \"\$1\"" dyno "${web}" >/tmp/web.log 2>&1 &
for _ in $(seq 1 60); do
	if answer="$(curl -fsS "http://127.0.0.1:${PORT}/" 2>/dev/null)"; then
		echo "       answer: ${answer}"
		exit 0
	fi
	sleep 0.5
done
echo " !     the web process did not answer on port ${PORT} within 30 s; its log:"
sed "s/^/ !     /" /tmp/web.log
exit 1
'

boot_dyno() {
	local slug="${WORK}/build/slug.tgz" said
	[[ -f "${slug}" ]] || {
		echo "no slug to boot (the build failed)" | log::error
		return 1
	}
	said="$(docker run --rm --network none --tmpfs /app:exec \
		--env HOME=/app --env PORT="${DYNO_PORT}" --env DYNO=web.1 \
		--volume "${slug}:/slug.tgz:ro" "${IMAGE}" bash -c "${DYNO}")" || {
		echo "${said}"
		return 1
	}
	echo "${said}"
	[[ "${said}" == *"test-docker app: Python ${stack_python_version}."*" at /app/.heroku/python"* ]] || {
		echo "the answer is not the app's, from the slug's Python under /app/.heroku/python" | log::error
		return 1
	}
}

# A slugslim.yml with a misspelt key: the build must fail before heroku/python installs anything.
broken_config_fails() {
	local app="${WORK}/broken-app" out="${WORK}/broken" rc=0
	cp -a "${REPO}/${APP_DIR}" "${app}"
	printf 'prune:\n  bytecode: imported\n  kepp: ["foo/*"]\n' >"${app}/slugslim.yml"
	compile "${app}" "${out}" || rc=$?
	if [[ "${rc}" -eq 0 ]]; then
		echo "make docker-compile passed a build with a broken slugslim.yml" | log::error
		return 1
	fi
	log::detail "make docker-compile exited ${rc}, as it must"
	expect_in "${out}/log.txt" " !     Error: Invalid slugslim configuration."
	expect_in "${out}/log.txt" "Unknown key 'prune.kepp'."
	expect_in "${out}/log.txt" " !     Push rejected, failed to compile app."
	if grep -qF "Installing dependencies" "${out}/log.txt"; then
		echo "heroku/python ran after slugslim failed" | log::error
		return 1
	fi
}

summary() {
	local total="$1" line
	echo
	log::step "test-docker summary (${IMAGE}; builds in ${WORK#"${REPO}/"})"
	for line in "${timings[@]}"; do
		log::detail "${line}"
	done
	log::detail "test-docker in all: ${total} s"
	if [[ ${#failures[@]} -eq 0 ]]; then
		log::detail "PASSED: make docker-compile builds, rebuilds from its cache, boots and fails as it should"
	else
		printf 'FAILED: %s\n' "${failures[@]}" | log::error
	fi
}

main() {
	fresh::require_engine "make test-docker" "It builds an app in a Debian 12 stand-in for Heroku's build image."
	# DOCKER_ARGS is split on whitespace, and the wheels' path goes through it.
	if [[ "${CACHE}" =~ [[:space:]] ]]; then
		echo "Error: make test-docker cannot run from a path with spaces (${REPO})." | log::error
		exit 1
	fi
	local start="${SECONDS}" step_start
	step_start="${SECONDS}"
	SLUGSLIM_STACK_IMAGE="${IMAGE}" "${REPO}/tests/docker/stack-image.sh"
	inspect_image
	mkdir -p "${CACHE}"
	download_wheels
	timings+=("stand-in image and wheels: $((SECONDS - step_start)) s")
	rm -rf "${WORK}"
	mkdir -p "${WORK}"

	part "build (make docker-compile, OUT)" build_once
	part "cached rebuild (the same OUT)" rebuild_cached
	part "boot the slug as a dyno" boot_dyno
	part "broken slugslim.yml fails the build" broken_config_fails
	summary "$((SECONDS - start))"
	[[ ${#failures[@]} -eq 0 ]]
}

main "$@"
