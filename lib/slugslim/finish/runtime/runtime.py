"""``runtime.engine: litert``: serve the app's models with LiteRT (40 MB) instead of TensorFlow (600 MB).

The finish step, after the fix-up and before the prune (which then prunes ai-edge-litert, not a
TensorFlow about to go, and verifies on LiteRT):

1. plan (``slugslim.finish.runtime.plan``): the Keras and SavedModel models, the import gate, the closure;
2. convert every model with the app's TensorFlow (``litert_tool.py convert``), next to the original;
3. boot the Procfile's web process on TensorFlow, to measure it;
4. install ai-edge-litert from slugslim's hashed lock (``tools.install``; ``runtime.litert_version``
   asks for another version), write ``.slugslim/runtime.json`` (which model is which ``.tflite``) and
   the loader ``slugslim_models.py``, and compare every converted model with its original on the
   same inputs (``litert_tool.py check``, against ``runtime.tolerance``);
5. boot the web process on LiteRT: it must answer;
6. remove TensorFlow, Keras and what only they need, through the prune engine (quarantine, import
   check and boot on LiteRT, bisect, rollback), keeping their files in slugslim's cache for the
   next build (``slugslim.core.stash``);
7. delete the original models: they are in the app's repository, and the slug no longer needs them.

It fails open: whatever stops it (a model that does not convert or differs too much, a boot that
does not answer, pip, a bug) puts everything back and the app keeps TensorFlow, with a warning
that names the model or the reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from slugslim.appcheck import boot_check, unused
from slugslim.core import installed, log, shipped, stash, words
from slugslim.core.context import FinishContext
from slugslim.core.errors import NotShipped
from slugslim.core.installed import read_dists, requirers
from slugslim.core.modelscan import Model
from slugslim.core.plan import Plan
from slugslim.core.results import RuntimeResult, snapshot
from slugslim.core.state import STATE_DIR
from slugslim.finish.runtime import plan, tools
from slugslim.finish.runtime.tools import run_tool, uninstall
from slugslim.removal.engine import Engine, quarantine_location

MANIFEST = Path(STATE_DIR) / "runtime.json"
SAMPLE_COUNT = 32  # random inputs when runtime.samples is not set: enough that one near-tie is 3%
TOOL_TIMEOUT = 900.0


@dataclass
class _Undo:
    """What the step changed so far, for putting it back."""

    written: list[Path] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    stashed: bool = False


def run(ctx: FinishContext) -> RuntimeResult:
    """The finish-phase step. Puts its result into ``ctx.results.runtime``."""
    config = ctx.config.runtime
    result = RuntimeResult(engine=config.engine if config.enabled else "tensorflow")
    ctx.results.runtime = snapshot(result)
    if not config.litert:
        return result
    log.step("Serving the models with LiteRT instead of TensorFlow (runtime.engine: litert)")
    planned = plan.plan(ctx.build_dir, ctx.site_packages, ctx.config)
    result.plan = planned.to_json()
    if not planned.models:
        result.status, result.reason = "nothing", planned.verdict
        log.detail(f"Nothing to do: {planned.verdict}. The app keeps the runtime it installed.")
        ctx.results.runtime = snapshot(result)
        return result
    for model in planned.models:
        log.detail(f"{model.path} ({log.human_bytes(model.bytes)}, {model.reason})")
    undo = _Undo(added=_earlier_installs(ctx))
    work = Path(tempfile.mkdtemp(prefix="slugslim-litert-work-"))
    try:
        if planned.verdict:
            raise NotShipped(_verdict_text(planned))
        _ship(ctx, planned, result, undo, work)
    except NotShipped as exc:
        _roll_back(ctx, undo)
        result.status, result.reason = "tensorflow", str(exc)
        log.warning(words.tensorflow_kept(str(exc)))
    except BaseException:
        _roll_back(ctx, undo)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ctx.results.runtime = snapshot(result)
    return result


def _earlier_installs(ctx: FinishContext) -> list[str]:
    """What an earlier LiteRT build installed, restored from heroku/python's cache: ours to take out."""
    if ctx.cache_dir is None or ctx.site_packages is None:
        return []
    present, declared = read_dists(ctx.site_packages), {r.name for r in unused.top_level_requirements(ctx.build_dir)}
    ours = {name for name in stash.earlier_installs(ctx.cache_dir) if name in present and name not in declared}
    return sorted(name for name in ours if not requirers(present, name, ours))  # nothing else needs them


def _verdict_text(planned: plan.RuntimePlan) -> str:
    if planned.imports:
        listed = "\n".join(f"  {path}: import {', '.join(names)}" for path, names in sorted(planned.imports.items()))
        return ("these files of your app import TensorFlow or Keras, which LiteRT replaces:\n" + listed + "\n"
                "Load the models with 'from slugslim_models import load_model' instead, which gives LiteRT on "
                "Heroku\nand Keras on your machine.")
    return planned.verdict + "."


