"""``runtime.engine: litert`` or ``onnx``: serve the app's models with a small runtime instead of its framework.

LiteRT (40 MB) replaces TensorFlow (600 MB); ONNX Runtime with ``tokenizers`` (about 60 MB) replaces
PyTorch (1.5 GB with sentence-transformers and transformers). One step for both (``engines``), after the
fix-up and the Hugging Face step (whose baked models it converts) and before the prune (which then
prunes the engine, not a framework about to go, and verifies on it):

1. plan (``slugslim.finish.runtime.plan``): the models, the import gate, the closure;
2. install the engine's packages from slugslim's hashed lock (``tools.install``; ``runtime.litert_version``
   or ``runtime.onnxruntime_version`` asks for another version), and for ONNX the export tools into a
   build-only directory (``tools.export_tools``), never into site-packages;
3. convert every model with the app's framework (``litert_tool.py`` or ``onnx_tool.py convert``), and
   record the framework's outputs on the samples;
4. boot the Procfile's web process on the framework, to measure it;
5. write ``.slugslim/runtime.json`` (which model is which converted file) and the loader
   ``slugslim_models.py``, and compare every converted model, served through that loader, with the
   framework's outputs (``check``, against ``runtime.tolerance``);
6. boot the web process on the engine: it must answer;
7. remove the framework and what only it needs through the prune engine (quarantine, import check and
   boot on the engine, bisect, rollback), keeping its files in slugslim's cache for the next build
   (``slugslim.core.stash``);
8. delete the original weights: they are in the app's repository or the Hub, and the slug no longer
   needs them.

It fails open: whatever stops it (a model that does not convert or differs too much, a boot that
does not answer, pip, a bug) puts everything back and the app keeps its framework, with a warning
that names the model or the reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from slugslim.appcheck import boot_check, unused
from slugslim.core import engines, log, shipped, stash, words
from slugslim.core.context import FinishContext
from slugslim.core.engines import Engine
from slugslim.core.errors import NotShipped
from slugslim.core.installed import read_dists, requirers
from slugslim.core.results import RuntimeResult, snapshot
from slugslim.core.state import STATE_DIR
from slugslim.finish.runtime import plan, steps, tools
from slugslim.finish.runtime.steps import Undo
from slugslim.finish.runtime.tools import run_tool, uninstall

MANIFEST = Path(STATE_DIR) / "runtime.json"
ONNX_DIR = Path(STATE_DIR) / "onnx"  # where onnx_tool.py writes the .onnx files and their tokenizers
SAMPLE_COUNT = 32  # random inputs when runtime.samples is not set: enough that one near-tie is 3%
TOOL_TIMEOUT = 900.0
EXPORT_TOOLS = "onnxscript"  # and onnx, which it requires: torch.onnx's exporters need them


def run(ctx: FinishContext) -> RuntimeResult:
    """The finish-phase step. Puts its result into ``ctx.results.runtime``."""
    config = ctx.config.runtime
    result = RuntimeResult(engine=config.engine if config.enabled else "tensorflow")
    ctx.results.runtime = snapshot(result)
    engine = engines.chosen(ctx.config)
    if engine is None:
        return result
    log.step(f"Serving the models with {engine.label} instead of {engine.framework} "
             f"(runtime.engine: {engine.name})")
    planned = plan.plan(ctx.build_dir, ctx.site_packages, ctx.config, engine, ctx.results.hub)
    result.plan = planned.to_json()
    if not planned.models and not planned.unsafe:
        result.status, result.reason = "nothing", planned.verdict
        log.detail(f"Nothing to do: {planned.verdict}. The app keeps the runtime it installed.")
        ctx.results.runtime = snapshot(result)
        return result
    for model in planned.models:
        log.detail(f"{model.key} ({log.human_bytes(model.bytes)}, {model.reason})")
    undo = Undo(added=_earlier_installs(ctx))
    work = Path(tempfile.mkdtemp(prefix=f"slugslim-{engine.name}-work-"))
    try:
        if planned.verdict:
            raise NotShipped(_verdict_text(planned))
        _ship(ctx, engine, planned, result, undo, work)
    except NotShipped as exc:
        _roll_back(ctx, undo)
        result.status, result.reason = engine.kept, str(exc)
        log.warning(words.framework_kept(engine.framework, engine.name, str(exc)))
    except BaseException:
        _roll_back(ctx, undo)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ctx.results.runtime = snapshot(result)
    return result


def _earlier_installs(ctx: FinishContext) -> list[str]:
    """What an earlier build of this step installed, restored from heroku/python's cache: ours to take out."""
    if ctx.cache_dir is None or ctx.site_packages is None:
        return []
    present, declared = read_dists(ctx.site_packages), {r.name for r in unused.top_level_requirements(ctx.build_dir)}
    ours = {name for name in stash.earlier_installs(ctx.cache_dir) if name in present and name not in declared}
    return sorted(name for name in ours if not requirers(present, name, ours))  # nothing else needs them


def _verdict_text(planned: plan.RuntimePlan) -> str:
    engine = planned.engine
    if planned.imports:
        listed = "\n".join(f"  {path}: import {', '.join(names)}" for path, names in sorted(planned.imports.items()))
        how = ("'from slugslim_models import load_model' instead, which gives LiteRT on Heroku\nand Keras on your "
               "machine" if engine is engines.LITERT else
               "'from slugslim_models import SentenceEncoder, pipeline, load_model' instead,\nwhich give ONNX "
               "Runtime on Heroku and sentence-transformers, transformers or torch on your machine")
        return (f"these files of your app import {engine.framework}, which {engine.label} replaces:\n{listed}\n"
                f"Load the models with {how}.")
    return planned.verdict + "."


