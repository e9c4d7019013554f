"""One walk over site-packages: every file, directory and symlink, with sizes and owners.

Every rule plans from this single scan, so a 22,500-file TensorFlow tree is read once.
Symlinks are recorded as entries of their own and never followed: a link that points out
of site-packages is moved as a link, and nothing behind it is ever planned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from slugslim.core import installed


@dataclass
class SiteTree:
    """What is in one site-packages directory, keyed by POSIX paths relative to it."""

    root: Path
    # regular files and symlinks (a symlink counts as a file of its own, lstat size)
    files: dict[str, int] = field(default_factory=dict)
    links: set[str] = field(default_factory=set)
    # directory -> (bytes, regular files) of everything under it, symlinks not followed
    dirs: dict[str, tuple[int, int]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    # path of an installed file (from RECORD) -> distribution name
    file_owner: dict[str, str] = field(default_factory=dict)
    # directory -> the first distribution RECORD shows owning a file under it
    dir_owner: dict[str, str] = field(default_factory=dict)
    # distribution name -> its .dist-info directory
    dist_info: dict[str, str] = field(default_factory=dict)
    # distribution name -> files RECORD lists inside site-packages
    dist_files: dict[str, list[str]] = field(default_factory=dict)
    # The installation prefix (.heroku/python or a virtualenv) when site-packages sits at
    # <prefix>/lib/pythonX.Y/site-packages; pip leftovers live there.
    prefix: Path | None = None
    # Bytecode (paths relative to root) that the verification run imported; None = unknown.
    imported_bytecode: frozenset[str] | None = None

    def size(self, path: str) -> tuple[int, int]:
        """(bytes, regular files) of a file or a directory."""
        if path in self.dirs:
            return self.dirs[path]
        return self.files.get(path, 0), 1

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def walk_files(self, under: str = "") -> list[str]:
        """Every file (and symlink) below a directory, without following symlinks."""
        prefix = f"{under}/" if under else ""
        return [p for p in self.files if p.startswith(prefix)]

    def owner(self, path: str) -> str:
        """The distribution a path belongs to, or '' when RECORD does not say."""
        return self.file_owner.get(path) or self.dir_owner.get(path, "")

    def top_level_modules(self) -> dict[str, str]:
        """Importable top-level names -> the distribution that installed them."""
        return installed.top_level_modules(self.file_owner)


def _prefix_of(site_packages: Path) -> Path | None:
    lib_dir = site_packages.parent
    if site_packages.name == "site-packages" and lib_dir.name.startswith("python") and lib_dir.parent.name == "lib":
        return lib_dir.parent.parent
    return None


def scan(site_packages: Path) -> SiteTree:
    """Walk site-packages once. Symlinks are recorded, never followed."""
    tree = SiteTree(root=site_packages, prefix=_prefix_of(site_packages))

    def walk(directory: str, rel: str) -> tuple[int, int]:
        total_bytes = 0
        total_files = 0
        names: list[str] = []
        with os.scandir(directory) as entries:
            for entry in entries:
                names.append(entry.name)
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    tree.links.add(path)
                    tree.files[path] = entry.stat(follow_symlinks=False).st_size
                elif entry.is_dir(follow_symlinks=False):
                    sub_bytes, sub_files = walk(entry.path, path)
                    total_bytes += sub_bytes
                    total_files += sub_files
                else:
                    size = entry.stat(follow_symlinks=False).st_size
                    tree.files[path] = size
                    total_bytes += size
                    total_files += 1
        tree.children[rel] = names
        tree.dirs[rel] = (total_bytes, total_files)
        return total_bytes, total_files

    walk(str(site_packages), "")
    del tree.dirs[""]
    _read_records(tree)
    return tree


def _read_records(tree: SiteTree) -> None:
    """Owners from the installed metadata (``installed.read_dists``), by the names METADATA spells."""
    for dist in installed.read_dists(tree.root).values():
        if dist.info.name not in tree.dirs:
            continue
        name = dist.display_name
        tree.dist_info[name] = dist.info.name
        files = dist.inside()
        for path in files:
            tree.file_owner.setdefault(path, name)
            parent = path.rpartition("/")[0]
            while parent and parent not in tree.dir_owner:
                tree.dir_owner[parent] = name
                parent = parent.rpartition("/")[0]
        tree.dist_files[name] = files
