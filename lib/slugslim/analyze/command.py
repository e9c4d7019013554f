"""``slugslim analyze PATH``: what the buildpack would do to an app, changing nothing.

PATH is one of:

- an app directory (with requirements.txt, Pipfile, pyproject.toml, ...). If it holds an
  installed environment (``.heroku/python``, ``.venv`` or ``venv``) that is analysed too;
  otherwise only the swaps and the models are known, and the output says how to get the rest;
- a virtualenv (a directory with ``lib/pythonX.Y/site-packages``);
- a bare site-packages directory.

``--app DIR`` adds the app's source to a virtualenv or site-packages analysis (for the swaps,
the models and unused requirements).

Exit codes: 0 when the expected slug is within ``limits.hard_mb``, 2 when it is over, 1 on any
error (including bad arguments). See ``SCHEMA`` below and the README for the ``--json`` output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from slugslim.analyze import view
from slugslim.analyze.analysis import Analysis, Target
from slugslim.appcheck import imports, unused
from slugslim.core import config, engines, frameworks, installed, log, modelscan
from slugslim.core.app import LOCAL_ONLY
from slugslim.core.config import Config, SwapConfig
from slugslim.core.errors import AnalyzeError
from slugslim.finish.prune import prune
from slugslim.finish.report import estimate, report
from slugslim.finish.runtime import plan
from slugslim.prepare.swap import swap

APP_MARKERS = ("requirements.txt", "Pipfile", "Pipfile.lock", "pyproject.toml", "poetry.lock", "uv.lock", "setup.py")
# Not part of the slug: a local virtualenv or VCS data would not be pushed to Heroku.
ENV_DIRS = (".heroku/python", ".venv", "venv")

SCHEMA = """\
{
  "schema": 1,
  "path": "the PATH given",
  "kind": "app" | "venv" | "site-packages",
  "app_dir": "absolute path" | null,
  "site_packages": "absolute path" | null,
  "complete": true when an installed environment was analysed,
  "before": {"bytes": int, "compressed_bytes": int},   # uncompressed and tar czf estimate
  "after":  {"bytes": int, "compressed_bytes": int},
  "removals": [{"root": "site-packages" | "app", "path": str, "bytes": int, "rule": str,
                "reason": str, "files": int, "package": str}],
  "by_rule": {"rule": bytes},
  "swaps": [Swap.to_json()],
  "models": [Model.to_json() + {"removed": bool}],     # removed: only when models.source is set
  "unused": [{"name": str, "bytes": int, "source": str}],
  "hub_models": [{"id": str, "revision": str, "places": ["app.py:3"]}],  # Hub ids the app's code names
  "distributions": [{"name": str, "bytes": int}],      # largest after, on disk
  "limits": {"soft_mb": int, "hard_mb": int, "over_soft": bool, "over_hard": bool},
  "notes": [str],
  "exit_code": 0 | 2
}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="an app directory, a virtualenv or a site-packages directory")
    parser.add_argument("--config", type=Path, help="settings file (default: slugslim.yml in the app directory)")
    parser.add_argument("--app", type=Path, help="the app's source, when PATH is a virtualenv or site-packages")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON (schema in the README)")
    parser.add_argument("--width", type=int, default=0, help=argparse.SUPPRESS)


def _has_app_markers(path: Path) -> bool:
    return any((path / name).is_file() for name in APP_MARKERS)


def resolve(path: Path, app: Path | None) -> Target:
    if not path.is_dir():
        raise AnalyzeError(str(path), "It does not exist or is not a directory.",
                           "Pass your app's directory, a virtualenv, or a site-packages directory.")
    path = path.resolve()
    app_dir = app.resolve() if app else None
    if app_dir is not None and not app_dir.is_dir():
        raise AnalyzeError(str(app), "--app must be your app's directory, and this is not a directory.",
                           "Pass the directory that holds your requirements.txt.")
    if path.name == "site-packages" or any(path.glob("*.dist-info")):
        return Target("site-packages", app_dir, path)
    if (path / "pyvenv.cfg").is_file() or (not _has_app_markers(path) and installed.find_site_packages(path)):
        site_packages = installed.find_site_packages(path)
        if site_packages is None:
            raise AnalyzeError(str(path), "It looks like a virtualenv, but it has no lib/pythonX.Y/site-packages.",
                               "Install your requirements into it first: VENV/bin/pip install -r requirements.txt")
        return Target("venv", app_dir, site_packages)
    if _has_app_markers(path):
        for env_dir in ENV_DIRS:
            # A symlinked environment is not part of the app (and the slug would not follow it).
            env_path = path / env_dir
            usable = env_path.is_dir() and not env_path.is_symlink()
            site_packages = installed.find_site_packages(env_path) if usable else None
            if site_packages is not None:
                return Target("app", path, site_packages)
        return Target("app", path, None, notes=[
            "No installed environment found, so only the swaps and models are shown. For the prune plan "
            "and the expected slug size, install your requirements into a virtualenv outside the app "
            "and point slugslim at it:\n"
            "  python -m venv /tmp/venv\n"
            f"  /tmp/venv/bin/pip install -r {path / 'requirements.txt'}\n"
            f"  slugslim analyze /tmp/venv --app {path}",
        ])
    raise AnalyzeError(
        str(path),
        "This is neither an app directory (no requirements.txt, Pipfile, pyproject.toml or uv.lock) "
        "nor a virtualenv or site-packages directory.",
        "Pass your app's directory, a virtualenv, or a site-packages directory.",
    )


