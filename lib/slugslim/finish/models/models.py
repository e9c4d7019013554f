"""Models out of the slug: found at the end of the build, put back at dyno boot, verified.

Apps commit ``.h5``, ``.keras`` and SavedModel files of hundreds of MB. ``.slugignore`` cannot
take them out: it runs before any buildpack, so a build step that needs the model (conversion,
warm-up, tests) would lose it too. So this step runs last in the finish phase, after the app's
own ``bin/post_compile``: it finds the models, makes sure each one is at ``models.source``
(uploading it with ``models.upload: true``), removes only those, and writes

- ``.slugslim/models.json``: the manifest (path, size, sha256, source of every file taken out);
- ``.profile.d/slugslim-models.sh``: bash + curl, fetches them back at every dyno start;
- ``slugslim_models.py``: an optional helper to fetch a model on first use instead.

A model that cannot be found at its source stays in the slug, with a warning: we never ship an
app whose model cannot be fetched.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from slugslim.core import lfs, log, words
from slugslim.core.app import regular
from slugslim.core.config import ModelsConfig
from slugslim.core.context import FinishContext
from slugslim.core.errors import ModelStoreError, StoreError
from slugslim.core.modelscan import MB, Model, ModelFile, Scan, scan
from slugslim.core.results import ModelsResult, snapshot
from slugslim.core.shipped import BOOT_DIR, install_helper
from slugslim.core.state import STATE_DIR
from slugslim.finish.models.store import Location, Store, open_store

MANIFEST = Path(STATE_DIR) / "models.json"
PROFILE_SCRIPT = Path(".profile.d") / "slugslim-models.sh"

# What the boot script can read back from a manifest line: no quote, backslash or control character.
_SAFE_PATH = re.compile(r'^[^"\\\x00-\x1f\x7f]+$')
BIG_FILE = 50_000_000


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Entry:
    """One file of the manifest."""

    path: str
    bytes: int
    sha256: str
    source: str
    model: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "sha256": self.sha256, "source": self.source,
                "model": self.model}


def render_manifest(entries: list[Entry], config: ModelsConfig) -> str:
    """JSON, one file entry per line with a fixed key order, so the boot script can read it with bash alone."""
    lines = [
        "{",
        '  "version": 1,',
        f'  "boot_timeout": {int(config.boot_timeout)},',
        f'  "on_fetch_failure": {json.dumps(config.on_fetch_failure)},',
        f'  "fetch_on_release": {json.dumps(config.fetch_on_release)},',
        '  "files": [',
    ]
    for index, entry in enumerate(entries):
        comma = "," if index < len(entries) - 1 else ""
        lines.append("    " + json.dumps(entry.to_json(), ensure_ascii=False) + comma)
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


class _Uploader:
    """Makes sure each file is at the source; prints progress for big files."""

    def __init__(self, store: Store, config: ModelsConfig, result: ModelsResult) -> None:
        self.store = store
        self.config = config
        self.result = result

    def ensure(self, app_dir: Path, model_file: ModelFile, sha256: str, pointer: bool = False) -> Location:
        """Return where the file is; raise StoreError if it is not known to be there.

        A Git LFS pointer is never uploaded: only the real file, uploaded by the user, will do.
        """
        location = self.store.location(sha256, PurePosixPath(model_file.path).name)
        upload = self.config.upload and not pointer
        head_error = ""
        try:
            if self.store.exists(location, model_file.bytes):
                self.result.present_files += 1
                log.detail(f"{model_file.path}: already at {location.shown}")
                return location
        except StoreError as exc:
            if not upload:
                raise
            # S3 answers 403, not 404, for a missing object when the key may not list the bucket.
            head_error = str(exc)
        if pointer:
            raise StoreError(f"it is a Git LFS pointer and the real file is not at {location.shown}")
        if not upload:
            raise StoreError(f"it is not at {location.shown}, and models.upload is not true")
        self._upload(app_dir, model_file, sha256, location, head_error)
        return location

    def _upload(self, app_dir: Path, model_file: ModelFile, sha256: str, location: Location, head_error: str) -> None:
        size = model_file.bytes
        started = time.monotonic()
        state = {"next": 0.25, "last": started}

        def progress(sent: int) -> None:
            if size < BIG_FILE or sent >= size:
                return
            now = time.monotonic()
            if sent / size >= state["next"] or now - state["last"] >= 10:
                log.detail(f"  {model_file.path}: {sent * 100 // size}% of {log.human_bytes(size)}")
                while state["next"] <= sent / size:
                    state["next"] += 0.25
                state["last"] = now

        log.detail(f"{model_file.path}: uploading {log.human_bytes(size)} to {location.shown}")
        try:
            self.store.put(location, app_dir / model_file.path, size, sha256, progress)
        except StoreError as exc:
            raise StoreError(f"{exc} (and before that: {head_error})" if head_error else str(exc)) from None
        elapsed = time.monotonic() - started
        log.detail(f"  uploaded in {log.seconds(elapsed)}")
        self.result.uploaded_files += 1
        self.result.uploaded_bytes += size


def _hub_models(ctx: FinishContext) -> list[Model]:
    """The Hugging Face step's blobs of at least models.min_size, one model per Hub repo: they go to
    the store like any model, and the snapshot links that stay in the slug find them again once the
    dyno has fetched them (before the app starts, so the app still needs no Hub)."""
    hub = ctx.results.hub
    if hub is None or hub.status != "baked":
        return []
    found: list[Model] = []
    for baked in hub.models:
        folder = PurePosixPath(baked.folder)
        blobs = ctx.build_dir / folder / "blobs"
        if not blobs.is_dir() or blobs.is_symlink():
            continue
        files = tuple(ModelFile(f"{folder}/blobs/{p.name}", p.stat().st_size) for p in sorted(blobs.iterdir())
                      if p.is_file() and not p.is_symlink() and p.stat().st_size >= ctx.config.models.min_size * MB)
        if files:
            found.append(Model(folder.as_posix(), "hf", f"the Hugging Face model {baked.id}", files))
    return found


def _onnx_models(ctx: FinishContext) -> list[Model]:
    """The ONNX files the runtime step wrote under .slugslim (which the scan does not look into), of at least
    models.min_size: they go to the store like any model, and the loader finds them where they were."""
    runtime = ctx.results.runtime
    if runtime is None or runtime.status != "onnx":
        return []
    found: list[Model] = []
    for line in runtime.models:
        for relative in (PurePosixPath(str(line.get(field) or "")) for field in ("converted", "weights")):
            target = ctx.build_dir / relative
            if relative.parts[:1] != (STATE_DIR,) or ".." in relative.parts or regular(target) is None:
                continue
            size = target.stat().st_size
            if size >= ctx.config.models.min_size * MB:
                found.append(Model(relative.as_posix(), "file", f"the ONNX model of {line['path']}",
                                   (ModelFile(relative.as_posix(), size),)))
    return found


def _log_found(found: Scan) -> None:
    for model in found.models:
        count = f", {len(model.files)} files" if len(model.files) > 1 else ""
        log.detail(f"{model.path} ({log.human_bytes(model.bytes)}, {model.reason}{count})")
    if found.small:
        total = sum(m.bytes for m in found.small)
        log.detail(
            f"{len(found.small)} smaller model file(s) ({log.human_bytes(total)}) stay in the slug: "
            "they are below models.min_size"
        )
    if found.excluded:
        log.detail(f"Kept by models.exclude: {', '.join(m.path for m in found.excluded)}")


def _remove(app_dir: Path, model: Model) -> None:
    """Delete a model's files; it is at its source, so the slug can do without it."""
    for model_file in model.files:
        (app_dir / model_file.path).unlink()
    if model.kind == "savedmodel":
        # Empty directories left behind are harmless; the boot script recreates what it needs.
        shutil.rmtree(app_dir / model.path, ignore_errors=True)


