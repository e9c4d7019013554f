"""Phase 1 (bin/compile, before heroku/python): settings, the Python check, the CPU swap of the
declarations, the hook. Imports core, deps and appcheck; nothing of finish but the runtime's build cache."""
