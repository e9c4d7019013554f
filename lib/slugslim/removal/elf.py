"""Just enough ELF reading to size symbol tables and spot files patchelf has rewritten.

Reading headers in Python (no subprocess) keeps planning fast on TensorFlow's ~500 shared
objects, and lets a dry run say what ``strip`` would save without running it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
SHF_ALLOC = 0x2
SHT_NOBITS = 8
PT_LOAD = 1


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int


@dataclass(frozen=True)
class Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


@dataclass(frozen=True)
class ElfFile:
    bits: int
    ehsize: int
    phoff: int
    sections: tuple[Section, ...]
    segments: tuple[Segment, ...]

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)


def read(path: Path) -> ElfFile | None:
    """Parse the headers of a shared object; None when it is not a well-formed ELF file."""
    try:
        with path.open("rb") as handle:
            ident = handle.read(64)
            if len(ident) < 52 or not ident.startswith(ELF_MAGIC) or ident[4] not in (1, 2) or ident[5] not in (1, 2):
                return None
            bits = 64 if ident[4] == 2 else 32
            endian = "<" if ident[5] == 1 else ">"
            if bits == 64:
                (_t, _m, _v, _e, phoff, shoff, _f, ehsize, phentsize, phnum, shentsize, shnum, shstrndx) = (
                    struct.unpack_from(endian + "HHIQQQIHHHHHH", ident, 16)
                )
            else:
                (_t, _m, _v, _e, phoff, shoff, _f, ehsize, phentsize, phnum, shentsize, shnum, shstrndx) = (
                    struct.unpack_from(endian + "HHIIIIIHHHHHH", ident, 16)
                )
            segments = []
            for i in range(phnum):
                handle.seek(phoff + i * phentsize)
                raw = handle.read(phentsize)
                if bits == 64:
                    p_type, _flags, offset, vaddr, _paddr, filesz, memsz, align = struct.unpack_from(
                        endian + "IIQQQQQQ", raw
                    )
                else:
                    p_type, offset, vaddr, _paddr, filesz, memsz, _flags, align = struct.unpack_from(
                        endian + "IIIIIIII", raw
                    )
                segments.append(Segment(p_type, offset, vaddr, filesz, memsz, align))
            raw_sections = []
            for i in range(shnum):
                handle.seek(shoff + i * shentsize)
                raw = handle.read(shentsize)
                if bits == 64:
                    name, s_type, flags, addr, offset, size = struct.unpack_from(endian + "IIQQQQ", raw)
                else:
                    name, s_type, flags, addr, offset, size = struct.unpack_from(endian + "IIIIII", raw)
                raw_sections.append((name, s_type, flags, addr, offset, size))
            names = b""
            if 0 <= shstrndx < len(raw_sections):
                _n, _t2, _f2, _a, str_offset, str_size = raw_sections[shstrndx]
                handle.seek(str_offset)
                names = handle.read(min(str_size, 1 << 20))
    except (OSError, struct.error):
        return None
    sections = []
    for name_offset, s_type, flags, addr, offset, size in raw_sections:
        end = names.find(b"\0", name_offset)
        name = names[name_offset:end].decode("ascii", errors="replace") if end >= 0 else ""
        sections.append(Section(name, s_type, flags, addr, offset, size))
    return ElfFile(bits, ehsize, phoff, tuple(sections), tuple(segments))


def symbol_bytes(elf: ElfFile) -> int:
    """What ``strip --strip-unneeded`` takes out: the static symbol table and debug info."""
    return sum(
        s.size
        for s in elf.sections
        if s.name in (".symtab", ".strtab") or s.name.startswith((".debug", ".zdebug"))
    )


def patchelf_signs(elf: ElfFile) -> list[str]:
    """Layout that a linker never produces but patchelf does, when it grows .dynstr/.dynamic.

    patchelf moves the rewritten sections (and often the program headers) into a new PT_LOAD
    at the end of the file and leaves the section headers in their old order. binutils'
    ``strip`` then rewrites the layout and breaks it ("ELF load command address/offset not
    page-aligned" on numpy's openblas).
    """
    signs: list[str] = []
    if elf.phoff != elf.ehsize:
        signs.append(f"program headers at offset {elf.phoff:#x}, not right after the ELF header")
    alloc = [s for s in elf.sections if s.flags & SHF_ALLOC and s.type != SHT_NOBITS and s.size]
    offsets = [s.offset for s in alloc]
    if offsets != sorted(offsets):
        signs.append("allocated sections out of file-offset order")
    loads = [p for p in elf.segments if p.type == PT_LOAD]
    text = elf.section(".text")
    for name in (".dynstr", ".dynamic", ".dynsym"):
        section = elf.section(name)
        if section is None or text is None:
            continue
        if name != ".dynamic" and section.offset > text.offset:
            signs.append(f"{name} moved after .text")
    if loads:
        last_end = max(s.offset + s.size for s in alloc) if alloc else 0
        for load in loads:
            if load.filesz and load.offset >= last_end:
                signs.append("a PT_LOAD segment past every allocated section")
                break
    return signs
