"""Record every module a process of the app imports, with whether its bytecode is valid.

A ``sitecustomize`` put at the end of ``PYTHONPATH`` (so the app's own ``sitecustomize`` still
wins) adds a finder in front of ``sys.meta_path``. For each module the interpreter loads it
appends one line to a log: the name, the source, the ``.pyc`` the interpreter would read and
whether that ``.pyc`` is valid for the source (magic number, then the source's mtime and size, as
the interpreter checks them). One ``write`` per line on an ``O_APPEND`` file, so forked workers
(gunicorn) and child processes record into the same log, and a process killed by SIGKILL has
already written what it loaded. Nothing runs when ``SLUGSLIM_IMPORT_RECORD`` is unset.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

ENV = "SLUGSLIM_IMPORT_RECORD"

# Runs in every process of the app's interpreter that reads PYTHONPATH (3.8+; stdlib only).
SITECUSTOMIZE = r'''
def _slugslim_record():
    import json, os, sys
    from importlib.util import MAGIC_NUMBER
    log = os.environ.get("SLUGSLIM_IMPORT_RECORD")
    if not log:
        return

    def valid(source, cached):
        try:
            with open(cached, "rb") as handle:
                head = handle.read(16)
            if len(head) < 16 or head[:4] != MAGIC_NUMBER:
                return False
            if int.from_bytes(head[4:8], "little") & 1:
                return True  # hash-based: no timestamp to go stale
            st = os.stat(source)
            return (int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                    and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF)
        except OSError:
            return False

    def record(name, spec):
        origin = getattr(spec, "origin", None) or ""
        if not origin.endswith(".py"):
            return
        try:
            cached = spec.cached or ""
        except Exception:
            cached = ""
        line = json.dumps([name, origin, cached, bool(cached) and valid(origin, cached)]) + "\n"
        try:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError:
            pass

    class Recorder:
        def find_spec(self, name, path=None, target=None):
            for finder in list(sys.meta_path):
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    return None  # a legacy finder: let the import system ask it, unrecorded
                spec = find(name, path, target)
                if spec is not None:
                    record(name, spec)
                    return spec
            return None

    for name, module in list(sys.modules.items()):  # loaded before us, by .pth files
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            record(name, spec)
    sys.meta_path.insert(0, Recorder())


_slugslim_record()
del _slugslim_record
'''

Modules = dict[str, tuple[str, str, bool]]  # module -> (source, cached .pyc, whether the .pyc is valid)


class ImportRecord:
    """A scratch directory holding the recorder and its log, for one or more runs of the app."""

    def __enter__(self) -> ImportRecord:
        self._scratch = tempfile.TemporaryDirectory(prefix="slugslim-record-")
        self.directory = Path(self._scratch.name)
        (self.directory / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        self.log = self.directory / "modules.log"
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._scratch.cleanup()

    def pythonpath(self, current: str) -> str:
        """PYTHONPATH with the recorder last, behind whatever the app puts there."""
        return f"{current}{os.pathsep}{self.directory}" if current else str(self.directory)

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = dict(env)
        out["PYTHONPATH"] = self.pythonpath(out.get("PYTHONPATH", ""))
        out[ENV] = str(self.log)
        return out

    def modules(self, site_packages: Path) -> Modules:
        """What the runs so far loaded from site-packages (paths resolved: /app/.heroku/python is
        a symlink to BUILD_DIR/.heroku/python during a real build)."""
        root = os.path.realpath(site_packages) + os.sep
        found: Modules = {}
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return found
        for line in lines:
            try:
                name, origin, cached, good = json.loads(line)
            except (ValueError, TypeError):
                continue  # a line cut short by a killed process
            origin = os.path.realpath(origin)
            if origin.startswith(root):
                cached = os.path.realpath(cached) if cached else ""
                seen = found.get(name)
                found[name] = (origin, cached, bool(good) and (seen is None or seen[2]))
        return found
