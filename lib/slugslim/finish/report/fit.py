"""The part of the report about whether the app will run on a dyno, not how big it is.

It reads what the prepare phase recorded (the app's Python, the preflight, the Git LFS pointers)
and what the finish phase measured (the memory, models and runtime steps' results), and gives the
``python``, ``preflight``, ``memory``, ``lfs``, ``runtime``, ``hf`` and ``leftovers`` sections of
report.json and their lines in the build log.
"""

from __future__ import annotations

from typing import Any

from slugslim.core import log
from slugslim.core.engines import ENGINES
from slugslim.core.results import Results
from slugslim.core.state import PrepareState


def sections(state: PrepareState, results: Results) -> dict[str, Any]:
    """The report.json sections, each a plain copy of what its step recorded (missing steps are empty)."""
    fetched = {m.path for m in results.models.removed} if results.models else set()
    pointers = [{**p, "fetched_at_boot": p.get("path") in fetched}
                for p in state.lfs]
    return {
        "python": state.app_python,
        "preflight": state.preflight,
        "memory": results.memory.to_json() if results.memory else {},
        "lfs": pointers,
        "runtime": results.runtime.to_json() if results.runtime else {},
        "hf": _hub(results),
        "leftovers": results.leftovers.to_json() if results.leftovers else {},
    }


def _hub(results: Results) -> dict[str, Any]:
    """The Hugging Face step's section, with where each model went once the models step ran."""
    if results.hub is None:
        return {}
    section = results.hub.to_json()
    stored = {m.path for m in results.models.removed} if results.models else set()
    for model, entry in zip(results.hub.models, section["models"], strict=True):
        if model.folder in stored:
            entry["where"] = "store"
    return section


def render(report: dict[str, Any]) -> None:
    python, preflight, memory = report["python"], report["preflight"], report["memory"]
    if python:
        chosen = " (written by slugslim, see above)" if preflight.get("chosen") else ""
        log.detail(f"Python: {python.get('version')}, from {python.get('source')}{chosen}")
    if memory.get("process_mb"):
        per_dyno = ", ".join(f"{d['web_concurrency']} on {d['memory_mb']} MB" for d in memory.get("per_dyno", []))
        log.detail(f"Memory: one web process needs about {memory['process_mb']} MB; WEB_CONCURRENCY {per_dyno}")
    _render_runtime(report.get("runtime") or {})
    hub = report.get("hf") or {}
    if hub.get("status") == "baked":
        log.detail(f"Hugging Face models: {len(hub['models'])} in the slug ({log.human_bytes(hub['bytes'])}), "
                   + ("read without the Hub at boot" if hub.get("offline") else "the dyno still asks the Hub at boot"))
    stubs = [p for p in report["lfs"] if not p.get("fetched_at_boot")]
    if stubs:
        listed = "\n".join(f"  {p['path']} (the real file is {log.human_bytes(p['size'])})" for p in stubs[:10])
        log.warning("Warning: These files are still Git LFS pointers, not the files themselves:\n"
                    f"{listed}\n"
                    "Your app will fail when it opens them. See the Git LFS warning at the start of this build.")


def _render_runtime(runtime: dict[str, Any]) -> None:
    status = runtime.get("status")
    shipped = ENGINES.get(str(status))
    if shipped is not None:
        log.detail(f"Runtime: {shipped.label} ({shipped.package} {runtime.get('version')}) instead of "
                   f"{shipped.framework}")
        for model in runtime.get("models") or []:
            top1, cosine = model.get("top1"), model.get("cosine")
            agreement = f", top-1 {top1:.1%}" if isinstance(top1, (int, float)) else ""
            agreement += f", cosine {cosine:.5f}" if isinstance(cosine, (int, float)) else ""
            log.detail(f"  {model['path']}: {log.human_bytes(model['original_bytes'])} → "
                       f"{log.human_bytes(model['converted_bytes'])} ({model['quantize'] or 'float32'}), "
                       f"max abs difference {model.get('max_abs') or 0:.2g}{agreement}; converted in "
                       f"{log.seconds(model['convert_seconds'])}, "
                       f"checked in {log.seconds(model.get('check_seconds') or 0)}")
        memory = runtime.get("memory") or {}
        if memory.get(shipped.name) and memory.get(shipped.kept):
            log.detail(f"  One web process: {log.human_bytes(memory[shipped.name])} on {shipped.label}, "
                       f"{log.human_bytes(memory[shipped.kept])} on {shipped.framework} ({memory.get('measured_by')})")
        return
    asked = ENGINES.get(str(runtime.get("engine")))
    if asked is not None and status in (asked.kept, "nothing"):
        why = str(runtime.get("reason") or "").splitlines()[0].rstrip(":")
        log.detail(f"Runtime: {asked.framework} (runtime.engine: {asked.name} did not apply: {why})")
