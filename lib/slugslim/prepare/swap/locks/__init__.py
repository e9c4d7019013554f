"""The CPU swap for lock files (uv, Poetry, Pipenv): edit the manifest, re-lock, keep everything else."""
