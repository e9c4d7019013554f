"""The step that replaces GPU builds heroku/python installed anyway with CPU ones, TensorFlow and PyTorch."""
