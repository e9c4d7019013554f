"""The verified removal engine shared by the steps: plan (with the prune rules), quarantine, verify,
bisect, roll back. Imports core, deps and appcheck."""