def _ship(ctx: FinishContext, planned: plan.RuntimePlan, result: RuntimeResult, undo: _Undo,
          work: Path) -> None:
    config = ctx.config.runtime
    if config.samples and not (ctx.build_dir / config.samples).is_file():
        raise NotShipped(f"runtime.samples names {config.samples}, which is not in the app.")
    started = time.monotonic()
    converted = run_tool(ctx, "convert", {
        "build_dir": str(ctx.build_dir), "work_dir": str(work), "quantize": config.quantize,
        "samples": config.samples, "sample_count": SAMPLE_COUNT, "seed": 0, "custom_objects": config.custom_objects,
        "models": [{"path": m.path, "kind": plan.kind_of(m)} for m in planned.models]},
        ctx.timeout(TOOL_TIMEOUT))
    result.timings["convert"] = time.monotonic() - started
    result.python = str(converted.get("python") or "")
    by_path = {str(m.get("path")): m for m in converted["models"] if isinstance(m, dict)}
    undo.written += [ctx.build_dir / str(m["tflite"]) for m in by_path.values() if m.get("tflite")]
    result.models = [_model_line(m, by_path.get(m.path, {})) for m in planned.models]
    failed = [line for line in result.models if not line["ok"]]
    for line in result.models:
        if line["ok"]:
            log.detail(f"Converted {line['path']} → {line['tflite']} ({log.human_bytes(line['original_bytes'])} → "
                       f"{log.human_bytes(line['tflite_bytes'])}, {line['quantize']}, "
                       f"{log.seconds(line['convert_seconds'])})")
    if failed:
        raise NotShipped("these models did not convert:\n" + "\n".join(
            f"  {line['path']}: {line['reason'] or 'failed'}{': ' + line['error'] if line['error'] else ''}"
            for line in failed))

    # The loader first: the app imports it on TensorFlow too (it falls back to Keras without runtime.json).
    if not shipped.install_helper(ctx.build_dir):
        raise NotShipped("the app has a slugslim_models.py of its own, so slugslim cannot ship its loader.")
    command = boot_check.web_command(ctx.build_dir) if ctx.config.verify.boot != "false" else ""
    tf_boot = _boot(ctx, command, "TensorFlow", result) if command else None

    started = time.monotonic()
    if config.litert_version and config.litert_version != tools.locked_version(plan.LITERT):
        log.detail(f"runtime.litert_version asks for {plan.LITERT} {config.litert_version}: it comes from the "
                   "package index,\nnot from slugslim's lock, so its files are not checked against known hashes")
    got = tools.install(ctx, plan.LITERT, ctx.timeout(600), version=config.litert_version, ours=undo.added)
    added, result.litert = got.added, got.version
    undo.added = sorted({*added, *undo.added})
    if ctx.cache_dir is not None:
        stash.remember_installs(ctx.cache_dir, undo.added)
    result.installed = added
    result.timings["install"] = time.monotonic() - started
    checked = " from slugslim's lock, its hashes checked" if got.locked else ""
    log.detail(f"Installed {plan.LITERT} {result.litert}{checked}"
               + (f" ({', '.join(added)})" if added else " (it was installed already)"))
    manifest = {"engine": "litert", "models": {m.path: by_path[m.path].get("loader", {}) for m in planned.models}}
    (ctx.build_dir / STATE_DIR).mkdir(exist_ok=True)
    (ctx.build_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    undo.written.append(ctx.build_dir / MANIFEST)
    _check(ctx, planned, result, by_path)

    if tf_boot is not None:
        litert_boot = _boot(ctx, command, "LiteRT", result)
        if tf_boot.ok and not litert_boot.ok:
            raise NotShipped(f"the web process does not answer on LiteRT: {litert_boot.failure}")
    _remove_tensorflow(ctx, result, undo)
    _remove_originals(ctx, planned.models, result)
    result.status = "litert"


def _model_line(model: Model, converted: dict[str, Any]) -> dict[str, Any]:
    ok = bool(converted.get("ok"))
    return {"path": model.path, "kind": plan.kind_of(model), "ok": ok,
            "reason": str(converted.get("reason") or ("" if converted else "not in the converter's result")),
            "error": str(converted.get("error") or "")[:500], "tflite": str(converted.get("tflite") or ""),
            "original_bytes": int(converted.get("original_bytes") or model.bytes),
            "tflite_bytes": int(converted.get("tflite_bytes") or 0), "quantize": str(converted.get("quantize") or ""),
            "samples": str(converted.get("samples") or ""), "convert_seconds": float(converted.get("seconds") or 0)}


def _check(ctx: FinishContext, planned: plan.RuntimePlan, result: RuntimeResult,
           by_path: dict[str, dict[str, Any]]) -> None:
    tolerance = ctx.config.runtime.tolerance
    started = time.monotonic()
    checked = run_tool(ctx, "check", {
        "build_dir": str(ctx.build_dir), "tolerance": tolerance.to_json(),
        "models": [{"path": m.path, "reference": by_path[m.path].get("reference", "")} for m in planned.models]},
        ctx.timeout(TOOL_TIMEOUT))
    result.timings["check"] = time.monotonic() - started
    answers = {str(m.get("path")): m for m in checked["models"] if isinstance(m, dict)}
    result.litert = str(checked.get("litert") or result.litert)
    bad = []
    for line in result.models:
        answer = answers.get(line["path"], {})
        line.update({key: answer.get(key) for key in ("max_abs", "max_rel", "top1", "classifier")},
                    check_seconds=float(answer.get("seconds") or 0), verified=bool(answer.get("ok")))
        top1 = f", top-1 agreement {answer['top1']:.1%}" if isinstance(answer.get("top1"), (int, float)) else ""
        if answer.get("ok"):
            log.detail(f"Verified {line['path']} on LiteRT: max abs difference {answer.get('max_abs', 0):.2g}, "
                       f"max relative {answer.get('max_rel', 0):.2g}{top1} ({line['samples'] or 'samples'})")
        else:
            why = answer.get("error") or (f"max abs difference {answer.get('max_abs')}{top1}" if answer else
                                          "the check did not report it")
            bad.append(f"  {line['path']}: {why} (runtime.tolerance: max_abs {tolerance.max_abs}, "
                       f"top1 {tolerance.top1})")
    if bad:
        raise NotShipped("these converted models do not match their originals closely enough:\n" + "\n".join(bad))


def _boot(ctx: FinishContext, command: str, engine: str, result: RuntimeResult) -> boot_check.BootResult:
    assert ctx.site_packages is not None
    verify = ctx.config.verify
    booted = boot_check.boot(ctx.build_dir, command, ctx.env, ctx.site_packages,
                             ctx.timeout(verify.boot_timeout), verify.paths)
    key = engine.lower()
    result.timings[f"boot_{key}"] = booted.seconds
    if booted.ok:
        result.memory[key] = booted.rss
        result.memory["measured_by"] = "the booted web process"
        log.detail(f"The web process answered on {engine} in {log.seconds(booted.seconds)}, "
                   f"{log.human_bytes(booted.rss)} resident")
    else:
        log.detail(f"The web process did not answer on {engine}: {booted.failure}")
    return booted


def _remove_tensorflow(ctx: FinishContext, result: RuntimeResult, undo: _Undo) -> None:
    """TensorFlow, Keras and what only they need, through the prune engine: verified, bisected, put back."""
    site = ctx.site_packages
    assert site is not None
    scanned = installed.scan(site)
    names = plan.closure(scanned, ctx.build_dir)
    removals = plan.removals(scanned, names)
    if not removals:
        return
    started = time.monotonic()
    if ctx.cache_dir is not None:
        prefix = site.parent.parent.parent
        record = {"python": result.python, "distributions": sorted(names),
                  "site_packages": site.relative_to(prefix).as_posix()}
        undo.stashed = True
        result.cache = {"bytes": stash.stash(ctx.cache_dir, prefix, site, removals, record),
                        "path": str(ctx.cache_dir / stash.STASH)}
        result.timings["cache"] = time.monotonic() - started
    prune_box = quarantine_location(ctx.build_dir, site)
    # bytecode: keep, as the prune's own rules are not applied here: only the plan below is.
    engine = Engine(site_packages=site, config=replace(ctx.config, prune=replace(ctx.config.prune, bytecode="keep")),
                    python=ctx.python, env=ctx.python_env(), cwd=ctx.build_dir,
                    quarantine_dir=prune_box.with_name(f"{prune_box.name}-runtime"), app_dir=ctx.build_dir,
                    config_vars=ctx.env, deadline=ctx.deadline,
                    plan_with=lambda tree: Plan(root=str(site), removals=removals), unchecked=frozenset(names))
    log.detail(f"Removing {', '.join(sorted(names)[:6])}{'…' if len(names) > 6 else ''} ({len(names)} distributions)")
    outcome = engine.run()
    result.timings["remove"] = time.monotonic() - started
    result.removal = {"status": outcome.status, "culprits": outcome.culprits, "verify_runs": outcome.verify_runs}
    if outcome.status == "unpruned":
        problems = [f"  {p}" for c in outcome.culprits for p in c.get("problems", [])[:3]]
        raise NotShipped("removing TensorFlow broke the app:\n" + ("\n".join(problems) or "  (see the warning above)"))
    result.removed["tensorflow"] = outcome.bytes
    if outcome.web_rss:
        result.memory["litert"] = outcome.web_rss  # the web process as it ships: without TensorFlow


def _remove_originals(ctx: FinishContext, converted: list[Model], result: RuntimeResult) -> None:
    total = 0
    for model in converted:
        target = ctx.build_dir / model.path
        if model.kind == "savedmodel" and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.is_file() and not target.is_symlink():
            target.unlink()
        else:
            continue
        total += model.bytes
    result.removed["models"] = total
    if total:
        log.detail(f"Removed the original models from the slug ({log.human_bytes(total)}): the app loads the "
                   ".tflite files;\nthe originals stay in your app's repository")


def _roll_back(ctx: FinishContext, undo: _Undo) -> None:
    for path in reversed(undo.written):
        if path.is_symlink() or path.is_file():
            path.unlink()
    if undo.added:
        uninstall(ctx, undo.added, 600)
    if undo.stashed and ctx.cache_dir is not None:
        stash.drop(ctx.cache_dir)
