"""Hugging Face Hub models downloaded once, at build time, and read from the slug at boot.

An app that names its model by Hub id (``SentenceTransformer("org/name")``, ``from_pretrained``,
``pipeline(model=…)``, ``hf_hub_download``) downloads it in every dyno at every boot: the dyno's disk
is fresh each time. This step, after the fix-up and before the runtime step (a later engine finds
the files), runs the app the way the checks do, with the Hub client's cache (``HF_HUB_CACHE``) at
``.slugslim/hf/hub`` in the app and the app's own config vars (``HF_ENDPOINT``, ``HF_TOKEN``):

1. what the app downloads lands there, exactly the files and revisions it reads: the web process
   booted and answering ``verify.paths``, the import check and ``verify.command``; then the models
   the ``hf.models`` setting names, for those loaded lazily (``hub_tool.py``, the real client);
2. ``.profile.d/slugslim-hf.sh`` points the dyno's client there; then the same checks run again
   with the Hub unreachable and ``HF_HUB_OFFLINE=1``: only when they pass does the dyno get
   ``HF_HUB_OFFLINE=1`` too (no request to the Hub at boot, and a Hub outage cannot stop a boot);
3. the cache is kept in CACHE_DIR for the next build, which then downloads nothing that has not
   changed.

Config vars the user set win: ``HF_HUB_CACHE``/``HF_HOME`` under ``/app`` are used as they are,
elsewhere the step says why nothing can be baked and stops; ``HF_HUB_OFFLINE`` is never overridden.
``HF_TOKEN`` reaches the client and nothing else: no file, no log line, no report entry.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from slugslim.appcheck import boot_check, imports, verify
from slugslim.core import apptool, log, words
from slugslim.core.context import FinishContext
from slugslim.core.installed import read_dists
from slugslim.core.results import HubModelResult, HubResult, snapshot
from slugslim.finish.hub import cache

CACHE = PurePosixPath(".slugslim/hf/hub")
PROFILE_SCRIPT = PurePosixPath(".profile.d/slugslim-hf.sh")
TOOL = Path(__file__).parent / "hub_tool.py"
DEFAULT_ENDPOINT = "https://huggingface.co"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
# The Hub client's errors, as the app prints them, and what they mean for the user.
REFUSALS = {"GatedRepoError": "gated", "RepositoryNotFoundError": "missing", "RevisionNotFoundError": "revision"}
HUB_ERROR = re.compile(r"OfflineModeIsEnabled|LocalEntryNotFoundError|EntryNotFoundError|HfHubHTTPError|"
                       r"RepositoryNotFoundError|GatedRepoError")


def _cache_path(ctx: FinishContext) -> tuple[Path | None, str, bool]:
    """(where the dyno's Hub cache is, in the build; why not, when it cannot be there; whether it is ours)."""
    name = "HF_HUB_CACHE" if ctx.env.get("HF_HUB_CACHE", "").strip() else "HF_HOME"
    value = ctx.env.get(name, "").strip()
    if not value:
        return ctx.build_dir / CACHE, "", True
    path = PurePosixPath(value if name == "HF_HUB_CACHE" else f"{value.rstrip('/')}/hub")
    if path.is_absolute() and path.is_relative_to("/app") and ".." not in path.parts:
        inside = ctx.build_dir / path.relative_to("/app")
        if not any(p.is_symlink() for p in [inside, *inside.parents] if p.is_relative_to(ctx.build_dir)):
            return inside, "", False
    return None, (f"The {name} config var is {value}, outside the app (/app), so the models cannot be baked "
                  "into the slug there, and dynos download them at boot."), False


def _reachable(endpoint: str, timeout: float = 10) -> str:
    """'' when the Hub answers at all (any HTTP status); else what went wrong."""
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/api/models?limit=1", timeout=timeout):
            return ""
    except urllib.error.HTTPError:
        return ""
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


NOTHING_RAN = ("no web process or verify.command ran to try the app without the Hub", "")


def _checks(ctx: FinishContext, hub_env: dict[str, str], timeout: float,
            offline: bool = False) -> list[tuple[str, str]]:
    """Run the app as the checks do, with ``hub_env``: the import check with ``verify.command``, and
    the web boot. Returns what failed: a line for the build log, and the output it came from.
    ``offline``: only what runs the app's own code (the boot, ``verify.command``), and when neither
    ran, that is a failure too: nothing showed that the app starts without the Hub."""
    failures: list[tuple[str, str]] = []
    ran = False
    assert ctx.site_packages is not None
    # The user's HF_HUB_OFFLINE would stop the downloads; hub_env says whether this run is offline.
    config_vars = {**{k: v for k, v in ctx.env.items() if k != "HF_HUB_OFFLINE"}, **hub_env}
    python_env = {**{k: v for k, v in ctx.python_env().items() if k != "HF_HUB_OFFLINE"}, **hub_env}
    if ctx.config.verify.enabled and (not offline or ctx.config.verify.command):
        ran = bool(ctx.config.verify.command)
        modules: list[str] = []
        maybe: list[str] = []
        if not offline:
            modules, maybe = verify.app_targets(ctx.build_dir, ctx.site_packages, None, ctx.config.verify.imports)
        outcome = verify.run(ctx.python, python_env, ctx.build_dir, modules, ctx.site_packages,
                             ctx.config.verify.command, timeout=ctx.timeout(timeout), maybe=maybe)
        failures += [(f"import {name}: {why}", why) for name, why in outcome.failures.items()]
        if outcome.command_failure:
            failures.append((f"verify.command: {outcome.command_failure}", outcome.command_failure))
    command = boot_check.web_command(ctx.build_dir) if ctx.config.verify.boot != "false" else ""
    if ctx.config.verify.enabled and command:
        booted = boot_check.boot(ctx.build_dir, command, config_vars, ctx.site_packages, ctx.timeout(timeout),
                                 ctx.config.verify.paths)
        # The Hub client's own error says which file or request it missed; the server's last line rarely does.
        said = next((line.strip() for line in reversed(booted.output.splitlines()) if HUB_ERROR.search(line)), "")
        failures += [] if booted.ok else [(f"the web process: {said or booted.failure}", booted.output)]
        ran = True
    return failures + ([NOTHING_RAN] if offline and not ran else [])


def _fetch_settings(ctx: FinishContext, hub_env: dict[str, str], where: Path, result: HubResult) -> None:
    """Download the models ``hf.models`` names, with the app's own client; warn for each that fails."""
    origin = ctx.config.origins.get("hf.models", "slugslim.yml")
    request = {"cache": str(where), "models": [m.to_json() for m in ctx.config.hf.models]}
    try:
        done = apptool.run(ctx.python, TOOL, "fetch", request, {**ctx.python_env(), **hub_env}, ctx.build_dir,
                           ctx.timeout(ctx.config.verify.timeout))
    except apptool.ToolFailed as exc:
        log.warning(words.hub_tool_failed(str(exc)))
        result.notes.append(f"hf.models: {exc}")
        return
    for entry in done.get("fetched", []):
        if entry.get("error"):
            log.warning(words.hub_model_not_fetched(entry["id"], f"{origin} (hf.models)", entry["error"],
                                                    entry.get("message", "")))
            result.notes.append(f"{entry['id']}: {entry['error']}")


def _describe(ctx: FinishContext, hub_env: dict[str, str], where: Path, models: list[HubModelResult]) -> None:
    """The bytes of each repo's files that were not downloaded (other formats, other runtimes' exports)."""
    request = {"cache": str(where), "describe": [{"id": m.id, "commit": m.commit} for m in models]}
    try:
        done = apptool.run(ctx.python, TOOL, "fetch", request, {**ctx.python_env(), **hub_env}, ctx.build_dir,
                           ctx.timeout(120))
    except apptool.ToolFailed:
        return  # only the report's "not downloaded" figure is missing
    described = {(d["id"], d["commit"]): d.get("sizes", {}) for d in done.get("described", [])}
    for model in models:
        sizes = described.get((model.id, model.commit), {})
        model.skipped_bytes = sum(size for path, size in sizes.items() if path not in model.files)


def _profile(ctx: FinishContext, ours: bool, offline: bool) -> dict[str, str]:
    """Write .profile.d/slugslim-hf.sh; return what it sets, with the build's paths, for the later checks."""
    lines = ["# Written by slugslim: Hugging Face models were downloaded at build time and ship in the slug."]
    env: dict[str, str] = {}
    if ours:
        lines.append(f'export HF_HUB_CACHE="${{HF_HUB_CACHE:-${{HOME}}/{CACHE}}}"')
        env["HF_HUB_CACHE"] = ctx.env.get("HF_HUB_CACHE") or str(ctx.build_dir / CACHE)
    if offline and "HF_HUB_OFFLINE" not in ctx.env:
        lines.append('export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"')
        env["HF_HUB_OFFLINE"] = "1"
    target = ctx.build_dir / PROFILE_SCRIPT
    target.parent.mkdir(exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return env


def run(ctx: FinishContext) -> HubResult:
    """The step; on any fault (the guard then skips it with a warning), what it added is taken out:
    the dyno downloads at boot, as without it."""
    started = {**ctx.dyno_env}
    try:
        return _run(ctx)
    except BaseException:
        where, _why, ours = _cache_path(ctx)
        if ours and where is not None and where.is_dir() and not where.is_symlink():
            shutil.rmtree(where)
        (ctx.build_dir / PROFILE_SCRIPT).unlink(missing_ok=True)
        ctx.dyno_env.clear()
        ctx.dyno_env.update(started)
        ctx.results.hub = snapshot(HubResult(status="skipped"))
        raise


def _run(ctx: FinishContext) -> HubResult:
    result = HubResult()
    ctx.results.hub = snapshot(result)
    if not ctx.config.hf.enabled or ctx.site_packages is None or "huggingface-hub" not in read_dists(ctx.site_packages):
        return result
    log.step("Downloading Hugging Face models at build time")
    where, why, ours = _cache_path(ctx)
    endpoint = ctx.env.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    unreachable = _reachable(endpoint) if where is not None else ""
    if where is None or unreachable:
        result.status = "skipped"
        result.notes.append(why or f"the Hub at {log.redact(endpoint)} is unreachable: {unreachable}")
        if why:  # the user's own choice: one line says what it means
            log.detail(why)
        else:
            log.warning(words.hub_not_baked(f"The Hub ({log.redact(endpoint)}) could not be reached from the "
                                            f"build ({unreachable})."))
        ctx.results.hub = snapshot(result)
        return result
    result.cache = where.relative_to(ctx.build_dir).as_posix()
    if cache.restore(ctx.cache_dir, where):
        log.detail("The files of the last build's models are in place: only what changed is downloaded")
    with tempfile.TemporaryDirectory(prefix="slugslim-hf-home-") as home:
        # HF_HOME for the client's own files (tokens it is given, xet and listing caches): not the slug.
        hub_env = {"HF_HUB_CACHE": str(where), "HF_HOME": home}
        failures = _checks(ctx, hub_env, ctx.config.verify.timeout)
        if ctx.config.hf.models:
            _fetch_settings(ctx, hub_env, where, result)
        cache.tidy(where)
        found = cache.read(where)
        for snap in found:
            folder = (where / cache.folder(snap.id)).relative_to(ctx.build_dir).as_posix()
            result.models.append(HubModelResult(snap.id, snap.commit, sorted(snap.files), snap.bytes, folder=folder))
        _warn_static_ids(ctx, {m.id for m in result.models}, failures)
        if not found:
            log.detail("The app downloaded no model from the Hub while it was checked"
                       + (f" ({failures[0][0]})" if failures else ""))
            ctx.results.hub = snapshot(result)
            return result
        _describe(ctx, hub_env, where, result.models)
        result.status = "baked"
        for model in result.models:
            files = f"{len(model.files)} file{'s' if len(model.files) != 1 else ''}"
            log.detail(f"{model.id} at {model.commit[:10]}: {files}, {log.human_bytes(model.bytes)}"
                       + (f" (not downloaded: {log.human_bytes(model.skipped_bytes)} of other formats)"
                          if model.skipped_bytes else ""))
        ctx.dyno_env.update(_profile(ctx, ours, offline=False))
        offline_env = {"HF_HUB_CACHE": str(where), "HF_HOME": home, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": UNREACHABLE}
        offline_failures = [] if failures else _checks(ctx, offline_env, ctx.config.verify.boot_timeout, offline=True)
    if failures or offline_failures:
        result.offline_failure = (failures or offline_failures)[0][0]
        if failures:
            why = ("The app's checks did not pass while the models were downloaded, so a boot without the Hub "
                   f"could not be tried: {result.offline_failure}")
        elif offline_failures == [NOTHING_RAN]:
            why = f"Nothing showed that the app starts without the Hub: {NOTHING_RAN[0]}."
        else:
            why = f"With the Hub unreachable, the app failed: {result.offline_failure}"
        log.warning(words.hub_stays_online(why))
    else:
        result.offline = True
        ctx.dyno_env.update(_profile(ctx, ours, offline=True))
        log.detail("The app boots with the Hub unreachable: dynos read the models from the slug, "
                   "with HF_HUB_OFFLINE=1")
    if result.bytes > ctx.config.limits.hard_mb * 1_000_000:
        log.warning(words.hub_models_too_big(result.bytes, ctx.config.limits.hard_mb))
    cache.save(ctx.cache_dir, where)
    ctx.results.hub = snapshot(result)
    return result


def _warn_static_ids(ctx: FinishContext, baked: set[str], failures: list[tuple[str, str]]) -> None:
    """Name the ids the app's source loads that no check downloaded, with the file and line: the
    Hub's refusal when a check failed on that id (missing, gated), else that no check reached it."""
    unreached: dict[str, list[str]] = {}
    wanted = {m.id for m in ctx.config.hf.models}
    for ref in imports.scan_app(ctx.build_dir).hub_models:
        if ref.id in baked or ref.id in wanted:
            continue
        place = f"{ref.path} line {ref.line}"
        failed = next(((line, output) for line, output in failures if f"/{ref.id}/" in output), None)
        if failed is None:
            unreached.setdefault(ref.id, []).append(place)
            continue
        kind = next((kind for code, kind in REFUSALS.items() if code in failed[1]), "")
        log.warning(words.hub_model_not_fetched(ref.id, place, kind, failed[0]))
        wanted.add(ref.id)  # once per id
    if unreached:
        log.warning(words.hub_ids_not_loaded(unreached))