def _ship(ctx: FinishContext, engine: Engine, planned: plan.RuntimePlan, result: RuntimeResult, undo: Undo,
          work: Path) -> None:
    config = ctx.config.runtime
    if config.samples and not (ctx.build_dir / config.samples).is_file():
        raise NotShipped(f"runtime.samples names {config.samples}, which is not in the app.")
    _install(ctx, engine, result, undo)
    env = _export_tools(ctx, result, work) if engine is engines.ONNX else None
    if engine is engines.ONNX and not (ctx.build_dir / ONNX_DIR).exists():
        undo.written.append(ctx.build_dir / ONNX_DIR)  # all of it goes, if the step does not ship
    started = time.monotonic()
    converted = run_tool(ctx, engine.name, "convert", _convert_request(ctx, engine, planned, work),
                         ctx.timeout(TOOL_TIMEOUT), env)
    result.timings["convert"] = time.monotonic() - started
    result.python = str(converted.get("python") or "")
    by_key = {str(m.get("key") or m.get("path")): m for m in converted["models"] if isinstance(m, dict)}
    undo.written += steps.written(ctx, engine, by_key.values())
    result.models = [steps.model_line(engine, m, by_key.get(m.key, {})) for m in planned.models]
    steps.log_converted(engine, result.models)

    # The loader first: the app imports it on the framework too (it falls back without runtime.json).
    if not shipped.install_helper(ctx.build_dir):
        raise NotShipped("the app has a slugslim_models.py or slugslim_onnx.py of its own, so slugslim cannot ship "
                         "its loader.")
    command = boot_check.web_command(ctx.build_dir) if ctx.config.verify.boot != "false" else ""
    framework_boot = steps.boot(ctx, command, engine.framework, engine.kept, result) if command else None
    manifest = {"engine": engine.name, "models": {m.key: by_key[m.key].get("entry" if engine is engines.ONNX
                                                                            else "loader", {})
                                                  for m in planned.models}}
    (ctx.build_dir / STATE_DIR).mkdir(exist_ok=True)
    (ctx.build_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    undo.written.append(ctx.build_dir / MANIFEST)
    steps.check(ctx, engine, result, by_key)

    if framework_boot is not None:
        engine_boot = steps.boot(ctx, command, engine.label, engine.name, result)
        if framework_boot.ok and not engine_boot.ok:
            raise NotShipped(f"the web process does not answer on {engine.label}: {engine_boot.failure}")
    steps.remove_framework(ctx, engine, result, undo)
    steps.remove_originals(ctx, engine, planned.models, result)
    result.status = engine.name


def _install(ctx: FinishContext, engine: Engine, result: RuntimeResult, undo: Undo) -> None:
    """The engine's packages from slugslim's lock; its version setting for the first of them."""
    started = time.monotonic()
    version = str(getattr(ctx.config.runtime, engine.version_key))
    if version and version != tools.locked_version(engine.package, python=tools.app_python(ctx)):
        log.detail(f"runtime.{engine.version_key} asks for {engine.package} {version}: it comes from the package "
                   "index,\nnot from slugslim's lock, so its files are not checked against known hashes")
    for package in engine.packages:
        got = tools.install(ctx, package, ctx.timeout(600), version=version if package == engine.package else "",
                            ours=undo.added)
        undo.added = sorted({*got.added, *undo.added})
        result.installed = sorted({*result.installed, *got.added})
        if package == engine.package:
            result.version = got.version
        checked = " from slugslim's lock, its hashes checked" if got.locked else ""
        log.detail(f"Installed {package} {got.version}{checked}"
                   + (f" ({', '.join(got.added)})" if got.added else " (it was installed already)"))
    if ctx.cache_dir is not None:
        stash.remember_installs(ctx.cache_dir, undo.added)
    result.timings["install"] = time.monotonic() - started


def _export_tools(ctx: FinishContext, result: RuntimeResult, work: Path) -> dict[str, str]:
    """onnxscript and onnx, for torch's exporters, from slugslim's lock of them into a build-only directory
    (kept in the build cache for the next build): the conversion's path, never the app's site-packages."""
    started = time.monotonic()
    directory = tools.export_tools_dir(ctx, work)
    got = tools.install(ctx, EXPORT_TOOLS, ctx.timeout(600), lock=tools.EXPORT_LOCK, target=directory)
    result.timings["export_tools"] = time.monotonic() - started
    log.detail(f"Export tools for the conversion, outside the slug: {', '.join(got.added) or 'none needed'}")
    return tools.export_tools_env(ctx, directory)


def _convert_request(ctx: FinishContext, engine: Engine, planned: plan.RuntimePlan, work: Path) -> dict[str, Any]:
    config = ctx.config.runtime
    request: dict[str, Any] = {"build_dir": str(ctx.build_dir), "work_dir": str(work), "quantize": config.quantize_mode,
                               "samples": config.samples, "sample_count": SAMPLE_COUNT, "seed": 0}
    if engine is engines.LITERT:
        request.update(custom_objects=config.custom_objects,
                       models=[{"path": m.key, "kind": m.kind} for m in planned.models])
    else:
        request.update(out_dir=ONNX_DIR.as_posix(), models=[
            {"key": m.key, "kind": m.kind, "source": str(ctx.build_dir / m.path)} for m in planned.models])
    return request


def _roll_back(ctx: FinishContext, undo: Undo) -> None:
    for path in reversed(undo.written):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    if undo.added:
        uninstall(ctx, undo.added, 600)
    if undo.stashed and ctx.cache_dir is not None:
        stash.drop(ctx.cache_dir)
