"""Start slugslim on the system python3 with its lib/ and bootstrapped tools first on sys.path.

Usage: python3 -s -B lib/launch.py TOOLS_DIR COMMAND [ARGS...]

sys.path is set here instead of through PYTHONPATH so that nothing leaks into the
environment of the processes we start (the app's own bin/post_compile, the app's Python).
"""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, sys.argv[1]]
del sys.argv[1]

from slugslim.cli import main  # noqa: E402

sys.exit(main())
