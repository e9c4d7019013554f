"""Rule 'headers': C/C++ headers, include/ trees and static libraries.

Evidence: ``tensorflow/include`` alone is 30.5 MB gz of tensorflow-cpu 2.21.0's
site-packages. Measured with this rule on tensorflow-cpu 2.21.0 + flask, gunicorn, pillow:
268.7 MB (35.9 MB gz), 11,028 files, with ``import tensorflow`` and a Keras fit/save/load/
predict run passing. Headers and ``*.a`` archives are read by compilers, never by a running app.

What it removes: ``*.h *.hpp *.hh *.inc *.cuh`` files, ``include/`` directories inside a
package that hold no Python module (Eigen's headers have no extension, so the whole tree
goes), and ``*.a``. Cython ``*.pxd``/``*.pyx`` go only when no module of the same
distribution imports ``pyximport``, ``Cython.Build`` or ``cython`` (``cython.inline``), as the
import scanner reads them, or mentions the file's name.

What it must never touch: packages that compile C/C++ at run time and read their own headers
to do it (cupy's NVRTC kernels, triton, torch's cpp_extension, numba); ``include`` directories
that are Python packages.
"""

from __future__ import annotations

from slugslim.appcheck.imports import scan_quick
from slugslim.core.config import PruneConfig
from slugslim.core.plan import Removal
from slugslim.removal.rule import removal
from slugslim.removal.tests import TEST_DIRS
from slugslim.removal.tree import SiteTree

NAME = "headers"
HEADER_SUFFIXES = (".h", ".hpp", ".hh", ".inc", ".cuh")
STATIC_SUFFIXES = (".a",)
CYTHON_SUFFIXES = (".pxd", ".pyx")
# Top-level packages that read their headers at run time (JIT compilation).
RUNTIME_COMPILERS = frozenset({"cupy", "cupy_backends", "triton", "torch", "numba", "pythran", "pyximport"})
# Modules that compile Cython sources at run time (cython.inline lives in the 'cython' shim).
_CYTHON_READERS = ("pyximport", "Cython.Build", "cython")


def _is_test_path(path: str) -> bool:
    *dirs, name = path.split("/")
    return any(d in TEST_DIRS for d in dirs) or name.startswith("test_") or name.endswith("_test.py")


class HeadersRule:
    name = NAME

    def plan(self, tree: SiteTree, config: PruneConfig) -> list[Removal]:
        if not config.headers:
            return []
        removals: list[Removal] = []
        include_dirs: set[str] = set()
        for directory in tree.dirs:
            if directory in tree.links or "/" not in directory or directory.rsplit("/", 1)[1] != "include":
                continue
            if directory.split("/", 1)[0] in RUNTIME_COMPILERS:
                continue
            if any(f.endswith(".py") for f in tree.walk_files(directory)):
                continue
            include_dirs.add(directory)
        for directory in sorted(include_dirs):
            if any(directory.startswith(f"{d}/") for d in include_dirs):
                continue
            removals.append(removal(tree, directory, NAME, "C/C++ include tree, used only to compile extensions"))

        cython: list[str] = []
        for path in tree.files:
            if path in tree.links or path.split("/", 1)[0] in RUNTIME_COMPILERS:
                continue
            if path.endswith(HEADER_SUFFIXES):
                removals.append(removal(tree, path, NAME, "C/C++ header, used only to compile extensions"))
            elif path.endswith(STATIC_SUFFIXES):
                removals.append(removal(tree, path, NAME, "static library, used only to link at build time"))
            elif path.endswith(CYTHON_SUFFIXES):
                cython.append(path)
        removals.extend(self._cython(tree, cython))
        return removals

    def _cython(self, tree: SiteTree, paths: list[str]) -> list[Removal]:
        if not paths:
            return []
        # Read each owning distribution's modules once, looking for code that reads Cython sources.
        by_top: dict[str, list[str]] = {}
        for path in paths:
            by_top.setdefault(path.split("/", 1)[0], []).append(path)
        out: list[Removal] = []
        for top, group in by_top.items():
            texts = []
            readers = False
            for source in tree.walk_files(top):
                # Test code that mentions a .pyx is not a runtime reader (and the tests rule
                # removes it, so counting it would make a second build plan differently).
                if source.endswith(".py") and source not in tree.links and not _is_test_path(source):
                    try:
                        text = (tree.root / source).read_text(encoding="utf-8", errors="replace")
                    except OSError:
                        continue
                    texts.append(text)
                    if "ython" in text and not readers:
                        imported = scan_quick(text, source)
                        readers = any(name == reader or name.startswith(f"{reader}.")
                                      for name in imported.modules | imported.maybe for reader in _CYTHON_READERS)
            if readers:
                continue
            corpus = "\n".join(texts)
            for path in group:
                if path.rsplit("/", 1)[-1] in corpus:
                    continue
                out.append(removal(tree, path, NAME, "Cython source, read only when compiling"))
        return out
