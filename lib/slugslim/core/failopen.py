"""slugslim must never be the reason a deploy fails: the one guard around the steps of both phases.

A step that raises is skipped with a warning that names it in the build log, after what it had
half done is put back, and the build goes on as it would without that step. Only what the user
has to fix fails the build (``SlugslimError.fails_build``: invalid settings, what the user made
strict, a Python version heroku/python would reject or for which a pinned framework has no wheel).

The finish steps undo their own work (their quarantines roll back). The prepare steps change the
app's own files, so a ``Backup`` of what a step may write, taken before it runs, is its undo: it
puts every file back byte for byte (mode and times too) and removes what the step created.

For tests, ``SLUGSLIM_TEST_FAULT`` names a step (its words in the build log): the guard raises in
it after its work is done, so that what a test sees of a prepare step is its undo. Nothing else
reads it, and a Heroku build's environment does not have it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from slugslim.core import log
from slugslim.core.errors import SlugslimError

T = TypeVar("T")
FAULT_VAR = "SLUGSLIM_TEST_FAULT"


class InjectedFault(Exception):
    """Raised in the step that SLUGSLIM_TEST_FAULT names."""


def guard(name: str, body: Callable[[], T], env: Mapping[str, str], *, undo: Callable[[], None] | None = None,
          skipped: dict[str, str] | None = None) -> T | None:
    """Run one step so that it cannot fail the deploy: its result, or None when it was skipped.

    ``name`` says in the build log which step was skipped; ``undo`` puts back what it changed (the
    step's own cleanup has run by then); ``skipped`` records it (``{name: "Type: message"}``).
    Errors that ``fails_build`` propagate, unrun undo and all: the build stops.
    """
    try:
        result = body()
        if os.environ.get(FAULT_VAR) == name:
            raise InjectedFault(f"{FAULT_VAR} names the step '{name}'")
        return result
    except SlugslimError as exc:
        if exc.fails_build:
            raise
        caught: Exception = exc
    except Exception as exc:  # a bug or a broken tree must not cost the user their deploy
        caught = exc
    not_undone = None
    if undo is not None:
        try:
            undo()
        except Exception as exc:
            not_undone = exc
    skip(name, caught, env, skipped, not_undone)
    return None


def skip(name: str, exc: Exception, env: Mapping[str, str], skipped: dict[str, str] | None = None,
         not_undone: Exception | None = None) -> None:
    """The build-log warning for a skipped step, with the reason (and a traceback with BUILDPACK_XTRACE=1)."""
    if skipped is not None:
        skipped[name] = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SlugslimError):
        why = exc.render().removeprefix("Error: ")
    else:
        why = (f"{type(exc).__name__}: {exc}\n\nThis is a bug in slugslim, or something in the build it did not "
               "expect. Please report it, with this build log, to the slugslim maintainers.")
    if os.environ.get("BUILDPACK_XTRACE") == "1" or env.get("BUILDPACK_XTRACE", "").strip() == "1":
        why += "\n\n" + "".join(traceback.format_exception(exc)).rstrip()
    put_back = ("Anything this step had changed was put back." if not_undone is None else
                f"What this step had changed could not all be put back ({type(not_undone).__name__}: {not_undone}).")
    log.warning(f"Warning: slugslim skipped {name}, and the build goes on without it.\n"
                f"{put_back} Why it stopped:\n\n{why}")


@dataclass(frozen=True)
class _Saved:
    kind: str  # file | link | absent | kept (a directory, or what cannot be read: left as it is)
    data: bytes = b""
    mode: int = 0
    times: tuple[int, int] = (0, 0)
    target: str = ""


class Backup:
    """Paths under ``root`` a step may write, as they are now; ``restore`` puts them back.

    A file keeps its bytes, mode and times, a symlink its target (never followed), and a path that
    did not exist is removed again, a directory with all it holds. A directory that existed is
    left as it is: name the files in it that matter. Paths outside ``root``, or reached through a
    symlink, are not taken: a step never writes there. Taking a backup never raises.
    """

    def __init__(self, root: Path, paths: Iterable[Path]) -> None:
        self.root = Path(os.path.normpath(root.absolute()))
        self._saved: dict[Path, _Saved] = {}
        for path in paths:
            normal = Path(os.path.normpath(self.root / path))
            if normal == self.root or not normal.is_relative_to(self.root):
                continue
            relative = normal.relative_to(self.root)
            if not self._through_link(relative):
                self._saved[relative] = _save(self.root / relative)

    def _through_link(self, relative: Path) -> bool:
        return any((self.root / parent).is_symlink() for parent in list(relative.parents)[:-1])

    def restore(self) -> None:
        """Put every saved path back; created paths go last, deepest first."""
        for relative, saved in sorted(self._saved.items(), key=lambda item: len(item[0].parts)):
            if saved.kind in ("file", "link") and not self._through_link(relative):
                _put_back(self.root / relative, saved)
        for relative, saved in sorted(self._saved.items(), key=lambda item: -len(item[0].parts)):
            if saved.kind == "absent" and not self._through_link(relative):
                remove(self.root / relative)


def _save(path: Path) -> _Saved:
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            return _Saved("link", target=os.readlink(path))
        if stat.S_ISREG(info.st_mode):
            return _Saved("file", path.read_bytes(), stat.S_IMODE(info.st_mode), (info.st_atime_ns, info.st_mtime_ns))
    except FileNotFoundError:
        return _Saved("absent")
    except OSError:
        pass
    return _Saved("kept")


def _put_back(path: Path, saved: _Saved) -> None:
    if saved.kind == "link":
        if path.is_symlink() and os.readlink(path) == saved.target:
            return
        remove(path)
        os.symlink(saved.target, path)
        return
    if not path.is_symlink() and path.is_file() and stat.S_IMODE(path.stat().st_mode) == saved.mode \
            and path.read_bytes() == saved.data:
        os.utime(path, ns=saved.times)
        return
    remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.slugslim-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(saved.data)
        os.chmod(temp, saved.mode)
        os.utime(temp, ns=saved.times)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def remove(path: Path) -> None:
    """A file, a symlink (never followed) or a directory with all it holds."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
