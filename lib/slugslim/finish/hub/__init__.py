"""The Hugging Face step: Hub models the app downloads, fetched once at build time and shipped.
Imports core, deps, appcheck and removal; runs ``hub_tool.py`` under the app's Python."""
