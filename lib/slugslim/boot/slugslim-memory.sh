#!/usr/bin/env bash
# shellcheck shell=bash
#
# slugslim: start only as many web processes as fit in the dyno's memory.
#
# Written into your app as .profile.d/slugslim-memory.sh by the slugslim buildpack, with the
# memory one web process of your app needed when the build measured it. Heroku sources every
# .profile.d/*.sh at dyno start. heroku/python's .profile.d/WEB_CONCURRENCY.sh gives every 256 MB
# of memory a process (2 on a 512 MB dyno); a TensorFlow process needs more than that, and two of
# them put the dyno over its memory quota (R14) from the first request. This script sets
# WEB_CONCURRENCY (read by gunicorn and uvicorn) to the processes that fit: at least 1, never more
# than heroku/python's own value. It never changes a WEB_CONCURRENCY you set yourself, and it works
# whether it is sourced before or after heroku/python's script.
#
# The memory comes from the cgroup limit, as heroku/python reads it, or DYNO_RAM when that is set.
# Set SLUGSLIM_MEMORY=false (a config var) and rebuild to go without this script.

slugslim_memory::say() {
	# One line, on web dynos only, like heroku/python's script: one-off dynos stay quiet for scripting.
	if [[ "${DYNO:-}" == web.* ]]; then
		echo "slugslim: $*" >&2
	fi
}

slugslim_memory::main() {
	local process_mb="@PROCESS_MB@"
	local limit_file="/sys/fs/cgroup/memory/memory.limit_in_bytes"
	local memory_mb="" limit="" cores heroku_value fit

	[[ "${process_mb}" =~ ^[1-9][0-9]*$ ]] || return 0
	if [[ -f "${limit_file}" ]] && limit="$(cat "${limit_file}" 2>/dev/null)" && [[ "${limit}" =~ ^[0-9]+$ ]] \
		&& ((limit / 1048576 <= 1048576)); then
		memory_mb=$((limit / 1048576))
	elif [[ "${DYNO_RAM:-}" =~ ^[0-9]+$ ]]; then
		memory_mb="${DYNO_RAM}"
	fi
	if [[ -z "${memory_mb}" ]]; then
		slugslim_memory::say "Couldn't determine available memory; leaving WEB_CONCURRENCY as it is."
		return 0
	fi

	if [[ -v WEB_CONCURRENCY && "${WEB_CONCURRENCY_SET_BY:-}" != "heroku/python" ]]; then
		# Set by you (or by this script already): yours to keep.
		if [[ "${WEB_CONCURRENCY_SET_BY:-}" != "slugslim" && "${WEB_CONCURRENCY}" =~ ^[0-9]+$ ]] \
			&& ((WEB_CONCURRENCY * process_mb > memory_mb)); then
			slugslim_memory::say "WEB_CONCURRENCY=${WEB_CONCURRENCY} is your setting; ${WEB_CONCURRENCY} web processes of about ${process_mb} MB need more than this dyno's ${memory_mb} MB."
		fi
		return 0
	fi

	if [[ "${WEB_CONCURRENCY_SET_BY:-}" == "heroku/python" && "${WEB_CONCURRENCY:-}" =~ ^[1-9][0-9]*$ ]]; then
		heroku_value="${WEB_CONCURRENCY}"
	else
		# heroku/python's rule, for when its script comes after this one: RAM / 256 MB, at most 2 * cores + 1.
		cores="$(nproc 2>/dev/null)" || cores=1
		heroku_value=$((memory_mb / 256))
		((heroku_value >= 1)) || heroku_value=1
		((heroku_value <= cores * 2 + 1)) || heroku_value=$((cores * 2 + 1))
	fi
	fit=$((memory_mb / process_mb))
	((fit >= 1)) || fit=1
	((fit <= heroku_value)) || fit="${heroku_value}"

	export WEB_CONCURRENCY="${fit}"
	export WEB_CONCURRENCY_SET_BY="slugslim"
	slugslim_memory::say "Setting WEB_CONCURRENCY to ${fit}: one web process of this app needs about ${process_mb} MB and the dyno has ${memory_mb} MB."
}

slugslim_memory::main
unset -f slugslim_memory::main slugslim_memory::say
