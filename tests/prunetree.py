"""A small but real site-packages for the prune tests: pip-installed wheels with every trap.

Built once per test session (wheels, C shared objects compiled with ``cc``, one pip install)
and copied per test, so each test mutates its own tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from tests.wheelfactory import WheelSpec, build_wheel, tensorflow_cpu_spec

NORMAL_C = """
static int hidden(int x) { return x + 1; }
int answer(void) { return hidden(41); }
"""

# A library that refuses to load once its static symbol table is gone: it reads its own
# section headers from disk in a constructor and aborts without .symtab. strip breaks it.
SELFCHECK_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void check(void) __attribute__((constructor));
static void check(void) {
    Dl_info info;
    if (!dladdr((void *)check, &info)) return;
    FILE *f = fopen(info.dli_fname, "rb");
    if (!f) return;
    Elf64_Ehdr eh;
    if (fread(&eh, 1, sizeof eh, f) != sizeof eh) abort();
    Elf64_Shdr *sh = malloc((size_t)eh.e_shentsize * eh.e_shnum);
    fseek(f, (long)eh.e_shoff, SEEK_SET);
    if (fread(sh, eh.e_shentsize, eh.e_shnum, f) != eh.e_shnum) abort();
    Elf64_Shdr names_hdr = sh[eh.e_shstrndx];
    char *names = malloc(names_hdr.sh_size);
    fseek(f, (long)names_hdr.sh_offset, SEEK_SET);
    if (fread(names, 1, names_hdr.sh_size, f) != names_hdr.sh_size) abort();
    int found = 0;
    for (int i = 0; i < eh.e_shnum; i++)
        if (strcmp(names + sh[i].sh_name, ".symtab") == 0) found = 1;
    fclose(f);
    if (!found) abort();
}
int selfcheck_ok(void) { return 1; }
"""

ELFY_INIT = """import ctypes, os
_here = os.path.dirname(__file__)
ANSWER = ctypes.CDLL(os.path.join(_here, "_normal.so")).answer()
"""


def compile_shared(source: str, out: Path, workdir: Path) -> bytes:
    src = workdir / (out.stem + ".c")
    src.write_text(source)
    subprocess.run(["cc", "-shared", "-fPIC", "-g", "-O1", "-o", str(out), str(src), "-ldl"], check=True)
    return out.read_bytes()


def patchelf(path: Path) -> bytes:
    subprocess.run(
        ["patchelf", "--set-rpath", "$ORIGIN/../elfy.libs:/opt/a/long/rpath/that/makes/patchelf/grow/it",
         str(path)],
        check=True,
    )
    return path.read_bytes()


def specs(workdir: Path, with_elf: bool) -> list[WheelSpec]:
    alpha = {
        "alpha/__init__.py": "from alpha import core\n",
        "alpha/core.py": "VALUE = 1\n",
        "alpha/unused.py": "NEVER = 1\n",
        "alpha/tests/__init__.py": "",
        "alpha/tests/test_core.py": "import alpha\ndef test_value():\n    assert alpha.core.VALUE == 1\n",
        "alpha/tests/data/sample.txt": "x" * 400,
        "alpha/include/alpha.h": "int alpha(void);\n" * 20,
        "alpha/src/impl.hpp": "// impl\n" * 20,
        "alpha/libalpha.a": b"!<arch>\n" + b"\0" * 300,
        "alpha/données/__init__.py": "",
        "alpha/données/tests/__init__.py": "",
        "alpha/données/tests/test_é.py": "def test_e():\n    pass\n",
        "alpha/with space/tests/test_s.py": "def test_s():\n    pass\n",
        "alpha/_vendor/__init__.py": "",
        "alpha/_vendor/tests/__init__.py": "VENDORED = 1\n",
        "alpha/docs/guide.txt": "guide\n" * 50,
    }
    beta = {
        "beta/__init__.py": (
            "import importlib\nfrom . import tests\nfrom beta.test_mode import MODE\n"
            "_testing = importlib.import_module('beta.testing')\n"
        ),
        "beta/tests/__init__.py": "IMPORTED = True\n",
        "beta/testing/__init__.py": "HELPER = 1\n",
        "beta/test_mode.py": "MODE = 'runtime'\n",
        "beta/test_unused.py": "def test_nothing():\n    pass\n",
        "beta/extension.pyx": "def f():\n    return 1\n",
    }
    gamma = {
        "gamma/__init__.py": "from .test import helpers\n",
        "gamma/test/__init__.py": "",
        "gamma/test/helpers.py": "HELP = 1\n",
        "gamma/sub/__init__.py": "",
        "gamma/sub/thing_test.py": "def test_thing():\n    pass\n",
    }
    out = [
        WheelSpec(name="alpha", files=alpha),
        WheelSpec(name="beta", files=beta),
        WheelSpec(name="gamma", files=gamma),
        WheelSpec(name="libclang", version="18.1.1",
                  files={"clang/__init__.py": "", "clang/cindex.py": "X = 1\n",
                         "clang/native/libclang.so": b"\0" * 2000}),
        tensorflow_cpu_spec(),
        WheelSpec(name="numpy-fake", version="1.26.4", files={"numpy_fake/__init__.py": "VALUE = 1\n"}),
    ]
    if with_elf:
        normal = compile_shared(NORMAL_C, workdir / "_normal.so", workdir)
        selfcheck = compile_shared(SELFCHECK_C, workdir / "_selfcheck.so", workdir)
        vendored = compile_shared(NORMAL_C, workdir / "libvendored.so", workdir)
        patched = compile_shared(NORMAL_C, workdir / "_patched.so", workdir)
        out.append(WheelSpec(name="elfy", files={
            "elfy/__init__.py": ELFY_INIT,
            "elfy/_normal.so": normal,
            "elfy/_selfcheck.so": selfcheck,
            "elfy/_patched.so": patchelf(workdir / "_patched.so") if shutil.which("patchelf") else patched,
            "elfy.libs/libvendored-1a2b3c4d.so": patchelf(workdir / "libvendored.so")
            if shutil.which("patchelf") else vendored,
        }, top_level=["elfy"]))
    return out


def build_template(workdir: Path) -> Path:
    """pip-install every spec into workdir/site-packages, once."""
    with_elf = shutil.which("cc") is not None
    wheels = workdir / "wheels"
    for spec in specs(workdir, with_elf):
        build_wheel(spec, wheels)
    target = workdir / "site-packages"
    names = ["alpha", "beta", "gamma", "libclang", "tensorflow-cpu"] + (["elfy"] if with_elf else [])
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
         "--find-links", str(wheels), "--target", str(target), *names],
        check=True,
    )
    return target


def tree_digest(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a byte-identical rollback must preserve: content, mode, mtime, link targets."""
    out: dict[str, tuple[object, ...]] = {}
    for top, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(top, name)
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                            hashlib.sha256(path.read_bytes()).hexdigest())
        dirnames[:] = [d for d in dirnames if not Path(top, d).is_symlink()]
    return out
