"""The compressed-size estimate against real ``tar czf`` on trees of compressible and incompressible data."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from slugslim.finish.report import estimate
from tests.sitefactory import noise, text

pytestmark = pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
MB = 1024 * 1024


def tar_size(root: Path, compress: bool = True) -> int:
    """What `tar czf` makes of the tree (the way a slug is made), in bytes."""
    flags = "-czf" if compress else "-cf"
    result = subprocess.run(["tar", "-C", str(root), flags, "-", "."], check=True, capture_output=True)
    return len(result.stdout)


def make_text_tree(root: Path, packages: int = 6, big: int = 4 * MB) -> Path:
    for package in range(packages):
        directory = root / f"pkg{package}" / "sub"
        directory.mkdir(parents=True)
        for index in range(60):
            size = 200 + (index * 7919 + package * 104729) % 40_000
            (directory / f"module_{index}.py").write_text(text(size, package * 1000 + index))
    (root / "big.txt").write_text(text(big, 99))
    return root


def make_noise_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    for index in range(40):
        (root / f"blob{index}.bin").write_bytes(noise(50_000 + index * 3000, index))
    (root / "large.so").write_bytes(noise(8 * MB, 7))
    return root


def make_mixed_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    make_text_tree(root / "text", packages=2, big=MB)
    lib = root / "lib"
    lib.mkdir()
    for index in range(30):
        (lib / f"lib{index}.so").write_bytes(noise(100_000, 100 + index) + text(100_000, 200 + index).encode())
    (lib / "half.so").write_bytes(noise(3 * MB, 5) + bytes(2 * MB) + text(2 * MB, 6).encode())
    deep = root / ("long_directory_name_" * 4) / ("another_long_segment_" * 3)
    deep.mkdir(parents=True)
    (deep / ("a_very_long_file_name_" * 4 + ".py")).write_text(text(5000, 3))
    (root / "empty.txt").write_text("")
    os.symlink("lib/lib0.so", root / "link.so")
    os.link(lib / "lib1.so", root / "hardlink.so")
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trees")
    return {
        "text": make_text_tree(base / "text"),
        "noise": make_noise_tree(base / "noise"),
        "mixed": make_mixed_tree(base / "mixed"),
    }


@pytest.fixture(scope="module")
def real(trees: dict[str, Path]) -> dict[str, int]:
    return {kind: tar_size(root) for kind, root in trees.items()}


@pytest.mark.parametrize("kind", ["text", "noise", "mixed"])
def test_stream_layout_matches_tar_byte_for_byte(trees: dict[str, Path], kind: str) -> None:
    # Headers, GNU long names, padding, links and the final record: the uncompressed length is exact.
    assert estimate.layout(trees[kind]).total() == tar_size(trees[kind], compress=False)


def test_sampled_estimate_within_three_percent_of_tar_czf(trees: dict[str, Path], real: dict[str, int]) -> None:
    # Incompressible and compressible data interleaved within files and across them.
    found = estimate.estimate(trees["mixed"])
    assert found.exact is False  # big enough to be sampled, not compressed whole
    assert found.sampled_bytes < found.stream_bytes
    assert abs(found.compressed_bytes - real["mixed"]) / real["mixed"] < 0.03, (found, real["mixed"])


def test_sparser_samples_stay_within_three_percent_on_uniform_data(
    trees: dict[str, Path], real: dict[str, int]
) -> None:
    for kind in ("text", "noise"):
        found = estimate.estimate(trees[kind], rate=1 / 8)
        assert found.sampled_bytes <= found.stream_bytes / 7
        assert abs(found.compressed_bytes - real[kind]) / real[kind] < 0.03, (found, real[kind])


def test_text_and_noise_compress_very_differently(trees: dict[str, Path], real: dict[str, int]) -> None:
    text_ratio = real["text"] / estimate.layout(trees["text"]).total()
    noise_ratio = real["noise"] / estimate.layout(trees["noise"]).total()
    assert text_ratio < 0.45 < 0.98 < noise_ratio  # no fixed ratio could be right for both


def test_small_trees_are_compressed_whole(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(text(100_000, 1))
    (tmp_path / "b.bin").write_bytes(noise(100_000, 2))
    found = estimate.estimate(tmp_path)
    assert found.exact
    assert abs(found.compressed_bytes - tar_size(tmp_path)) / tar_size(tmp_path) < 0.01
    assert found.bytes == 200_000 and found.files == 2


def test_exclude_and_shrink_stand_for_removal_and_stripping(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "tests").mkdir(parents=True)
    (tree / "tests" / "test_x.py").write_text(text(300_000, 1))
    (tree / "lib.so").write_bytes(text(200_000, 2).encode() + noise(100_000, 3))
    (tree / "keep.py").write_text(text(50_000, 4))
    planned = estimate.estimate(tree, exclude=["tests"], shrink={"lib.so": 100_000}, rate=1.0)

    shutil.rmtree(tree / "tests")
    with open(tree / "lib.so", "r+b") as handle:
        handle.truncate(200_000)  # the symbol tables stripping removes sit at the end of the file
    assert planned.bytes == 250_000
    assert planned.stream_bytes == tar_size(tree, compress=False)
    assert abs(planned.compressed_bytes - tar_size(tree)) / tar_size(tree) < 0.01


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "huge.bin").write_bytes(noise(500_000, 1))
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(outside, tree / "escape")
    found = estimate.estimate(tree)
    assert found.bytes == 0
    assert found.compressed_bytes < 1000


def test_to_json_has_the_report_fields(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("hello")
    data = estimate.estimate(tmp_path).to_json()
    assert {"bytes", "compressed_bytes", "files", "tar_bytes"} <= set(data)
