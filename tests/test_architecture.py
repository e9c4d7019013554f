"""The house rules of lib/slugslim, read from the code with ast: who may import whom, and sizes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from slugslim import __version__
from slugslim.cli import COMMANDS

LIB = Path(__file__).resolve().parents[1] / "lib" / "slugslim"
# What a finish step may import, besides its own package (or module).
BELOW_THE_STEPS = ("core", "deps", "appcheck", "removal")
LAYERS = {"core": ("core",), "deps": ("core", "deps"), "appcheck": ("core", "deps", "appcheck"),
          "removal": ("core", "deps", "appcheck", "removal"), "prepare": ("core", "deps", "appcheck", "prepare")}


def modules() -> dict[str, Path]:
    return {".".join(("slugslim", *p.relative_to(LIB).with_suffix("").parts)).removesuffix(".__init__"): p
            for p in LIB.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """slugslim modules (or names in them) that ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "slugslim":
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "slugslim")
    return found


def resolve(name: str, known: dict[str, Path]) -> str:
    """The module an imported name lives in: ``slugslim.core.log`` or ``slugslim.core.pip.environment``."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def step_of(module: str) -> str | None:
    """``finish.fixup`` for slugslim.finish.fixup.fixup, ``finish.memory`` for the memory step; None outside."""
    parts = module.split(".")[1:]
    if len(parts) >= 2 and parts[0] == "finish" and parts[1] not in ("phase", "__init__"):
        return ".".join(parts[:2])
    return None


def test_a_finish_step_imports_the_layers_below_and_its_own_package_never_another_step() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        step = step_of(module)
        if step is None:
            continue
        for name in imports(path):
            target = resolve(name, known).split(".")[1:]
            if (target and target[0] in BELOW_THE_STEPS) or step_of(resolve(name, known)) == step:
                continue
            wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_the_shared_layers_import_only_what_is_below_them() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        layer = module.split(".")[1] if module.count(".") else ""
        if layer not in LAYERS:
            continue
        for name in imports(path):
            target = resolve(name, known)
            if target != "slugslim" and target.split(".")[1] not in LAYERS[layer]:
                wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_what_runs_under_the_apps_python_or_a_lockers_imports_nothing_of_slugslim() -> None:
    shipped = [*(LIB / "boot").rglob("*.py"), *LIB.rglob("*_tool.py")]
    assert len(shipped) > 3
    assert {str(p.relative_to(LIB)): imports(p) for p in shipped if imports(p)} == {}


def test_no_import_cycles_including_through_the_command_table() -> None:
    known = modules()
    graph = {m: {resolve(n, known) for n in imports(p)} - {m} for m, p in known.items()}
    # cli imports each command's module when that command runs.
    graph["slugslim.cli"] |= {module for module, _help in COMMANDS.values()}
    # A package's __init__ runs before any of its modules: importing slugslim.a.b imports slugslim.a.
    for module in list(graph):
        parent = module.rpartition(".")[0]
        while parent and parent in graph:
            graph[module].add(parent)
            parent = parent.rpartition(".")[0]
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_modules_stay_small_and_the_top_level_stays_short() -> None:
    long = {str(p.relative_to(LIB)): n for p in LIB.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}
    assert len([p for p in LIB.iterdir() if p.name != "__pycache__"]) <= 12


def test_every_package_says_what_it_owns() -> None:
    silent = [str(p.relative_to(LIB)) for p in LIB.rglob("__init__.py")
              if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert silent == []


def test_the_map_names_every_package_and_only_those() -> None:
    text = (LIB.parents[1] / "ARCHITECTURE.md").read_text(encoding="utf-8")
    mapped = set(re.findall(r"^- `(slugslim/[a-z_/]*)`", text, flags=re.M))
    packages = {f"slugslim/{p.parent.relative_to(LIB).as_posix()}/".replace("/./", "/")
                for p in LIB.rglob("__init__.py")}
    assert mapped == packages


def test_the_buildpack_version_is_slugslims() -> None:
    toml = (LIB.parents[1] / "buildpack.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "([^"]+)"$', toml, flags=re.M)[1] == __version__  # type: ignore[index]


def test_step_results_and_the_prepare_state_are_read_by_field_not_by_string_key() -> None:
    """``ctx.results["prune"]``, ``ctx.state.get("swap")``: only core/results.py and core/state.py know the JSON."""
    owners = {LIB / "core" / "results.py", LIB / "core" / "state.py"}
    found = []
    for path in LIB.rglob("*.py"):
        if path in owners:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            target = None
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str):
                target = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                target = node.func.value
            if (isinstance(target, ast.Attribute) and target.attr in ("results", "state")) \
                    or (isinstance(target, ast.Name) and target.id == "results"):
                found.append(f"{path.relative_to(LIB)}:{node.lineno}")
    assert found == []


METADATA_FILES = {"RECORD", "METADATA", "PKG-INFO", "INSTALLER", "entry_points.txt", "top_level.txt",
                  "installed-files.txt"}


def test_one_reader_of_installed_metadata() -> None:
    """Only core/installed.py reads dist-info files or asks importlib.metadata for distributions.
    (Code that runs under the app's Python, a string, is what the app itself sees, and not counted.)"""
    readers = set()
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            reads_file = name in ("read_text", "read_bytes", "open") and any(
                isinstance(n, ast.Constant) and n.value in METADATA_FILES for n in ast.walk(node))
            if reads_file or name == "distributions" or (name == "reader" and ast.unparse(func) == "csv.reader"):
                readers.add(module)
    assert readers == {"slugslim.core.installed"}
