"""``poetry lock`` for an app whose Python is not installed here (run by ``locks.poetry`` with Poetry on the path).

    python poetry_lock_tool.py PYTHON_VERSION ENV_DIR      (in the app's directory)

Poetry's command line finds an interpreter inside the project's Python range before any command
that works on a project, and makes a virtualenv for it; ``lock`` then never uses it (the lock is
resolved for every Python the project allows, and with a lock already there the installed packages
play no part). This runs Poetry's own ``lock`` command with an environment that stands for the
dyno's, the app's Python on Linux x86_64, that is never run: no interpreter is looked for and no
virtualenv is made. ``--no-plugins``: the project's own Poetry plugins are not installed into it.
It imports nothing of slugslim.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and it holds modules named like
# Poetry's own packages (poetry.py): Poetry must be imported from its install instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


def main(argv: list[str]) -> int:
    version = tuple(int(part) for part in argv[1].split("."))
    env_dir = Path(argv[2])
    application = importlib.import_module("poetry.console.application").Application()
    application.auto_exits(False)
    dyno = importlib.import_module("poetry.utils.env").MockEnv(
        version_info=version, python_implementation="CPython", platform="linux", platform_machine="x86_64",
        os_name="posix", path=env_dir)
    application.find("lock").set_env(dyno)
    command_line = importlib.import_module("cleo.io.inputs.argv_input").ArgvInput(
        ["poetry", "lock", "--no-interaction", "--no-ansi", "--no-plugins"])
    return int(application.run(command_line))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
