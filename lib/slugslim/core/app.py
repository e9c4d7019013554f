"""The one app walker: which files in the app dir are the app's own.

Every part of slugslim that looks at the app's files (the models, Git LFS pointers, the import
scanner) walks it here, with one rule: hidden top-level directories (``.heroku``, ``.slugslim``,
``.profile.d``, other buildpacks' and tools' directories), version control, caches,
``node_modules``, any ``site-packages`` and any virtualenv (a directory with ``pyvenv.cfg``) are
not the app's, and symlinks are never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

SKIP_ANYWHERE = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", "site-packages"})
# At the top of BUILD_DIR, heroku/python's and slugslim's own directories: the slug's, not the app's.
BUILDPACK_DIRS = frozenset({".heroku", ".slugslim"})
# At the top of a working copy, what a push never puts in the slug: git's data, local virtualenvs
# (heroku/python refuses to build with one) and local bytecode.
LOCAL_ONLY = frozenset({".git", ".venv", "venv", "__pycache__"})


def regular(path: Path) -> os.stat_result | None:
    """``path``'s lstat when it is a regular file (not a symlink), else None."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def walk(app_dir: Path) -> Iterator[tuple[Path, list[str], dict[str, int]]]:
    """The app's own files: (directory, its subdirectories, its regular files by size), top down.

    A caller may remove names from the subdirectory list to keep the walk out of them, as with
    ``os.walk``.
    """
    for root, dirs, names in os.walk(app_dir, followlinks=False):
        base = Path(root)
        top = base == app_dir
        dirs[:] = [name for name in sorted(dirs)
                   if not ((top and name.startswith(".")) or name in SKIP_ANYWHERE or (base / name).is_symlink()
                           or (base / name / "pyvenv.cfg").exists())]
        files: dict[str, int] = {}
        for name in sorted(names):
            info = regular(base / name)
            if info is not None:
                files[name] = info.st_size
        yield base, dirs, files
