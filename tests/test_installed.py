"""The one reader of installed metadata (core/installed.read_dists) against importlib.metadata, on a
real pip-installed environment, and what its users (sizes, import names, the prune tree) see."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from slugslim.core import installed
from slugslim.removal import tree
from tests import sitefactory


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("installed")
    site = sitefactory.install_app(sitefactory.build_app_wheels(root / "wheels"), root / "prefix")
    # A legacy install (setuptools' `setup.py install`, before pip 23.1): an .egg-info directory
    # whose installed-files.txt lists paths relative to itself.
    (site / "oldlib").mkdir()
    (site / "oldlib/__init__.py").write_text("OLD = 1\n")
    info = site / "OldLib-0.9-py3.11.egg-info"
    info.mkdir()
    (info / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: OldLib\nVersion: 0.9\n\nA long description.\n")
    (info / "installed-files.txt").write_text("../oldlib/__init__.py\nPKG-INFO\ninstalled-files.txt\n")
    (info / "top_level.txt").write_text("oldlib\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nold-tool = oldlib:main\n"
                                           "[gui_scripts]\nold-gui = oldlib:gui\n[other.group]\nx = y:z\n")
    return site


def test_names_versions_requirements_and_scripts_agree_with_importlib_metadata(site: Path) -> None:
    ours = installed.read_dists(site)
    theirs = {installed.canonical(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site)])}
    assert set(ours) == set(theirs) and "oldlib" in ours and "pillow" in ours
    for key, dist in theirs.items():
        assert ours[key].display_name == dist.metadata["Name"]
        assert ours[key].version == dist.version
        assert [str(r) for r in ours[key].requires] == [str(Requirement(r)) for r in dist.requires or []]
        scripts = {e.name: e.value for e in dist.entry_points if e.group in ("console_scripts", "gui_scripts")}
        assert ours[key].entry_points == scripts
        assert ours[key].paths() == {str(p).replace("\\", "/").removeprefix("./") for p in dist.files or []} \
            or key == "oldlib"
    assert ours["oldlib"].paths() == {"oldlib/__init__.py", "OldLib-0.9-py3.11.egg-info/PKG-INFO",
                                      "OldLib-0.9-py3.11.egg-info/installed-files.txt"}
    assert installed.console_scripts(site)["old-gui"] == "oldlib:gui"


def test_sizes_and_import_names_come_from_the_same_reading(site: Path) -> None:
    scanned = installed.scan(site)
    old = scanned.distributions["oldlib"]
    assert old.name == "OldLib" and old.meta.info.name.endswith(".egg-info")
    assert "oldlib/__init__.py" in old.files and old.bytes >= len("OLD = 1\n")
    assert {"old-tool", "old-gui"} <= old.scripts
    assert scanned.providers()["PIL"] == {"pillow"}
    assert [str(r) for r in scanned.distributions["jupyter-fake"].meta.requires] == ["bigdep"]
    assert sum(scanned.sizes().values()) == scanned.bytes


def test_the_prune_tree_names_owners_as_metadata_spells_them(site: Path) -> None:
    walked = tree.scan(site)
    assert walked.owner("PIL/Image.py") == "Pillow"
    assert walked.owner("oldlib/__init__.py") == "OldLib"
    assert walked.dist_info["Pillow"].lower() == "pillow-10.0.0.dist-info"
    assert "PIL/__init__.py" in walked.dist_files["Pillow"]


def test_top_level_modules_from_the_metadata_alone_are_the_trees(site: Path) -> None:
    """The memory and Hub steps read them without walking site-packages; the prune tree walks it."""
    from_metadata = installed.top_level_modules(installed.owners_of(site))
    assert from_metadata == tree.scan(site).top_level_modules()
    assert from_metadata["PIL"] == "Pillow" and from_metadata["oldlib"] == "OldLib"
