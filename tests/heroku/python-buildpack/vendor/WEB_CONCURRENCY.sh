#!/usr/bin/env bash
# shellcheck shell=bash
# The behaviour of heroku/python v351's vendor/WEB_CONCURRENCY.sh (installed as
# .profile.d/WEB_CONCURRENCY.sh and sourced at dyno start), restated for slugslim's tests:
# - the memory comes only from the cgroup v1 limit file (values above 1 TB mean "no limit");
#   without it, nothing is set;
# - it prints "Python buildpack: ..." lines on stderr, on web dynos only;
# - it exports DYNO_RAM whenever it knows the memory, even when WEB_CONCURRENCY is already set;
# - when WEB_CONCURRENCY is unset it exports WEB_CONCURRENCY_SET_BY=heroku/python and
#   WEB_CONCURRENCY = min(2 * cores + 1, RAM MB / 256), at least 1.
# Sourced, so it returns rather than exits.

emulated_web_concurrency() {
	local limit_file='/sys/fs/cgroup/memory/memory.limit_in_bytes' ram_mb cores per_memory per_cores
	say() { if [[ "${DYNO:-}" == web.* ]]; then echo "Python buildpack: $*" >&2; fi; }
	if [[ ! -f "${limit_file}" ]] || (($(cat "${limit_file}") / 1048576 > 1048576)); then
		say "Couldn't determine available memory. Skipping automatic configuration of WEB_CONCURRENCY."
		return 0
	fi
	ram_mb=$(($(cat "${limit_file}") / 1048576))
	cores="$(nproc)"
	say "Detected ${ram_mb} MB available memory and ${cores} CPU cores."
	export DYNO_RAM="${ram_mb}"
	if [[ -v WEB_CONCURRENCY ]]; then
		say "Skipping automatic configuration of WEB_CONCURRENCY since it's already set."
		return 0
	fi
	export WEB_CONCURRENCY_SET_BY="heroku/python"
	per_memory=$((ram_mb / 256))
	((per_memory >= 1)) || per_memory=1
	per_cores=$((cores * 2 + 1))
	export WEB_CONCURRENCY=$((per_memory < per_cores ? per_memory : per_cores))
	say "Defaulting WEB_CONCURRENCY to ${WEB_CONCURRENCY}."
}
emulated_web_concurrency