def load_settings(target: Target, config_file: Path | None) -> config.Config:
    env = config.env_from_process()
    if config_file is None and target.app_dir is not None:
        return config.load(target.app_dir, env).config
    if config_file is None:
        with tempfile.TemporaryDirectory() as empty:
            return config.load(Path(empty), env).config  # defaults and SLUGSLIM_* variables
    if not config_file.is_file():
        raise AnalyzeError(str(config_file), "The settings file given with --config does not exist.",
                           "Check the path, or leave out --config to use slugslim.yml in the app directory.")
    if config_file.name == config.CONFIG_FILE:
        return config.load(config_file.parent, env).config
    # config.load reads <dir>/slugslim.yml; give it the file under that name.
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copyfile(config_file, Path(scratch) / config.CONFIG_FILE)
        return config.load(Path(scratch), env).config


def _relative(path: Path, root: Path) -> str | None:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def _split_removals(root: Path, removals: list[dict[str, Any]]) -> tuple[list[str], dict[str, int]]:
    """Whole files and directories leave the tree; a file losing part of its bytes (stripping) shrinks."""
    exclude: list[str] = []
    shrink: dict[str, int] = {}
    for removal in removals:
        path = root / removal["path"]
        if path.is_file() and not path.is_symlink() and removal["bytes"] < path.stat().st_size:
            shrink[removal["path"]] = removal["bytes"]
        else:
            exclude.append(removal["path"])
    return exclude, shrink


def _measure(analysis: Analysis) -> None:
    """Estimate the slug before and after: the app's files and the site-packages, in one tree if nested."""
    target = analysis.target
    roots: list[tuple[Path, str, list[dict[str, Any]]]] = []  # (root, arcroot, removals relative to root)
    app_dir, site_packages = target.app_dir, target.site_packages
    nested = app_dir is not None and site_packages is not None and _relative(site_packages, app_dir) is not None
    if app_dir is not None:
        prefix = _relative(site_packages, app_dir) if nested and site_packages else None
        rel_removals = [
            {**r, "path": f"{prefix}/{r['path']}"} if r["root"] == "site-packages" else r
            for r in analysis.removals
            if r["root"] == "app" or prefix is not None
        ]
        roots.append((app_dir, report.SLUG_ROOT, rel_removals))
    if site_packages is not None and not nested:
        roots.append((site_packages, "site-packages", [r for r in analysis.removals if r["root"] == "site-packages"]))

    before_parts: list[estimate.Estimate] = []
    after_parts: list[estimate.Estimate] = []
    for root, arcroot, removals in roots:
        # A venv inside the app dir is measured through its site-packages, not as app files.
        skip = [name for name in sorted(LOCAL_ONLY | {".slugslim"}) if (root / name).exists()] \
            if root == app_dir else []
        if nested and root == app_dir and site_packages is not None:
            skip = [name for name in skip if (root / name) not in site_packages.parents]
        before_parts.append(estimate.estimate(root, arcroot, exclude=skip))
        exclude, shrink = _split_removals(root, removals)
        after_parts.append(estimate.estimate(root, arcroot, exclude=[*skip, *exclude], shrink=shrink))

    def total(parts: list[estimate.Estimate]) -> estimate.Estimate:
        return estimate.Estimate(
            bytes=sum(p.bytes for p in parts), files=sum(p.files for p in parts),
            stream_bytes=sum(p.stream_bytes for p in parts),
            compressed_bytes=sum(p.compressed_bytes for p in parts),
            sampled_bytes=sum(p.sampled_bytes for p in parts), exact=all(p.exact for p in parts),
            seconds=sum(p.seconds for p in parts),
        )

    analysis.before, analysis.after = total(before_parts), total(after_parts)
    analysis.before_bytes = analysis.before.bytes
    analysis.after_bytes = analysis.before.bytes - sum(r["bytes"] for r in analysis.removals)


def _gpu_builds(scanned: installed.Installed, config: SwapConfig) -> list[installed.Distribution]:
    """The GPU builds installed here that the swap or the fix-up replaces on Heroku."""
    return [d for d in scanned.distributions.values()
            if frameworks.is_gpu_build(d.key, d.version, d.meta.requires) and not frameworks.kept(d.key, config)]


def _cuda_removals(scanned: installed.Installed, gpu: list[installed.Distribution],
                   config: SwapConfig) -> list[dict[str, Any]]:
    """What the finish-phase fix-up takes out with the GPU builds: the CUDA wheels only they need
    (``frameworks.cuda_removals``, the fix-up's own decision)."""
    dists = {key: d.meta for key, d in scanned.distributions.items()}
    names = {d.key for d in gpu}
    going = {name for d in gpu for name in frameworks.cuda_removals(d.meta, dists, config, names)[0]}
    removals = []
    for dist in scanned.distributions.values():
        if dist.key not in going:
            continue
        for rel in dist.files:
            removals.append({"root": "site-packages", "path": rel, "bytes": scanned.file_sizes.get(rel, 0),
                             "rule": "fixup", "reason": "CUDA library only a GPU build needs",
                             "files": 1, "package": dist.name})
    return removals


