"""The parts of the runtime step that read the converter's answers and change the build: what the
converter wrote, the check through the shipped loader, the boots, the removal of the framework
through the prune engine, and of the original weights. ``runtime`` runs them in order."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from slugslim.appcheck import boot_check
from slugslim.core import engines, installed, log, stash
from slugslim.core.context import FinishContext
from slugslim.core.engines import Engine
from slugslim.core.errors import NotShipped
from slugslim.core.plan import Plan
from slugslim.core.results import RuntimeResult
from slugslim.finish.runtime import plan
from slugslim.finish.runtime.tools import run_tool
from slugslim.finish.runtime.torchmodels import Candidate
from slugslim.removal.engine import Engine as Removal
from slugslim.removal.engine import quarantine_location

TOOL_TIMEOUT = 900.0


@dataclass
class Undo:
    """What the step changed so far, for putting it back."""

    written: list[Path] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    stashed: bool = False


def _output_key(engine: Engine) -> str:
    return "tflite" if engine is engines.LITERT else "onnx"


def written(ctx: FinishContext, engine: Engine, converted: Iterable[dict[str, Any]]) -> list[Path]:
    """What the converter wrote into the build: each converted file (for ONNX, its folder with the
    tokenizer), but never a path outside the build or one the app had."""
    out: list[Path] = []
    for model in converted:
        relative = str(model.get(_output_key(engine)) or "")
        if not relative:
            continue
        target = ctx.build_dir / relative
        if engine is engines.ONNX:
            target = target.parent
        if target.resolve().is_relative_to(ctx.build_dir.resolve()) and target != ctx.build_dir:
            out.append(target)
    return out


def model_line(engine: Engine, model: Candidate, converted: dict[str, Any]) -> dict[str, Any]:
    key = _output_key(engine)
    ok = bool(converted.get("ok"))
    return {"path": model.key, "kind": model.kind, "ok": ok,
            "reason": str(converted.get("reason") or ("" if converted else "not in the converter's result")),
            "error": str(converted.get("error") or "")[:500], "converted": str(converted.get(key) or ""),
            "weights": str(converted.get("entry", {}).get("onnx_data") or ""),
            "original_bytes": int(converted.get("original_bytes") or model.bytes),
            "converted_bytes": int(converted.get(f"{key}_bytes") or 0),
            "quantize": str(converted.get("quantize") or converted.get("entry", {}).get("quantize") or ""),
            "samples": str(converted.get("samples") or ""), "convert_seconds": float(converted.get("seconds") or 0)}


def log_converted(engine: Engine, lines: list[dict[str, Any]]) -> None:
    for line in lines:
        if line["ok"]:
            log.detail(f"Converted {line['path']} → {line['converted']} ({log.human_bytes(line['original_bytes'])} → "
                       f"{log.human_bytes(line['converted_bytes'])}, {line['quantize'] or 'float32'}, "
                       f"{log.seconds(line['convert_seconds'])})")
    failed = [line for line in lines if not line["ok"]]
    if failed:
        raise NotShipped("these models did not convert:\n" + "\n".join(
            f"  {line['path']}: {line['reason'] or 'failed'}{': ' + line['error'] if line['error'] else ''}"
            for line in failed))


def check(ctx: FinishContext, engine: Engine, result: RuntimeResult, by_key: dict[str, dict[str, Any]]) -> None:
    """Every converted model, served by the shipped loader, against the framework's outputs."""
    tolerance = ctx.config.runtime.tolerance
    started = time.monotonic()
    checked = run_tool(ctx, engine.name, "check", {
        "build_dir": str(ctx.build_dir), "tolerance": tolerance.to_json(),
        "models": [{"path": line["path"], "key": line["path"], "reference": by_key[line["path"]].get("reference", "")}
                   for line in result.models]}, ctx.timeout(TOOL_TIMEOUT))
    result.timings["check"] = time.monotonic() - started
    answers = {str(m.get("key") or m.get("path")): m for m in checked["models"] if isinstance(m, dict)}
    bad = []
    for line in result.models:
        answer = answers.get(line["path"], {})
        line.update({key: answer.get(key) for key in ("max_abs", "max_rel", "top1", "classifier", "cosine")},
                    check_seconds=float(answer.get("seconds") or 0), verified=bool(answer.get("ok")))
        top1 = f", top-1 agreement {answer['top1']:.1%}" if isinstance(answer.get("top1"), (int, float)) else ""
        cosine = f", cosine {answer['cosine']:.5f}" if isinstance(answer.get("cosine"), (int, float)) else ""
        if answer.get("ok"):
            log.detail(f"Verified {line['path']} on {engine.label}: max abs difference {answer.get('max_abs') or 0:.2g}"
                       f"{cosine}{top1} ({line['samples'] or 'samples'})")
        else:
            why = answer.get("error") or (f"max abs difference {answer.get('max_abs')}{cosine}{top1}" if answer else
                                          "the check did not report it")
            bad.append(f"  {line['path']}: {why} (runtime.tolerance: max_abs {tolerance.max_abs}, "
                       f"top1 {tolerance.top1}{f', cosine {tolerance.cosine}' if engine is engines.ONNX else ''})")
    if bad:
        raise NotShipped("these converted models do not match their originals closely enough:\n" + "\n".join(bad))


