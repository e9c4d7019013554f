#!/usr/bin/env bash
# shellcheck shell=bash
#
# slugslim: put back the model files that the build took out of the slug.
#
# Written into your app as .profile.d/slugslim-models.sh by the slugslim buildpack. Heroku
# *sources* every .profile.d/*.sh with bash at dyno start, after the config vars are set and
# before your process starts, with HOME=/app. For each file in $HOME/.slugslim/models.json
# that is missing or wrong, it downloads the file from its source (https, or s3 signed with
# curl --aws-sigv4 from the AWS_* config vars) into a temp file in the same directory,
# checks its sha256 and only then moves it into place. Plain bash + curl: no Python at boot.
#
# Settings come from the manifest (models.boot_timeout, models.on_fetch_failure,
# models.fetch_on_release); the config vars SLUGSLIM_MODELS_BOOT_TIMEOUT,
# SLUGSLIM_MODELS_ON_FETCH_FAILURE and SLUGSLIM_MODELS_FETCH_ON_RELEASE override them at run
# time. A boot_timeout of 0 leaves the fetching to slugslim_models.path() in your code.
# Release-phase dynos (DYNO=release.*) fetch nothing unless fetch_on_release is true: a release
# command seldom needs the models, and its failure would stop the deploy.
#
# The manifest holds no secret: an https source's credentials are read here, at run time, from
# the config vars: the userinfo and query string of SLUGSLIM_MODELS_SOURCE (when the file's
# source lies under it), or else SLUGSLIM_MODELS_AUTH, as user:password.
#
# Run, rather than sourced, it fetches on demand (slugslim_models.py does this):
#   bash .profile.d/slugslim-models.sh fetch [--timeout SECONDS] MODEL_PATH...

slugslim_models::log() {
	echo "slugslim-models: $*" >&2
}

slugslim_models::human() {
	local bytes="$1"
	if ((bytes >= 1000000000)); then
		echo "$((bytes / 1000000000)).$((bytes % 1000000000 / 100000000)) GB"
	elif ((bytes >= 1000000)); then
		echo "$((bytes / 1000000)).$((bytes % 1000000 / 100000)) MB"
	elif ((bytes >= 1000)); then
		echo "$((bytes / 1000)).$((bytes % 1000 / 100)) KB"
	else
		echo "${bytes} B"
	fi
}

# Milliseconds since the epoch, without forking (bash >= 5 on every Heroku stack).
slugslim_models::now_ms() {
	local now="${EPOCHREALTIME/[.,]/}"
	echo "$((now / 1000))"
}

slugslim_models::seconds() {
	local ms="$1"
	echo "$((ms / 1000)).$((ms % 1000 / 100))s"
}