def _dedupe(removals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One removal per path: drop any that is the same as, or inside, one listed earlier or a
    directory listed anywhere (the fix-up's CUDA files and a prune rule can name the same file)."""
    kept: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for removal in sorted(removals, key=lambda r: (r["path"].count("/"), 0 if r["rule"] == "fixup" else 1)):
        parts = removal["path"].split("/")
        prefixes = {(removal["root"], "/".join(parts[:i])) for i in range(1, len(parts) + 1)}
        if prefixes & seen:
            continue
        seen.add((removal["root"], removal["path"]))
        kept.append(removal)
    order = {id(r): i for i, r in enumerate(removals)}
    return sorted(kept, key=lambda r: order[id(r)])


def analyze(target: Target, settings: config.Config) -> Analysis:
    analysis = Analysis(target, settings)
    if target.app_dir is not None:
        analysis.hub_refs = imports.scan_app(target.app_dir).hub_models
        if settings.swap.enabled:
            analysis.swaps = list(swap.plan_swaps(target.app_dir, settings.swap))
        if settings.models.enabled:
            analysis.models = list(modelscan.discover(target.app_dir, settings.models))
            if analysis.models and not settings.models.source:
                target.notes.append(
                    "Model files were found, but models.source is not set, so they would stay in the slug "
                    "(and are counted in the size after). Set models.source to take them out."
                )
            for model in analysis.models if settings.models.source else []:
                for part in model.files:
                    analysis.removals.append({"root": "app", "path": part.path, "bytes": int(part.bytes),
                                              "rule": "models", "reason": f"part of the model {model.path}",
                                              "files": 1, "package": ""})
    scanned: installed.Installed | None = None
    if target.site_packages is not None:
        scanned = installed.scan(target.site_packages)
        gpu = _gpu_builds(scanned, settings.swap)
        if gpu and settings.swap.enabled:
            analysis.removals.extend(_cuda_removals(scanned, gpu, settings.swap))
            for dist in gpu:
                framework = frameworks.framework_of(dist.key)
                assert framework is not None
                cpu = framework.builds[dist.key]
                cpu = f"{cpu} {framework.cpu_version(dist.version)}" if cpu == dist.key else cpu
                target.notes.append(
                    f"This environment has the GPU build of {framework.name} ({dist.name} {dist.version}, "
                    f"{log.human_bytes(dist.bytes)}). On Heroku slugslim installs {cpu} instead; the size after "
                    "does not include that, only the CUDA libraries it drops.")
        for dist in scanned.distributions.values():
            if frameworks.has_no_cpu_build(dist.key):
                target.notes.append(f"{dist.name} {dist.version} ({log.human_bytes(dist.bytes)}) has no CPU build "
                                    "and needs a GPU, which dynos do not have; slugslim leaves it in place.")
        if settings.prune.enabled:
            pruned = prune.plan(target.site_packages, settings.prune)
            analysis.removals.extend({"root": "site-packages", **r.to_json()} for r in pruned.removals)
        if target.app_dir is not None:
            analysis.unused = unused.find_unused(target.app_dir, scanned, settings.report.ignore_unused)
    if target.app_dir is not None:
        analysis.runtime = _runtime_plan(target.app_dir, target.site_packages, settings)
    analysis.removals = _dedupe(analysis.removals)
    _measure(analysis)
    if scanned is not None:
        after_sizes = {installed.canonical(k) if k != installed.UNOWNED else k: v for k, v in scanned.sizes().items()}
        for removal in analysis.removals:
            owner = installed.canonical(removal.get("package") or "")
            if removal["root"] == "site-packages" and owner in after_sizes:
                after_sizes[owner] = max(0, after_sizes[owner] - removal["bytes"])
        analysis.distributions = report.top(after_sizes, settings.report.top)
    return analysis


def run(args: argparse.Namespace) -> int:
    target = resolve(args.path, args.app)
    settings = load_settings(target, args.config)
    analysis = analyze(target, settings)
    if args.json:
        data = {"path": str(args.path), **analysis.to_json()}
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        view.render(analysis, args.width or report.terminal_width())
    return analysis.exit_code()



def _runtime_plan(app_dir: Path, site_packages: Path | None, settings: Config) -> plan.RuntimePlan:
    """The engine the settings name; without one, LiteRT, or ONNX when the app has PyTorch models and no Keras ones."""
    asked = engines.ENGINES.get(settings.runtime.engine)
    if asked is not None:
        return plan.plan(app_dir, site_packages, settings, asked)
    litert = plan.plan(app_dir, site_packages, settings, engines.LITERT)
    if litert.models:
        return litert
    onnx = plan.plan(app_dir, site_packages, settings, engines.ONNX)
    return onnx if onnx.models or onnx.unsafe else litert
