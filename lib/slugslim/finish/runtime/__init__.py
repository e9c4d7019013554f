"""The step that serves models with a lighter runtime (``runtime.engine: litert``). ``litert_tool`` runs
under the app's Python, by path, and imports nothing of slugslim."""
