"""The CPU swap at the source: which declarations name a GPU build, their rewrite, and the re-lock.
Imports core and deps."""
