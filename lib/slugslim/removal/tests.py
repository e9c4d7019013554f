"""Rule 'tests': test suites that no runtime code imports.

Evidence: tests/ directories are 4.6 MB gz of tensorflow-cpu 2.21.0's site-packages (numpy,
h5py, opt_einsum, keras, TensorFlow's own kernel tests). Measured with this rule (which also
takes unimported ``*_test.py`` modules such as keras's): 27.1 MB (7.0 MB gz), 1,414 files.

What it removes: directories named ``tests``, ``test`` or ``testing`` and modules named
``test_*.py`` or ``*_test.py``, below a package, but only when a static scan of every other
module finds no reference to them. References are what the import scanner (``imports``) reads:
``import`` and ``from ... import`` statements (absolute and relative, so ``from . import tests``
counts) and any quoted dotted module name such as ``importlib.import_module("pkg.tests")`` or
TensorFlow's lazy loaders ``"tensorflow._api.v2.test"``. A kept candidate's own imports count
too, until nothing changes.

What it must never touch: names alone prove nothing here. Removing every ``test`` directory
broke ``import tensorflow`` (``tensorflow/_api/v2/__internal__/test``); removing ``testing``
broke it through ``absl.testing`` and ``framework/test_util.py``; a ``test_*.py`` glob deleted
``tensorflow/python/data/ops/test_mode.py``, a runtime module. Those paths are kept even if
the scan ever misses their importer. ``numpy/_core/tests`` goes only when nothing imports it.
"""

from __future__ import annotations

from slugslim.appcheck.imports import scan_quick
from slugslim.core.config import PruneConfig
from slugslim.core.plan import Removal
from slugslim.removal.rule import module_name, removal
from slugslim.removal.tree import SiteTree

NAME = "tests"
TEST_DIRS = frozenset({"tests", "test", "testing"})
# Runtime code lives at these paths in real releases; kept whatever the scan says.
ALWAYS_KEEP = frozenset(
    {
        "tensorflow/_api/v2/__internal__/test",
        "tensorflow/_api/v2/compat/v2/__internal__/test",
        "absl/testing",
        "numpy/testing",
        "tensorflow/python/framework/test_util.py",
        "tensorflow/python/data/ops/test_mode.py",
    }
)


def _is_test_module(name: str) -> bool:
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _read(tree: SiteTree, path: str) -> str:
    try:
        return (tree.root / path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


class TestsRule:
    name = NAME

    def plan(self, tree: SiteTree, config: PruneConfig) -> list[Removal]:
        if not config.tests:
            return []
        candidates: dict[str, str] = {}  # path -> module name
        for directory in tree.dirs:
            if directory in tree.links or "/" not in directory:
                continue
            if directory.rsplit("/", 1)[1] in TEST_DIRS and not directory.split("/", 1)[0].endswith(".dist-info"):
                candidates[directory] = module_name(directory)
        for path in tree.files:
            if path in tree.links or "/" not in path:
                continue
            if _is_test_module(path.rsplit("/", 1)[1]):
                candidates[path] = module_name(path)
        if not candidates:
            return []

        def candidate_of(path: str) -> str | None:
            """The innermost candidate containing a path, if any."""
            parts = path.split("/")
            for i in range(len(parts), 0, -1):
                prefix = "/".join(parts[:i])
                if prefix in candidates:
                    return prefix
            return None

        # Source files grouped by the innermost candidate they sit in ('' = runtime code).
        sources: dict[str, list[str]] = {}
        for path in tree.files:
            if path.endswith(".py") and path not in tree.links:
                sources.setdefault(candidate_of(path) or "", []).append(path)

        by_module = {module: path for path, module in candidates.items()}
        live: set[str] = {path for path in candidates if path in ALWAYS_KEEP}
        pending = ["", *sorted(live)]
        referenced: set[str] = set()
        while pending:
            group = pending.pop()
            for source in sources.get(group, ()):
                text = _read(tree, source)
                if "test" not in text:
                    continue
                referenced |= {name for name in scan_quick(text, source).names() if "test" in name}
            for name in list(referenced):
                parts = name.split(".")
                for i in range(len(parts), 0, -1):
                    hit = by_module.get(".".join(parts[:i]))
                    if hit is not None and hit not in live:
                        live.add(hit)
                        pending.append(hit)
            referenced.clear()

        # A candidate holding a live one stays whole; the live one decides for itself.
        holds_live = {"/".join(p.split("/")[:i]) for p in live for i in range(1, p.count("/") + 1)}
        removals = []
        for path in sorted(candidates):
            if path in live or path in holds_live:
                continue
            kind = "directory" if path in tree.dirs else "module"
            removals.append(removal(tree, path, NAME, f"test {kind} that no runtime module imports"))
        return removals
