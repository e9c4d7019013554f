#!/usr/bin/env bash
# Build-log output in Heroku's grammar: "-----> " for a step, seven spaces for its details,
# " !     " for warnings and errors (on stderr, where heroku/python writes them too).

set -euo pipefail

function output::step() {
	echo "-----> ${1}"
}

# Indent stdin (command output) or the arguments as detail lines.
function output::detail() {
	if [[ $# -gt 0 ]]; then
		printf '       %s\n' "$@"
	else
		sed --unbuffered "s/^/       /"
	fi
}

# Multi-line warning from stdin, e.g. a heredoc that starts with "Warning: ...".
function output::warning() {
	echo >&2
	sed "s/^/ !     /" >&2
	echo >&2
}

# Multi-line error from stdin, e.g. a heredoc that starts with "Error: ...".
function output::error() {
	echo >&2
	sed "s/^/ !     /" >&2
	echo >&2
}

function output::now() {
	date +%s.%N
}

# Seconds since a timestamp taken with output::now, as "1.2s".
function output::since() {
	local start="${1}"
	awk -v start="${start}" -v now="$(output::now)" 'BEGIN { printf "%.1fs", now - start }'
}
