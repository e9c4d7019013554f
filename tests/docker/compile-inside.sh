#!/usr/bin/env bash
# The build itself, run by tests/docker/compile.sh (make docker-compile) inside the build image,
# as the image's own user: Heroku's build of an app with the buildpacks slugslim then heroku/python,
# as tests/heroku/build.py emulates it on the host. The app is copied to BUILD_DIR (/tmp/build_1),
# each buildpack's bin/detect and bin/compile run in turn (a later one with the earlier ones'
# `export` files sourced), then the last one's bin/release, and the slug is a gzip tar of
# BUILD_DIR with every path under ./app. HOME is /app, a tmpfs of the container's own.
#
# What compile.sh mounts:
#   /buildpack             slugslim (read-only: a buildpack must not need to write into itself)
#   /src                   the app (read-only)
#   /python-buildpack-src  heroku/python's files, when HEROKU_PYTHON_BUILDPACK named them; else it
#                          is cloned from GitHub, as heroku-buildpack-python's `make run` is run
#   /cache-in              the CACHE_DIR of the previous build with the same OUT, if any
# compile.sh copies BUILD_DIR, CACHE_DIR and the slug out of the stopped container.
set -euo pipefail
# One stream, in order, as a build log is.
exec 2>&1

readonly BUILD_DIR=/tmp/build_1
readonly CACHE_DIR=/tmp/cache
readonly ENV_DIR=/tmp/env
readonly SLUG=/tmp/slug.tgz
readonly SLUGSLIM=/buildpack
# Writable, unlike the mount: heroku/python writes its `export` file into its own directory.
readonly PYTHON_BUILDPACK=/tmp/buildpacks/python
readonly PYTHON_BUILDPACK_GIT=https://github.com/heroku/heroku-buildpack-python

fail() {
	echo " !     $*"
	exit 1
}

prepare() {
	local mount
	for mount in /buildpack /src /python-buildpack-src /cache-in; do
		if [[ -e "${mount}" && ! (-r "${mount}" && -x "${mount}") ]]; then
			fail "${mount} (see tests/docker/compile.sh) is not readable by $(id -un), uid $(id -u), the image's build user: make it readable by all (chmod -R a+rX)."
		fi
	done
	mkdir -p "${BUILD_DIR}" "${CACHE_DIR}" "${ENV_DIR}" "$(dirname "${PYTHON_BUILDPACK}")"
	# What a git push delivers: the app's files, not its repository. Extracted by this user, the
	# copy is this user's, with the modes and times kept, as on Heroku.
	tar -C /src --exclude=./.git -c . | tar -C "${BUILD_DIR}" -x
	if [[ -d /cache-in ]]; then
		cp -a /cache-in/. "${CACHE_DIR}/"
	fi
	if [[ -d /python-buildpack-src ]]; then
		mkdir -p "${PYTHON_BUILDPACK}"
		tar -C /python-buildpack-src --exclude=./.git -c . | tar -C "${PYTHON_BUILDPACK}" -x
	else
		echo "-----> Cloning heroku/python (${PYTHON_BUILDPACK_GIT})"
		git clone --quiet --depth 1 "${PYTHON_BUILDPACK_GIT}" "${PYTHON_BUILDPACK}"
	fi
}

# bin/detect and bin/compile of each buildpack, in order; fails the build as Heroku does.
compile_all() {
	local buildpacks=("${SLUGSLIM}" "${PYTHON_BUILDPACK}")
	local exports=() buildpack name
	echo "-----> Using buildpacks:"
	echo "       1. slugslim (${SLUGSLIM})"
	echo "       2. heroku/python (${PYTHON_BUILDPACK})"
	for buildpack in "${buildpacks[@]}"; do
		if ! name="$("${buildpack}/bin/detect" "${BUILD_DIR}")"; then
			fail "App not compatible with buildpack: ${buildpack}"
		fi
		echo "-----> ${name} app detected"
		# A subshell: the exports reach this buildpack's compile and nothing else here. They are
		# other projects' files, written for a shell without -u.
		if ! (
			set +u
			for file in "${exports[@]}"; do
				# shellcheck disable=SC1090  # a buildpack's export file, known at run time
				source "${file}"
			done
			set -u
			"${buildpack}/bin/compile" "${BUILD_DIR}" "${CACHE_DIR}" "${ENV_DIR}"
		); then
			fail "Push rejected, failed to compile app."
		fi
		if [[ -f "${buildpack}/export" ]]; then
			exports+=("${buildpack}/export")
		fi
	done
	if ! "${buildpacks[-1]}/bin/release" "${BUILD_DIR}" >/dev/null; then
		fail "Push rejected, ${buildpacks[-1]}/bin/release failed."
	fi
}

release_and_slug() {
	echo "-----> Discovering process types"
	if [[ -f "${BUILD_DIR}/Procfile" ]]; then
		echo "       Procfile declares types -> $(sed -n 's/^\([A-Za-z0-9_-]*\):.*/\1/p' "${BUILD_DIR}/Procfile" | paste -sd, - | sed 's/,/, /g')"
	else
		echo "       No Procfile"
	fi
	echo "-----> Compressing..."
	# Symlinks stay symlinks (no -h), their targets untouched (the S flag): as the build made them.
	tar -C "${BUILD_DIR}" --transform 's,^\.,./app,S' -czf "${SLUG}" .
	echo "       Done: $(stat -c %s "${SLUG}" | awk '{ printf "%.1fM", $1 / 1e6 }')"
}

echo "-----> Building on the ${STACK^} stack"
echo "       as $(id -un) (uid $(id -u)), the stack's python3: $(python3 --version 2>&1 || echo none)"
prepare
compile_all
release_and_slug
