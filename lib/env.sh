#!/usr/bin/env bash
# Config vars reach a buildpack's compile as files in ENV_DIR; they are not exported for us.

set -euo pipefail

# Print the value of config var $2 from ENV_DIR $1, or $3 (default empty) when it is not set.
function env::get() {
	local env_dir="${1}" name="${2}" default="${3:-}"
	if [[ -n "${env_dir}" && -f "${env_dir}/${name}" ]]; then
		cat "${env_dir}/${name}"
	else
		printf '%s' "${default}"
	fi
}

# True when config var $2 is set to a true-ish value (1, true, yes, on).
function env::is_true() {
	local value
	value="$(env::get "${1}" "${2}")"
	case "${value,,}" in
		1 | true | yes | on) return 0 ;;
		*) return 1 ;;
	esac
}
