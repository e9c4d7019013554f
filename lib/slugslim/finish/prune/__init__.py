"""The step that prunes site-packages through the removal engine, and ``slugslim prune``."""