def _write_boot_files(app_dir: Path, entries: list[Entry], config: ModelsConfig) -> None:
    manifest = app_dir / MANIFEST
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text(render_manifest(entries, config), encoding="utf-8")
    script = app_dir / PROFILE_SCRIPT
    script.parent.mkdir(exist_ok=True)
    if script.is_symlink():
        script.unlink()
    shutil.copyfile(BOOT_DIR / "slugslim-models.sh", script)
    script.chmod(0o755)


def _manifest_safe(path: str) -> bool:
    return bool(_SAFE_PATH.match(path)) and path == path.strip()


def run(ctx: FinishContext) -> ModelsResult:
    """The finish-phase step. Puts its result into ``ctx.results.models``."""
    config = ctx.config.models
    result = ModelsResult(enabled=config.enabled, source=config.source)
    ctx.results.models = snapshot(result)
    if not config.enabled:
        return result

    app_dir = ctx.build_dir
    found = scan(app_dir, config)
    if config.source:
        found.models = sorted([*found.models, *_hub_models(ctx), *_onnx_models(ctx)], key=lambda m: m.path)
    # A Git LFS pointer stands for its real file: with models.source, the dyno fetches that file instead.
    excluded = {m.path for m in found.excluded}
    pointers = {p.path: p for p in lfs.find(app_dir) if p.path not in excluded} if config.source else {}
    found.small = [m for m in found.small if m.path not in pointers]
    found.models = sorted([m for m in found.models if m.path not in pointers]
                          + [Model(p.path, "lfs", "Git LFS pointer", (ModelFile(p.path, p.size),))
                             for p in pointers.values()], key=lambda m: m.path)
    result.found = found.models
    result.small_files = sum(len(m.files) for m in found.small)
    if not found.models and not found.unsafe:
        ctx.results.models = snapshot(result)
        return result

    log.step("Taking models out of the slug")
    _log_found(found)
    for model, problem in found.unsafe:
        result.kept.append((model, problem))
        log.warning(words.model_not_a_regular_file(model.path, problem))
    if not found.models:
        ctx.results.models = snapshot(result)
        return result

    if not config.source:
        install_helper(app_dir)
        total = sum(m.bytes for m in found.models)
        result.kept.extend((m, "models.source is not set") for m in found.models)
        log.warning(words.models_without_a_source(len(found.models), total))
        ctx.results.models = snapshot(result)
        return result

    entries: list[Entry] = []
    failures: list[tuple[Model, str]] = []
    try:
        store = open_store(config.source, ctx.env)
    except StoreError as exc:
        failures = [(m, str(exc)) for m in found.models]
    else:
        uploader = _Uploader(store, config, result)
        for model in found.models:
            ctx.timeout(0)  # the budget: nothing is removed yet, so stopping here leaves the slug as it was
            unsafe = [f.path for f in model.files if not _manifest_safe(f.path)]
            if unsafe:
                failures.append((model, f"the path {unsafe[0]!r} has a quote, backslash or control character"))
                continue
            model_entries: list[Entry] = []
            try:
                for model_file in model.files:
                    pointer = pointers.get(model_file.path)
                    digest = pointer.sha256 if pointer else sha256_of(app_dir / model_file.path)
                    location = uploader.ensure(app_dir, model_file, digest, pointer is not None)
                    model_entries.append(Entry(model_file.path, model_file.bytes, digest, location.uri, model.path))
            except StoreError as exc:
                failures.append((model, str(exc)))
                continue
            entries.extend(model_entries)
            result.removed.append(model)

    if failures:
        result.kept.extend(failures)
        lines = "\n".join(f"  {m.path}: {why}" for m, why in failures)
        if config.strict:
            ctx.results.models = snapshot(result)
            raise ModelStoreError(log.redact(config.source) if config.source.startswith("http") else config.source,
                                  lines)
        log.warning(words.models_not_at_the_source(len(failures), lines))

    # The helper ships whenever the app has models, so code that calls slugslim_models.path()
    # imports on every build, whether or not a model was taken out this time.
    install_helper(app_dir)
    if entries:
        # The boot files first: a model leaves the slug only once the dyno knows how to fetch it back.
        _write_boot_files(app_dir, entries, config)
    for model in result.removed:
        _remove(app_dir, model)
    if entries:
        result.manifest = MANIFEST.as_posix()
        log.detail(
            f"Took {len(result.removed)} model(s) out of the slug ({log.human_bytes(result.removed_bytes)}); "
            f"{PROFILE_SCRIPT.as_posix()} fetches them at dyno boot"
        )
    ctx.results.models = snapshot(result)
    return result
