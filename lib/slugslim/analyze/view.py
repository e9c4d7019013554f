"""The text view of ``slugslim analyze``: one build-log-style section per lever, then the expected size."""

from __future__ import annotations

import textwrap

from slugslim.analyze.analysis import Analysis
from slugslim.core import log
from slugslim.finish.report import report


def render(analysis: Analysis, width: int) -> None:
    target = analysis.target
    log.step(f"slugslim analyze ({target.kind})")
    if target.app_dir:
        log.detail(f"App: {target.app_dir}")
    if target.site_packages:
        log.detail(f"Site-packages: {target.site_packages}")
    for note in target.notes:
        for line in note.splitlines():
            # Commands (indented) stay on one line so they can be copied.
            log.detail(line if line.startswith(" ") else textwrap.fill(line, max(40, width - len(log.DETAIL))))
    log.step("CPU swap")
    if not target.app_dir:
        log.detail("Not checked: pass --app DIR to read your requirements.")
    elif not analysis.swaps:
        log.detail("Nothing to swap.")
    for swap_item in analysis.swaps:
        log.detail(swap_item.describe())

    if target.site_packages is not None:
        log.step("Prune plan (dry run)")
        by_rule = analysis.by_rule()
        files: dict[str, int] = {}
        for removal in analysis.removals:
            files[removal["rule"]] = files.get(removal["rule"], 0) + int(removal.get("files", 1))
        prune_rules = [rule for rule in by_rule if rule not in ("models", "fixup")]
        if not prune_rules:
            log.detail("Nothing to prune.")
        width_rule = max([len(r) for r in prune_rules] + [4])
        for rule in prune_rules:
            count = f"{files[rule]:>6} files" if files[rule] else " " * 12
            log.detail(f"{rule:<{width_rule}}  {count}  {log.human_bytes(by_rule[rule]):>9}")
        if "fixup" in by_rule:
            log.detail(f"CUDA libraries the GPU build pulled in (fix-up): {log.human_bytes(by_rule['fixup'])}")

    log.step("Model files that would leave the slug")
    if not target.app_dir:
        log.detail("Not checked: pass --app DIR to look for model files.")
    elif not analysis.models:
        log.detail("None found.")
    stays = "" if analysis.settings.models.source else "  (stays: models.source is not set)"
    for model in analysis.models:
        log.detail(f"{model.path}  {log.human_bytes(model.bytes)}{stays}")

    _render_hub_models(analysis, width)
    if analysis.runtime is not None:
        _render_runtime(analysis)
    if analysis.before is not None and analysis.after is not None:
        log.step("Expected slug size")
        scope = "app files only" if target.site_packages is None else (
            "site-packages only" if target.app_dir is None else "app and site-packages")
        log.detail(f"Before: {log.human_bytes(analysis.before.compressed_bytes)} compressed (estimated), "
                   f"{log.human_bytes(analysis.before_bytes)} on disk ({scope})")
        log.detail(f"After:  {log.human_bytes(analysis.after.compressed_bytes)} compressed (estimated), "
                   f"{log.human_bytes(analysis.after_bytes)} on disk")
        if analysis.distributions:
            log.detail("Largest distributions after slugslim (on disk):")
            for line in report.bar_chart(analysis.distributions, width=width):
                log.detail(line)
    for item in analysis.unused:
        log.warning(f"Warning: {item.message(log.human_bytes)}.\nIt is listed in {item.source}. Remove it if you "
                    "do not need it, or add it to report.ignore_unused if it is loaded dynamically.")
    if analysis.after is not None:
        remaining = [(n, b) for n, b in analysis.distributions]
        warnings = report.limit_warnings(analysis.after.compressed_bytes, analysis.settings.limits,
                                         remaining, analysis.unused)
        if warnings:
            log.warning("\n".join(warnings))


def _render_hub_models(analysis: Analysis, width: int) -> None:
    """The Hugging Face Hub models the app's code names, each with where it is loaded."""
    log.step("Hugging Face Hub models your code loads")
    models = analysis.hub_models()
    if not analysis.target.app_dir:
        log.detail("Not checked: pass --app DIR to look for them.")
    elif not models:
        log.detail("None found.")
    else:
        log.detail(textwrap.fill("These would be downloaded at build time and shipped with the app, so dynos "
                                 "do not fetch them from the Hub at every boot.", max(40, width - len(log.DETAIL))))
    for model in models:
        revision = f" (revision {model['revision']})" if model["revision"] else ""
        log.detail(f"{model['id']}{revision}  {', '.join(model['places'])}")


def _render_runtime(analysis: Analysis) -> None:
    """What runtime.engine: litert or onnx would give (the sizes above do not count it)."""
    plan = analysis.runtime
    assert plan is not None
    engine, now = plan.engine, analysis.settings.runtime.engine
    log.step(f"{engine.label} instead of {engine.framework} (runtime.engine: {engine.name}; now {now})")
    for model in plan.models:
        log.detail(f"Would convert {model.key}  {log.human_bytes(model.bytes)}")
    loader = "load_model" if engine.name == "litert" else "SentenceEncoder, pipeline, load_model"
    for path, names in sorted(plan.imports.items()):
        log.detail(f"Blocks it: {path} imports {', '.join(names)} (use 'from slugslim_models import {loader}')")
    if plan.verdict:
        log.detail(f"Not possible as it is: {plan.verdict}.")
        return
    if analysis.target.site_packages is None:
        log.detail("Possible. Pass the app's environment too to see what would be removed.")
        return
    log.detail(f"Possible, if every model converts and verifies: {len(plan.removed)} distributions, "
               f"{log.human_bytes(plan.removed_bytes)} on disk, would leave the slug, and "
               f"{' and '.join(engine.packages)} would come in (the expected size below does not count this):")
    log.detail("  " + ", ".join(plan.removed))
