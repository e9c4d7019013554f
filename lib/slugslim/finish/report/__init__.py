"""The step that says where the bytes went: the slug estimate, the levers, memory per web process."""