def boot(ctx: FinishContext, command: str, label: str, key: str, result: RuntimeResult) -> boot_check.BootResult:
    assert ctx.site_packages is not None
    verify = ctx.config.verify
    booted = boot_check.boot(ctx.build_dir, command, ctx.env, ctx.site_packages,
                             ctx.timeout(verify.boot_timeout), verify.paths)
    result.timings[f"boot_{key}"] = booted.seconds
    if booted.ok:
        result.memory[key] = booted.rss
        result.memory["measured_by"] = "the booted web process"
        log.detail(f"The web process answered on {label} in {log.seconds(booted.seconds)}, "
                   f"{log.human_bytes(booted.rss)} resident")
    else:
        log.detail(f"The web process did not answer on {label}: {booted.failure}")
    return booted


def remove_framework(ctx: FinishContext, engine: Engine, result: RuntimeResult, undo: Undo) -> None:
    """The framework and what only it needs, through the prune engine: verified, bisected, put back."""
    site = ctx.site_packages
    assert site is not None
    scanned = installed.scan(site)
    names = plan.closure(scanned, ctx.build_dir, engine)
    removals = plan.removals(scanned, names, engine)
    if not removals:
        return
    started = time.monotonic()
    if ctx.cache_dir is not None:
        prefix = site.parent.parent.parent
        record = {"python": result.python, "distributions": sorted(names), "framework": engine.framework,
                  "engine": engine.label,
                  "site_packages": site.relative_to(prefix).as_posix()}
        undo.stashed = True
        result.cache = {"bytes": stash.stash(ctx.cache_dir, prefix, site, removals, record),
                        "path": str(ctx.cache_dir / stash.STASH)}
        result.timings["cache"] = time.monotonic() - started
    prune_box = quarantine_location(ctx.build_dir, site)
    # bytecode: keep, as the prune's own rules are not applied here: only the plan below is.
    remover = Removal(site_packages=site, config=replace(ctx.config, prune=replace(ctx.config.prune, bytecode="keep")),
                      python=ctx.python, env=ctx.python_env(), cwd=ctx.build_dir,
                      quarantine_dir=prune_box.with_name(f"{prune_box.name}-runtime"), app_dir=ctx.build_dir,
                      config_vars=ctx.env, deadline=ctx.deadline,
                      plan_with=lambda tree: Plan(root=str(site), removals=removals), unchecked=frozenset(names))
    log.detail(f"Removing {', '.join(sorted(names)[:6])}{'…' if len(names) > 6 else ''} ({len(names)} distributions)")
    outcome = remover.run()
    result.timings["remove"] = time.monotonic() - started
    result.removal = {"status": outcome.status, "culprits": outcome.culprits, "verify_runs": outcome.verify_runs}
    if outcome.status == "unpruned":
        problems = [f"  {p}" for c in outcome.culprits for p in c.get("problems", [])[:3]]
        raise NotShipped(f"removing {engine.framework} broke the app:\n"
                         + ("\n".join(problems) or "  (see the warning above)"))
    result.removed[engine.kept] = outcome.bytes
    if outcome.web_rss:
        result.memory[engine.name] = outcome.web_rss  # the web process as it ships: without the framework


def remove_originals(ctx: FinishContext, engine: Engine, converted: list[Candidate], result: RuntimeResult) -> None:
    """The weights the converted files replace: in the app's repository (or the Hub) still, not in the slug."""
    total = 0
    root = ctx.build_dir.resolve()
    for model in converted:
        for relative in model.weights:
            target = ctx.build_dir / relative
            if not target.parent.resolve().is_relative_to(root):
                continue
            if target.is_dir() and not target.is_symlink():
                total += sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink())
                shutil.rmtree(target)
            elif target.is_symlink():
                target.unlink()
            elif target.is_file():
                total += target.stat().st_size
                target.unlink()
    result.removed["models"] = total
    if total:
        where = "the .tflite files" if engine is engines.LITERT else "the .onnx files"
        log.detail(f"Removed the original weights from the slug ({log.human_bytes(total)}): the app loads {where};\n"
                   "the originals stay in your app's repository or on the Hugging Face Hub")