# A manifest path must stay inside the app: relative, no '.' or '..' parts, no symlink on the way.
slugslim_models::safe_path() {
	local root="$1" relative="$2" part current
	[[ -n "${relative}" && "${relative}" != /* ]] || return 1
	current="${root}"
	local -a parts
	IFS='/' read -r -a parts <<<"${relative}"
	for part in "${parts[@]}"; do
		case "${part}" in
		"" | "." | "..") return 1 ;;
		esac
		current="${current}/${part}"
		[[ -L "${current}" ]] && return 1
	done
	# The last part, if it exists, must be a regular file we may replace.
	[[ ! -e "${current}" || -f "${current}" ]]
}

# openssl hashes about 4x as fast as coreutils' sha256sum (SHA extensions), which counts against
# the boot time for big models; both are on every Heroku stack. Paths here are always absolute.
slugslim_models::sha256() {
	local digest
	if ! digest="$(openssl dgst -sha256 -r "$1" 2>/dev/null)"; then
		digest="$(sha256sum -- "$1")" || return 1
	fi
	echo "${digest%% *}"
}

# True when the file at the path is already the one the manifest describes.
slugslim_models::present() {
	local target="$1" bytes="$2" sha="$3" size
	[[ -f "${target}" && ! -L "${target}" ]] || return 1
	size="$(stat -c %s -- "${target}")" || return 1
	[[ "${size}" == "${bytes}" ]] || return 1
	[[ "$(slugslim_models::sha256 "${target}")" == "${sha}" ]]
}

# curl's configuration for one download, on stdout, so that neither the credentials nor a
# signed URL ever appear in a process's arguments (ps, /proc) or in the log.
slugslim_models::curl_config() {
	local source="$1"
	local quote_re='[\"]'
	slugslim_models::config_line() {
		local value="$2"
		value="${value//\\/\\\\}"
		value="${value//\"/\\\"}"
		printf '%s = "%s"\n' "$1" "${value}"
	}
	if [[ "${source}" == s3://* ]]; then
		local rest="${source#s3://}"
		local bucket="${rest%%/*}" key="${rest#*/}"
		local region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
		local endpoint="${AWS_ENDPOINT_URL_S3:-${AWS_ENDPOINT_URL:-}}"
		local url
		if [[ -n "${endpoint}" ]]; then
			url="${endpoint%/}/${bucket}/${key}"
		elif [[ "${bucket}" == *.* ]]; then
			url="https://s3.${region}.amazonaws.com/${bucket}/${key}"
		else
			url="https://${bucket}.s3.${region}.amazonaws.com/${key}"
		fi
		slugslim_models::config_line url "${url}"
		slugslim_models::config_line user "${AWS_ACCESS_KEY_ID}:${AWS_SECRET_ACCESS_KEY}"
		slugslim_models::config_line aws-sigv4 "aws:amz:${region}:s3"
		# S3 wants the payload hash of every SigV4 request; a GET has an empty body.
		slugslim_models::config_line header "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
		if [[ -n "${AWS_SESSION_TOKEN:-}" ]]; then
			slugslim_models::config_line header "x-amz-security-token: ${AWS_SESSION_TOKEN}"
		fi
	else
		[[ "${source}" =~ ${quote_re} ]] && return 1
		local user="" query=""
		local url_re='^(https?://)(([^/@]*)@)?([^/?#]*)([^?#]*)(\?([^#]*))?'
		if [[ "${SLUGSLIM_MODELS_SOURCE:-}" =~ ${url_re} ]]; then
			local base="${BASH_REMATCH[1]}${BASH_REMATCH[4]}${BASH_REMATCH[5]%/}"
			if [[ "${source}" == "${base}/"* ]]; then
				user="${BASH_REMATCH[3]}"
				query="${BASH_REMATCH[7]}"
				printf -v user '%b' "${user//%/\\x}"
			fi
		fi
		[[ -n "${user}" ]] || user="${SLUGSLIM_MODELS_AUTH:-}"
		slugslim_models::config_line url "${source}${query:+?${query}}"
		[[ -n "${user}" ]] && slugslim_models::config_line user "${user}"
		echo "location"
	fi
}

# What a source looks like in the log: no userinfo, no query string.
slugslim_models::shown() {
	local source="$1"
	source="${source%%\?*}"
	if [[ "${source}" =~ ^([a-z0-9]+://)[^/@]*@(.*)$ ]]; then
		source="${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
	fi
	echo "${source}"
}

# Download one file. Runs in its own subshell; writes "ok BYTES MS" or "fail REASON" to $4.
slugslim_models::fetch_one() {
	local target="$1" sha="$2" bytes="$3" status_file="$4" source="$5" deadline="$6"
	local dir name started attempt=0 delay=1 code err remaining got
	dir="$(dirname -- "${target}")"
	name="$(basename -- "${target}")"
	started="$(slugslim_models::now_ms)"
	if ! mkdir -p -- "${dir}"; then
		echo "fail could not create the directory $(dirname -- "$7")" >"${status_file}"
		return 0
	fi
	# Not local: the EXIT trap reads it after this function has returned. This runs in its own
	# background subshell, so nothing leaks.
	slugslim_models_tmp="$(mktemp -- "${dir}/.${name}.slugslim-XXXXXX")" || {
		echo "fail could not create a temporary file next to $7" >"${status_file}"
		return 0
	}
	local tmp="${slugslim_models_tmp}"
	# Whatever happens (curl fails, the time runs out), no partial file stays.
	trap 'rm -f -- "${slugslim_models_tmp}" "${slugslim_models_tmp}.err"' EXIT
	local config
	config="$(slugslim_models::curl_config "${source}")" || {
		echo "fail the source address has a quote or backslash in it" >"${status_file}"
		return 0
	}
	while :; do
		attempt=$((attempt + 1))
		remaining=$(((deadline - $(slugslim_models::now_ms)) / 1000))
		if ((remaining < 1)); then
			echo "fail timed out${err:+ (last error: ${err})}" >"${status_file}"
			return 0
		fi
		err=""
		# The config goes through a pipe (printf is a builtin): no argument, no temp file holds it.
		if code="$(printf '%s\n' "${config}" | curl --config - --silent --show-error --fail \
			--connect-timeout 10 --max-time "${remaining}" --output "${tmp}" --write-out '%{http_code}' \
			2>"${tmp}.err")"; then
			got="$(stat -c %s -- "${tmp}")"
			if [[ "${got}" != "${bytes}" ]]; then
				err="got ${got} bytes instead of ${bytes}"
			elif [[ "$(slugslim_models::sha256 "${tmp}")" != "${sha}" ]]; then
				rm -f -- "${tmp}.err"
				echo "fail the download does not match its sha256, so it was refused" >"${status_file}"
				return 0
			else
				rm -f -- "${tmp}.err"
				chmod 0644 -- "${tmp}"
				mv -f -- "${tmp}" "${target}"
				echo "ok ${bytes} $(($(slugslim_models::now_ms) - started))" >"${status_file}"
				return 0
			fi
		else
			err="$(head -c 300 -- "${tmp}.err" | tr '\n' ' ')"
			err="${err#curl: }"
			err="${err% }"
			if [[ "${code}" =~ ^4[0-9][0-9]$ && "${code}" != 408 && "${code}" != 429 ]]; then
				rm -f -- "${tmp}.err"
				echo "fail HTTP ${code} from $(slugslim_models::shown "${source}")" >"${status_file}"
				return 0
			fi
		fi
		rm -f -- "${tmp}.err"
		remaining=$(((deadline - $(slugslim_models::now_ms)) / 1000))
		if ((remaining <= delay)); then
			echo "fail timed out after ${attempt} attempt(s) (last error: ${err})" >"${status_file}"
			return 0
		fi
		sleep "${delay}"
		delay=$((delay * 2))
	done
}

slugslim_models::main() {
	set -euo pipefail
	export LC_ALL=C
	local mode="${1:-boot}"
	shift || true
	local root="${HOME:-}"
	local manifest="${root}/.slugslim/models.json"
	local timeout="" policy="" on_release="" only_timeout=""
	local -a wanted=()
	if [[ "${mode}" == "fetch" ]]; then
		while (($#)); do
			case "$1" in
			--timeout)
				only_timeout="$2"
				shift 2
				;;
			*)
				wanted+=("$1")
				shift
				;;
			esac
		done
	fi
	if [[ -z "${root}" || ! -f "${manifest}" ]]; then
		[[ "${mode}" == "fetch" ]] && slugslim_models::log "no manifest at ${manifest}" && return 1
		return 0
	fi

	local line entry_re setting_re
	entry_re='^[[:space:]]*\{"path": "([^"\\]+)", "bytes": ([0-9]+), "sha256": "([0-9a-f]{64})", "source": "([^"\\]+)", "model": "([^"\\]+)"\},?[[:space:]]*$'
	setting_re='^[[:space:]]*"(boot_timeout|on_fetch_failure|fetch_on_release)": "?([a-z0-9]+)"?,?[[:space:]]*$'
	local -a paths=() shas=() sizes=() sources=()
	local refused=0 number=0
	while IFS= read -r line || [[ -n "${line}" ]]; do
		number=$((number + 1))
		if [[ "${line}" =~ ${setting_re} ]]; then
			case "${BASH_REMATCH[1]}" in
			boot_timeout) timeout="${BASH_REMATCH[2]}" ;;
			on_fetch_failure) policy="${BASH_REMATCH[2]}" ;;
			*) on_release="${BASH_REMATCH[2]}" ;;
			esac
		elif [[ "${line}" =~ ${entry_re} ]]; then
			local relative="${BASH_REMATCH[1]}" model="${BASH_REMATCH[5]}"
			if ((${#wanted[@]})); then
				local match="" want
				for want in "${wanted[@]}"; do
					[[ "${want}" == "${relative}" || "${want}" == "${model}" ]] && match=1
				done
				[[ -n "${match}" ]] || continue
			fi
			if ! slugslim_models::safe_path "${root}" "${relative}"; then
				slugslim_models::log "refused the manifest path '${relative}': it must stay inside the app, with no '..', no leading '/' and no symlink on the way"
				refused=$((refused + 1))
				continue
			fi
			paths+=("${relative}")
			sizes+=("${BASH_REMATCH[2]}")
			shas+=("${BASH_REMATCH[3]}")
			sources+=("${BASH_REMATCH[4]}")
		elif [[ "${line}" == *'"path"'* ]]; then
			slugslim_models::log "refused line ${number} of .slugslim/models.json: it is not an entry this script can read"
			refused=$((refused + 1))
		fi
	done <"${manifest}"

	timeout="${SLUGSLIM_MODELS_BOOT_TIMEOUT:-${timeout:-45}}"
	policy="${SLUGSLIM_MODELS_ON_FETCH_FAILURE:-${policy:-fail}}"
	[[ -n "${only_timeout}" ]] && timeout="${only_timeout}"
	[[ "${timeout}" =~ ^[0-9]+$ ]] || timeout=45
	[[ "${policy}" == warn ]] || policy=fail
	on_release="${SLUGSLIM_MODELS_FETCH_ON_RELEASE:-${on_release:-false}}"
	if [[ "${mode}" == boot && "${DYNO:-}" == release.* && "${on_release,,}" != @(true|1|yes|on) ]]; then
		slugslim_models::log "release phase: models are not fetched (set models.fetch_on_release: true to fetch them)"
		return 0
	fi
	if [[ "${mode}" == boot && "${timeout}" == 0 ]]; then
		slugslim_models::log "models.boot_timeout is 0: models are fetched on first use by slugslim_models.path()"
		return 0
	fi

	local started deadline index target missing=0
	started="$(slugslim_models::now_ms)"
	deadline=$((started + timeout * 1000))
	local workdir
	workdir="$(mktemp -d)"
	# shellcheck disable=SC2064 # expand now: the path is fixed, and the variable is local
	trap "rm -rf -- '${workdir}'" EXIT

	local need_s3=""
	local -a todo=()
	for index in "${!paths[@]}"; do
		target="${root}/${paths[index]}"
		if slugslim_models::present "${target}" "${sizes[index]}" "${shas[index]}"; then
			continue
		fi
		todo+=("${index}")
		[[ "${sources[index]}" == s3://* ]] && need_s3=1
	done
	if [[ -n "${need_s3}" && (-z "${AWS_ACCESS_KEY_ID:-}" || -z "${AWS_SECRET_ACCESS_KEY:-}") ]]; then
		slugslim_models::log "the models are in S3, but the config vars AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"
		todo=()
		missing=${#paths[@]}
	fi

	local -i parallel=4
	for index in "${todo[@]}"; do
		while (($(jobs -rp | wc -l) >= parallel)); do
			wait -n || true
		done
		slugslim_models::fetch_one "${root}/${paths[index]}" "${shas[index]}" "${sizes[index]}" \
			"${workdir}/${index}" "${sources[index]}" "${deadline}" "${paths[index]}" &
	done
	wait || true

	local fetched=0 failed=0 bytes=0 result got_bytes ms
	for index in "${todo[@]}"; do
		result="$(cat -- "${workdir}/${index}" 2>/dev/null || echo "fail the download was interrupted")"
		if [[ "${result}" == ok\ * ]]; then
			read -r _ got_bytes ms <<<"${result}"
			fetched=$((fetched + 1))
			bytes=$((bytes + got_bytes))
			slugslim_models::log "fetched ${paths[index]} ($(slugslim_models::human "${got_bytes}")) in $(slugslim_models::seconds "${ms}")"
		else
			failed=$((failed + 1))
			slugslim_models::log "could not fetch ${paths[index]}: ${result#fail }"
		fi
	done
	failed=$((failed + missing + refused))
	local took
	took="$(slugslim_models::seconds "$(($(slugslim_models::now_ms) - started))")"
	if ((fetched)); then
		slugslim_models::log "fetched ${fetched} file(s), $(slugslim_models::human "${bytes}"), in ${took}"
	elif ((failed == 0)); then
		[[ "${mode}" == boot ]] && slugslim_models::log "all ${#paths[@]} model file(s) already in place"
	fi
	if ((failed)); then
		if [[ "${policy}" == warn && "${mode}" == boot ]]; then
			slugslim_models::log "WARNING: ${failed} model file(s) are missing; the app starts without them (models.on_fetch_failure: warn)"
			return 0
		fi
		slugslim_models::log "ERROR: ${failed} model file(s) could not be fetched"
		return 1
	fi
	return 0
}

if [[ "${BASH_SOURCE[0]}" != "${0}" ]]; then
	# Sourced at dyno start. The work runs in a subshell, so that set -e, traps and variables
	# stay out of the shell that goes on to run your process.
	# '||' keeps a shell that sourced us under 'set -e' alive until the decision below.
	__slugslim_models_status=0
	(slugslim_models::main boot) || __slugslim_models_status=$?
	unset -f slugslim_models::log slugslim_models::human slugslim_models::now_ms slugslim_models::seconds \
		slugslim_models::safe_path slugslim_models::sha256 slugslim_models::present slugslim_models::curl_config \
		slugslim_models::config_line slugslim_models::shown slugslim_models::fetch_one slugslim_models::main
	if ((__slugslim_models_status != 0)); then
		unset __slugslim_models_status
		# A one-off dyno (heroku run bash) or an interactive shell must still start, or there would
		# be no way in to look at the problem. Any other dyno stops here: it crashes loudly rather
		# than serve without its model, and Heroku shows the crash and restarts it.
		if [[ "${DYNO:-}" == run.* || $- == *i* ]]; then
			echo "slugslim-models: continuing anyway, because this is a one-off or interactive shell" >&2
		else
			echo "slugslim-models: stopping the dyno (models.on_fetch_failure: fail)" >&2
			exit 1
		fi
	fi
	unset __slugslim_models_status
else
	slugslim_models::main "${1:-fetch}" "${@:2}"
fi
