"""make bench: the reference TensorFlow app through the emulated Heroku build, six ways, one run.

Variants, each a first build (fresh BUILD_DIR and CACHE_DIR) on this machine, one after another:
  stock                   the emulated heroku/python alone
  seed-advice             the same, with tensorflow-cpu written into requirements.txt by hand
  slugslim                slugslim (first) + heroku/python, default config
  slugslim-bytecode-imported  the same with prune.bytecode: imported
  slugslim-bytecode-drop  the same with prune.bytecode: drop
  slugslim-litert         the same with runtime.engine: litert (the model converted, TensorFlow out)

Then each slug is unpacked and booted as a dyno would boot it (see dyno.py): a median of 5
paired cold starts of the smoke workload, the variants interleaved in rotating order so that
load from other work on the machine falls on all of them alike; then a median of 5 paired dyno
starts of the Procfile's web process (unpack the slug, source .profile.d, start gunicorn, until
it answers GET /), and one recorded start per variant that counts the modules compiled from
source at boot and at the first requests (GET /, POST /predict). The slugslim slug's boot is traced (strace) for the
touched-file floor. Results go to bench/results.json and bench/results.md.

Wheels come from the package registry once, into a cache outside git ($SLUGSLIM_BENCH_WHEELS,
default ~/.cache/slugslim-bench/wheels); the builds themselves run with no index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

import dyno  # noqa: E402
import results  # noqa: E402
from modelserver import ModelServer  # noqa: E402

from tests.heroku.build import BASE_PYTHON, PYTHON_BUILDPACK, SLUGSLIM, python_runtime, run_build  # noqa: E402

APP = BENCH / "app"
WORK = Path(os.environ.get("SLUGSLIM_BENCH_WORK", BENCH / "work"))
WHEELS = Path(os.environ.get("SLUGSLIM_BENCH_WHEELS", Path.home() / ".cache/slugslim-bench/wheels"))
SEED_ADVICE_PACKAGE = "tensorflow-cpu==2.21.0"
# What the slugslim-litert build installs in place of TensorFlow (the newest with a wheel for 3.11).
LITERT_PACKAGE = "ai-edge-litert==2.3.0"
RUNS = 5


@dataclass
class Variant:
    name: str
    description: str
    app: Path
    buildpacks: tuple[Path, ...]
    config_vars: dict[str, str] = field(default_factory=dict)
    # Filled in as the bench goes.
    data: dict[str, Any] = field(default_factory=dict)
    app_dir: Path | None = None
    pristine: set[str] = field(default_factory=set)
    boots: list[dyno.Boot] = field(default_factory=list)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def pip(*args: str, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
    subprocess.run([python, "-m", "pip", *args, "--disable-pip-version-check", "--quiet"], check=True, env=env)


def ensure_wheels(wanted: Sequence[str] = ("-r", str(APP / "requirements.txt"), SEED_ADVICE_PACKAGE, LITERT_PACKAGE),
                  wheels: Path = WHEELS) -> None:
    """Every wheel the variants need, in ``wheels``: resolved offline first, downloaded only if missing."""
    wheels.mkdir(parents=True, exist_ok=True)
    # Only the wheels directory counts: no pip.conf find-links or index may satisfy the probe for it.
    isolated = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": str(wheels)}
    try:
        pip("install", "--dry-run", "--ignore-installed", "--no-index", *wanted, env=isolated)
        say(f"wheels: all present in {wheels}")
    except subprocess.CalledProcessError:
        say(f"wheels: downloading what is missing into {wheels} (once; later runs reuse it)")
        pip("download", "--only-binary", ":all:", "--find-links", str(wheels), "--dest", str(wheels), *wanted)


def tools_wheels() -> Path:
    """slugslim's own build tools as wheels (the Makefile's .cache/tools-wheels, else downloaded here)."""
    for candidate in (os.environ.get("SLUGSLIM_TEST_TOOLS_WHEELS", ""), str(REPO / ".cache/tools-wheels")):
        if candidate and Path(candidate, ".complete").is_file():
            return Path(candidate)
    target = WORK / "tools-wheels"
    if not (target / ".complete").is_file():
        shutil.rmtree(target, ignore_errors=True)
        pip("download", "--no-deps", "--only-binary", ":all:", "--require-hashes", "-r", str(REPO / "lib/tools.lock"),
            "--dest", str(target))
        (target / ".complete").touch()
    return target


def build_env(wheels: Path) -> dict[str, str]:
    """The emulated builds' environment: pip offline, from ``wheels`` and slugslim's tools wheels only."""
    return {
        # Heroku has no pip.conf: this machine's must not add indexes, find-links or constraints.
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{wheels} {tools_wheels()}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "EMULATED_PYTHON": BASE_PYTHON,
        "EMULATED_PYTHON_TEMPLATE": str(python_runtime(WORK, tools_wheels())),
    }


def model_files() -> Path:
    """The two model files, made once by make_models.py with real TensorFlow and kept in WORK."""
    script = BENCH / "make_models.py"
    key = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    models = WORK / f"models-{key}"
    if (models / ".complete").is_file():
        return models
    generator = WORK / "gen-venv"
    if not (generator / ".complete").is_file():
        say("models: installing tensorflow-cpu into a generator venv (once)")
        shutil.rmtree(generator, ignore_errors=True)
        subprocess.run([BASE_PYTHON, "-m", "venv", str(generator)], check=True)
        pip("install", "--no-index", "--find-links", str(WHEELS), SEED_ADVICE_PACKAGE,
            python=str(generator / "bin/python"))
        (generator / ".complete").touch()
    say("models: writing models/embeddings.bin (50 MiB) and models/classifier.keras")
    shutil.rmtree(models, ignore_errors=True)
    subprocess.run([str(generator / "bin/python"), str(script), str(models)], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.DEVNULL)
    (models / ".complete").touch()
    return models


def make_apps(models: Path) -> tuple[Path, Path]:
    """The reference app with its models, and its seed-advice copy (tensorflow-cpu by hand)."""
    apps = WORK / "apps"
    shutil.rmtree(apps, ignore_errors=True)
    reference = apps / "reference"
    shutil.copytree(APP, reference, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(models, reference / "models", ignore=shutil.ignore_patterns(".complete"))
    # The app loads its model through slugslim's loader, copied in as the README tells developers.
    shutil.copyfile(REPO / "lib/slugslim/boot/slugslim_models.py", reference / "slugslim_models.py")
    seed = apps / "seed-advice"
    shutil.copytree(reference, seed)
    requirements = seed / "requirements.txt"
    requirements.write_text(
        requirements.read_text(encoding="utf-8").replace("tensorflow==2.21.0", SEED_ADVICE_PACKAGE), encoding="utf-8"
    )
    return reference, seed


def variants(reference: Path, seed: Path, server: ModelServer, slugslim: Path) -> list[Variant]:
    def models_vars(prefix: str) -> dict[str, str]:
        # Each variant uploads under its own prefix, so each build pays for its own upload.
        return {"SLUGSLIM_MODELS_SOURCE": f"{server.url}/{prefix}", "SLUGSLIM_MODELS_UPLOAD": "true"}

    return [
        Variant("stock", "emulated heroku/python alone", reference, (PYTHON_BUILDPACK,)),
        Variant("seed-advice", "tensorflow-cpu written by hand, no slugslim", seed, (PYTHON_BUILDPACK,)),
        Variant("slugslim", "slugslim + heroku/python, default config", reference, (slugslim, PYTHON_BUILDPACK),
                models_vars("slugslim")),
        Variant("slugslim-bytecode-imported", "slugslim with prune.bytecode: imported", reference,
                (slugslim, PYTHON_BUILDPACK),
                {**models_vars("slugslim-bytecode-imported"), "SLUGSLIM_PRUNE_BYTECODE": "imported"}),
        Variant("slugslim-bytecode-drop", "slugslim with prune.bytecode: drop", reference,
                (slugslim, PYTHON_BUILDPACK),
                {**models_vars("slugslim-bytecode-drop"), "SLUGSLIM_PRUNE_BYTECODE": "drop"}),
        Variant("slugslim-litert", "slugslim with runtime.engine: litert", reference, (slugslim, PYTHON_BUILDPACK),
                {**models_vars("slugslim-litert"), "SLUGSLIM_RUNTIME_ENGINE": "litert"}),
    ]


def build(variant: Variant, env: dict[str, str], reuse: bool = False) -> None:
    slug = WORK / "slugs" / f"{variant.name}.tar.gz"
    saved = slug.with_suffix("").with_suffix(".json")
    if reuse and slug.is_file() and saved.is_file():
        say(f"{variant.name}: reusing the slug of an earlier run (--reuse, for debugging the bench)")
        variant.data.update(json.loads(saved.read_text(encoding="utf-8")))
    else:
        _build(variant, env, slug)
        saved.write_text(json.dumps(variant.data), encoding="utf-8")
    if not variant.data.get("build_ok"):
        return
    app = WORK / "run" / variant.name / "app"
    if not app.is_dir():
        app = dyno.unpack(slug, app.parent)
    variant.app_dir = app
    variant.pristine = dyno.slug_files(app)
    variant.data["files"] = len(variant.pristine)
    for name, relative in (("report", ".slugslim/report.json"), ("models_manifest", ".slugslim/models.json")):
        path = app / relative
        if path.is_file():
            variant.data[name] = json.loads(path.read_text(encoding="utf-8"))
    say(f"{variant.name}: {variant.data['slug_bytes'] / 1e6:.1f} MB slug, {len(variant.pristine)} files, "
        f"{variant.data['build_seconds']:.0f} s")


def _build(variant: Variant, env: dict[str, str], slug: Path) -> None:
    workdir = WORK / "builds" / variant.name
    shutil.rmtree(workdir, ignore_errors=True)
    say(f"{variant.name}: building ({variant.description})")
    done = run_build(variant.app, workdir, buildpacks=variant.buildpacks, config_vars=variant.config_vars, env=env,
                     timeout=1800)
    made = done.slug  # the slug is made here, and its "Compressing..." lines join the log
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{variant.name}.build.log").write_text(done.log, encoding="utf-8")
    lines = [line for line in done.log.splitlines() if line.strip()]
    variant.data.update(build_ok=made is not None, build_seconds=round(done.seconds, 1),
                        build_log_tail=lines[-80:])
    # slugslim's own part of the build log: what it swapped, pruned, moved out and reported.
    hook = next((i for i, line in enumerate(lines) if "Running bin/post_compile hook" in line), None)
    if hook is not None and variant.buildpacks[0] != PYTHON_BUILDPACK:
        start = next((i for i, line in enumerate(lines) if "Preparing a slim slug" in line), hook)
        end = next((i for i in range(start, hook) if "-----> Using Python" in lines[i]), hook)
        variant.data["slugslim_log"] = lines[start:end] + lines[hook:]
    run_dir = WORK / "run" / variant.name
    shutil.rmtree(run_dir, ignore_errors=True)
    if made is not None:
        variant.data["slug_bytes"] = done.slug_bytes
        slug.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made, slug)
        # The slug is a tar of exactly this BUILD_DIR: moving it into place is unpacking the slug
        # without minutes of gunzip and disk writes (mtimes, modes and symlinks are the same).
        run_dir.mkdir(parents=True)
        done.build_dir.rename(run_dir / "app")
    else:
        say(f"{variant.name}: BUILD FAILED, see {logs / (variant.name + '.build.log')}")
        variant.data["error"] = "build failed:\n" + "\n".join(variant.data["build_log_tail"][-25:])


def cold_starts(built: list[Variant]) -> None:
    """Round 0 warms the page cache and is not counted; rounds 1..RUNS rotate the order of variants."""
    for round_number in range(RUNS + 1):
        shift = round_number % len(built)
        for variant in built[shift:] + built[:shift]:
            assert variant.app_dir is not None
            result = dyno.boot(variant.app_dir, variant.config_vars, variant.pristine)
            label = "warm-up" if round_number == 0 else f"run {round_number}/{RUNS}"
            say(f"{variant.name}: cold start {label}: {result.seconds:.2f} s, {result.cpu_seconds:.2f} s CPU"
                f" (.profile.d {result.profile_seconds:.2f} s){'' if result.ok else ' FAILED'}")
            if result.modified:
                say(f"{variant.name}: the boot rewrote slug files: {result.modified[:5]}")
            if round_number == 0 and not result.ok:
                variant.data["error"] = "smoke workload failed:\n" + result.output
                break
            if round_number:
                variant.boots.append(result)
        built = [v for v in built if "error" not in v.data]
    stock = next((v for v in built if v.name == "stock"), None)
    for variant in built:
        ok = [b for b in variant.boots if b.ok]
        if len(ok) < len(variant.boots):
            variant.data["error"] = f"{len(variant.boots) - len(ok)} of {len(variant.boots)} cold starts failed"
        if not ok:
            continue
        variant.data.update(
            cold_start_seconds=round(statistics.median(b.seconds for b in ok), 3),
            cold_start_runs=[round(b.seconds, 3) for b in variant.boots],
            cold_start_cpu_seconds=round(statistics.median(b.cpu_seconds for b in ok), 3),
            profile_d_seconds=round(statistics.median(b.profile_seconds for b in ok), 3),
            import_and_load_seconds=round(statistics.median(float(str(b.smoke["import_seconds"])) for b in ok), 3),
            peak_rss_mb=round(statistics.median(int(str(b.smoke.get("peak_rss_bytes", 0))) for b in ok) / 2**20),
            # What the smoke request predicted: a converted model must give the original's answer.
            labels=sorted({int(str(b.smoke.get("label", -1))) for b in ok}),
        )
        if stock is not None and len(stock.boots) == len(variant.boots):
            # Paired: each round's runs are seconds apart, so they saw about the same load.
            pairs = [(b, s) for b, s in zip(variant.boots, stock.boots, strict=True) if b.ok and s.ok]
            if pairs:
                variant.data["cold_start_paired_vs_stock"] = round(
                    statistics.median(b.seconds / s.seconds for b, s in pairs), 3)
                variant.data["cold_start_cpu_vs_stock"] = round(
                    statistics.median(b.cpu_seconds / s.cpu_seconds for b, s in pairs), 3)


def dyno_starts(built: list[Variant]) -> None:
    """Procfile boots: compiles counted once per variant, then 5 paired, rotating rounds of dyno start."""
    for variant in built:
        assert variant.app_dir is not None
        counted = dyno.web_compiles(variant.app_dir, variant.config_vars, variant.pristine)
        variant.data.update(compiled_at_web_boot=counted["compiled_at_boot"],
                            compiled_at_first_request=counted["compiled_at_request"],
                            web_ok=counted["ok"])
        say(f"{variant.name}: web process compiled {len(counted['compiled_at_boot'])} modules at boot, "
            f"{len(counted['compiled_at_request'])} at the first requests"
            f"{'' if counted['ok'] else ' (a request FAILED)'}")
    starts: dict[str, list[dyno.WebStart]] = {v.name: [] for v in built}
    for round_number in range(1, RUNS + 1):
        shift = round_number % len(built)
        for variant in built[shift:] + built[:shift]:
            slug = WORK / "slugs" / f"{variant.name}.tar.gz"
            start = dyno.web_start(slug, WORK / "dyno-start" / variant.name, variant.config_vars)
            say(f"{variant.name}: dyno start {round_number}/{RUNS}: {start.seconds:.2f} s "
                f"(unpack {start.unpack_seconds:.2f} s){'' if start.ok else ' FAILED: ' + start.output[-300:]}")
            starts[variant.name].append(start)
    stock = starts.get("stock", [])
    for variant in built:
        ok = [s for s in starts[variant.name] if s.ok]
        if not ok:
            continue
        variant.data.update(
            dyno_start_seconds=round(statistics.median(s.seconds for s in ok), 3),
            dyno_start_runs=[round(s.seconds, 3) for s in starts[variant.name]],
            dyno_start_unpack_seconds=round(statistics.median(s.unpack_seconds for s in ok), 3),
            dyno_start_answer_seconds=round(statistics.median(s.answer_seconds for s in ok), 3),
        )
        pairs = [(s, t) for s, t in zip(starts[variant.name], stock, strict=False) if s.ok and t.ok]
        if pairs:
            variant.data["dyno_start_paired_vs_stock"] = round(statistics.median(s.seconds / t.seconds
                                                                                 for s, t in pairs), 3)


def floor(variant: Variant) -> dict[str, Any]:
    """Trace the smoke workload on this slug; tar.gz exactly the files it opened plus the app source."""
    assert variant.app_dir is not None
    app = variant.app_dir
    trace = WORK / "floor.strace"
    result, touched = dyno.traced_boot(app, variant.config_vars, variant.pristine, trace)
    if not result.ok:
        return {"error": "the traced smoke workload failed:\n" + result.output}
    # The app's own files as shipped in this slug (models that slugslim moved out are not in it).
    source = {str(p.relative_to(APP)) for p in APP.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    source |= {f"models/{p.name}" for p in (WORK / "apps/reference/models").iterdir()}
    members = (touched | source) & variant.pristine
    size = dyno.tar_gz(app, sorted(members), WORK / "floor.tar.gz")
    say(f"floor: {len(touched & variant.pristine)} of {len(variant.pristine)} slug files opened; "
        f"with the app source {len(members)} files, {size / 1e6:.1f} MB")
    return {"floor_bytes": size, "floor_files": len(members), "floor_of": variant.name, "members": members,
            "opened_outside_slug": len(touched - variant.pristine),
            "compiled_at_boot": dyno.compiled_at_boot(touched, variant.pristine)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="build only these variants (debugging)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results.{md,json}")
    parser.add_argument("--buildpack", type=Path, default=SLUGSLIM,
                        help="the slugslim checkout to benchmark (default: this one)")
    parser.add_argument("--reuse", action="store_true", help="reuse slugs from an earlier run (debugging)")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        print("make bench needs strace for the touched-file floor: apt-get install -y strace", file=sys.stderr)
        return 2
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_wheels()
    # What the slugslim-litert build installs from slugslim's lock, at the lock's versions and hashes.
    ensure_wheels(["--no-deps", "--require-hashes", "-r", str(REPO / "lib" / "runtime.lock")])
    env = build_env(WHEELS)
    reference, seed = make_apps(model_files())
    store = WORK / "model-store"
    shutil.rmtree(store, ignore_errors=True)
    with ModelServer(store) as server:
        every = variants(reference, seed, server, args.buildpack.resolve())
        chosen = [v for v in every if not args.only or v.name in args.only]
        for variant in chosen:
            build(variant, env, reuse=args.reuse)
        built = [v for v in chosen if v.app_dir is not None]
        say("cold starts: 1 warm-up round, then 5 rounds in rotating order")
        cold_starts(built)
        say("dyno starts: the Procfile's web process, compiles counted, then 5 rounds in rotating order")
        dyno_starts([v for v in built if "error" not in v.data])
        traced = next((v for v in built if v.name == "slugslim" and "error" not in v.data), None)
        floor_data = floor(traced) if traced else {"error": "no working slugslim slug to trace"}
        top = results.remaining_bytes(traced.app_dir, floor_data.get("members", set())) if traced and traced.app_dir \
            else []
    # The builds' CACHE_DIRs are GBs each; removed only now, so that no build waits for the disk.
    shutil.rmtree(WORK / "builds", ignore_errors=True)
    outcome = results.collect(chosen, floor_data, top, time.monotonic() - started, args.buildpack, env)
    print()
    print(results.table(outcome))
    print()
    print(results.web_table(outcome))
    if outcome["compiled_at_boot"]:
        print(f"\n{len(outcome['compiled_at_boot'])} modules read from .py with no bytecode in the slugslim slug "
              f"(compiled at every boot): {', '.join(outcome['compiled_at_boot'][:20])} ...")
    print()
    for line in results.targets(outcome):
        print(line)
    if any(t["pass"] is False for t in outcome["targets"]) and outcome["remaining_top10"]:
        print("\nWhere the slugslim slug's bytes are (gzip -6 per file; untouched = never opened by the smoke run):")
        for row in outcome["remaining_top10"]:
            print(f"  {row['where']:<48} {row['gz_bytes'] / 1e6:7.1f} MB  "
                  f"untouched {row['untouched_gz_bytes'] / 1e6:7.1f} MB  {row['files']:>6} files")
    if not args.no_write:
        results.write(outcome, BENCH / "results.json", BENCH / "results.md")
        say("wrote bench/results.json and bench/results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
