"""The step that takes model files out of the slug into a store, fetched at boot with a sha256 check."""
