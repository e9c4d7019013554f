"""Which files count as models, on real directory trees (sparse files stand in for big weights)."""

from __future__ import annotations

from pathlib import Path

from slugslim.core.config import ModelsConfig
from slugslim.core.modelscan import discover, scan

MB = 1_000_000


def put(root: Path, relative: str, size: int) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def paths(app: Path, config: ModelsConfig | None = None) -> list[str]:
    return [m.path for m in discover(app, config or ModelsConfig())]


def test_model_files_above_the_threshold_are_found(tmp_path: Path) -> None:
    for name in ("a.h5", "b.hdf5", "c.keras", "d.pb", "e.tflite", "f.onnx", "g.pt", "h.pth", "i.safetensors",
                 "j.joblib", "k.pkl", "l.bin", "lightning.ckpt"):
        put(tmp_path, f"models/{name}", 11 * MB)
    put(tmp_path, "models/readme.txt", 50 * MB)
    put(tmp_path, "data.csv", 50 * MB)
    found = discover(tmp_path, ModelsConfig())
    assert [m.path for m in found] == sorted(
        f"models/{n}" for n in ("a.h5", "b.hdf5", "c.keras", "d.pb", "e.tflite", "f.onnx", "g.pt", "h.pth",
                                "i.safetensors", "j.joblib", "k.pkl", "l.bin", "lightning.ckpt")
    )
    assert found[0].bytes == 11 * MB
    assert found[0].to_json()["files"] == [{"path": "models/a.h5", "bytes": 11 * MB}]


def test_small_files_stay_unless_included(tmp_path: Path) -> None:
    put(tmp_path, "models/tiny.h5", 2 * MB)
    put(tmp_path, "models/vocab.pkl", 3 * MB)
    put(tmp_path, "models/big.h5", 12 * MB)
    put(tmp_path, "assets/embeddings.npy", 1 * MB)
    result = scan(tmp_path, ModelsConfig())
    assert [m.path for m in result.models] == ["models/big.h5"]
    assert [m.path for m in result.small] == ["models/tiny.h5", "models/vocab.pkl"]

    config = ModelsConfig(include=("models/tiny.h5", "*.npy"), min_size=5)
    assert paths(tmp_path, config) == ["assets/embeddings.npy", "models/big.h5", "models/tiny.h5"]
    assert paths(tmp_path, ModelsConfig(min_size=2.5)) == ["models/big.h5", "models/vocab.pkl"]


def test_exclude_keeps_files_in_the_slug(tmp_path: Path) -> None:
    put(tmp_path, "models/keep/a.h5", 20 * MB)
    put(tmp_path, "models/b.h5", 20 * MB)
    result = scan(tmp_path, ModelsConfig(exclude=("models/keep",), include=("models/keep/a.h5",)))
    assert [m.path for m in result.models] == ["models/b.h5"]
    assert [m.path for m in result.excluded] == ["models/keep/a.h5"]


def test_savedmodel_directory_is_one_unit(tmp_path: Path) -> None:
    put(tmp_path, "export/1/saved_model.pb", 1 * MB)
    put(tmp_path, "export/1/variables/variables.index", 1000)
    put(tmp_path, "export/1/variables/variables.data-00000-of-00001", 30 * MB)
    put(tmp_path, "export/1/assets/vocab.txt", 100)
    put(tmp_path, "graph/frozen.pb", 1 * MB)
    found = discover(tmp_path, ModelsConfig())
    assert [(m.path, m.kind) for m in found] == [("export/1", "savedmodel")]
    assert found[0].bytes == 31 * MB + 1100
    assert [f.path for f in found[0].files] == [
        "export/1/saved_model.pb",
        "export/1/assets/vocab.txt",
        "export/1/variables/variables.data-00000-of-00001",
        "export/1/variables/variables.index",
    ]


def test_tensorflow_checkpoints_are_grouped_by_prefix(tmp_path: Path) -> None:
    put(tmp_path, "ckpt/ckpt-3.index", 2000)
    put(tmp_path, "ckpt/ckpt-3.data-00000-of-00002", 8 * MB)
    put(tmp_path, "ckpt/ckpt-3.data-00001-of-00002", 8 * MB)
    put(tmp_path, "ckpt/checkpoint", 100)
    put(tmp_path, "tf1/model.ckpt.meta", 1 * MB)
    put(tmp_path, "tf1/model.ckpt.index", 1000)
    put(tmp_path, "tf1/model.ckpt.data-00000-of-00001", 20 * MB)
    found = discover(tmp_path, ModelsConfig())
    assert [(m.path, m.kind, len(m.files)) for m in found] == [
        ("ckpt/ckpt-3", "checkpoint", 3),
        ("tf1/model.ckpt", "checkpoint", 3),
    ]


def test_heroku_state_and_symlinks_are_never_entered(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    put(outside, "huge.h5", 50 * MB)
    app = tmp_path / "app"
    put(app, ".heroku/python/lib/python3.12/site-packages/pkg/weights.h5", 50 * MB)
    put(app, ".slugslim/old.h5", 50 * MB)
    put(app, ".git/objects/pack.bin", 50 * MB)
    put(app, ".apt/usr/lib/libbig.bin", 50 * MB)
    put(app, "web/node_modules/onnxruntime-web/dist/ort.onnx", 50 * MB)
    put(app, "models/real.h5", 50 * MB)
    (app / "linked").symlink_to(outside)
    (app / "models/alias.h5").symlink_to(app / "models/real.h5")
    sm = app / "sm"
    put(sm, "saved_model.pb", 20 * MB)
    (sm / "variables").symlink_to(outside)
    # sm/ is no SavedModel (its variables/ is a symlink), just a .pb file that is one of ours.
    assert paths(app) == ["models/real.h5", "sm/saved_model.pb"]


def test_a_savedmodel_with_a_symlink_inside_is_unsafe(tmp_path: Path) -> None:
    put(tmp_path, "sm/saved_model.pb", 20 * MB)
    put(tmp_path, "sm/variables/variables.index", 10)
    (tmp_path / "sm/variables/link").symlink_to(tmp_path / "elsewhere")
    result = scan(tmp_path, ModelsConfig())
    assert result.models == []
    assert [(m.path, why) for m, why in result.unsafe] == [("sm", "sm/variables/link is not a regular file")]


def test_models_false_turns_it_off(tmp_path: Path) -> None:
    put(tmp_path, "models/a.h5", 50 * MB)
    assert paths(tmp_path, ModelsConfig(enabled=False)) == []
