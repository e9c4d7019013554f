"""slugslim: make TensorFlow apps fit and boot fast on Heroku.

The shell entrypoints in ``bin/`` call into this package, which runs on the stack's
system ``python3`` (3.10 to 3.14) with pyyaml, packaging and pip-tools from the hashed
tool lock. The app's own interpreter is only ever a subprocess.
"""

__version__ = "0.2.0"
