"""Rule 'symbols': ``strip --strip-unneeded`` on shared objects.

Evidence: ELF symbol tables are about 20 MB gz of tensorflow-cpu 2.21.0's site-packages
(``libtensorflow_cc.so.2`` alone carries a 175 MB ``.strtab``); 163 shared objects hold
262 MB of ``.symtab``/``.strtab``/debug sections uncompressed. ``--strip-unneeded`` keeps
``.dynsym``, so dynamic linking and ``dlsym`` work as before. Measured: 100 files stripped,
254.1 MB (25.9 MB gz) saved; 58 left alone (``.libs/`` or patchelf signs: every auditwheel-
repaired numpy, h5py and pillow module); all 100 still load.

What it must never touch: auditwheel-vendored libraries (any ``<pkg>.libs/`` directory) and
any file with signs of patchelf rewriting (auditwheel patches the extension modules too, to
point their RPATH at ``<pkg>.libs``). Stripping numpy's patched openblas broke ``import
numpy`` with "ELF load command address/offset not page-aligned". Symlinks are skipped.

This rule rewrites files instead of moving them: the engine strips into the quarantine,
moves the original there, and puts the stripped copy in its place; each stripped file must
still load (ctypes, in a subprocess with the app's Python) or it is rolled back on its own.
``strip`` comes from binutils on PATH; without it the rule is skipped with a notice.
"""

from __future__ import annotations

import shutil

from slugslim.core.config import PruneConfig
from slugslim.core.plan import Removal
from slugslim.removal import elf
from slugslim.removal.tree import SiteTree

NAME = "symbols"


def strip_tool() -> str | None:
    return shutil.which("strip")


def is_shared_object(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def vendored(path: str) -> bool:
    return any(part.endswith(".libs") for part in path.split("/")[:-1])


class SymbolsRule:
    name = NAME

    def __init__(self) -> None:
        # path -> why it was left alone; read by the engine for the build log
        self.skipped: dict[str, str] = {}

    def plan(self, tree: SiteTree, config: PruneConfig) -> list[Removal]:
        self.skipped = {}
        if not config.symbols:
            return []
        removals: list[Removal] = []
        for path, size in tree.files.items():
            if path in tree.links or not is_shared_object(path.rsplit("/", 1)[-1]):
                continue
            if vendored(path):
                self.skipped[path] = "auditwheel-vendored library (<pkg>.libs/)"
                continue
            parsed = elf.read(tree.root / path)
            if parsed is None:
                continue
            signs = elf.patchelf_signs(parsed)
            if signs:
                self.skipped[path] = f"rewritten by patchelf ({signs[0]})"
                continue
            saved = min(elf.symbol_bytes(parsed), size)
            if saved <= 0:
                continue
            removals.append(
                Removal(
                    path=path,
                    bytes=saved,
                    rule=NAME,
                    reason="symbol table and debug sections (strip --strip-unneeded)",
                    files=0,
                    package=tree.owner(path),
                )
            )
        return removals
