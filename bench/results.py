"""Turn one bench run into bench/results.json, bench/results.md and the PASS/FAIL lines."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import zlib
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

# (label, variant, key, limit): each is the variant's value of key, at most limit.
TARGETS = (
    ("slugslim slug <= 0.40x stock", "slugslim", "slug_vs_stock", 0.40),
    ("slugslim slug <= 1.15x the touched-file floor", "slugslim", "slug_vs_floor", 1.15),
    # Paired: the median over the 5 rounds of (slugslim run / stock run of the same round).
    ("slugslim cold start <= 1.05x stock (paired)", "slugslim", "cold_start_paired_vs_stock", 1.05),
    # Procfile boots: unpack, .profile.d, gunicorn, until GET / answers.
    ("slugslim dyno start <= 0.50x stock (paired)", "slugslim", "dyno_start_paired_vs_stock", 0.50),
    ("slugslim web process compiles 0 modules at boot and first requests", "slugslim", "compiled_at_web", 0),
    # Inference without TensorFlow: the same app and request on LiteRT.
    ("slugslim-litert slug <= 0.15x stock", "slugslim-litert", "slug_vs_stock", 0.15),
    ("slugslim-litert peak RSS of one web process <= 0.15x the TensorFlow runtime (stock)", "slugslim-litert",
     "peak_rss_vs_stock", 0.15),
    ("slugslim-litert dyno start <= 0.30x stock (paired)", "slugslim-litert", "dyno_start_paired_vs_stock", 0.30),
    ("slugslim-litert predicts the label stock predicts (0 = the same)", "slugslim-litert", "labels_differ", 0),
)
VERSIONS_OF = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "h5py", "protobuf", "flask", "werkzeug", "gunicorn",
               "pillow", "libclang", "pip", "setuptools")


class VariantLike(Protocol):
    name: str
    description: str
    data: dict[str, Any]
    app_dir: Path | None


def _site_packages(app: Path) -> Path | None:
    found = sorted(app.glob(".heroku/python/lib/python3.*/site-packages"))
    return found[-1] if found else None


def versions(app: Path | None, names: tuple[str, ...] = VERSIONS_OF) -> dict[str, str]:
    """The versions of the distributions ``names`` in an unpacked slug's site-packages."""
    site = _site_packages(app) if app else None
    versions: dict[str, str] = {}
    if site is None:
        return versions
    for info in site.glob("*.dist-info"):
        match = re.match(r"^(.+?)-([^-]+)\.dist-info$", info.name)
        if match:
            name = match.group(1).lower().replace("_", "-")
            if name in names:
                versions[name] = match.group(2)
    return dict(sorted(versions.items()))


def _group(relative: str) -> str:
    parts = relative.split("/")
    if len(parts) > 5 and parts[:3] == [".heroku", "python", "lib"] and parts[4] == "site-packages":
        name = parts[5]
        if name.endswith((".dist-info", ".libs")) or len(parts) == 6:
            return f"site-packages/{name}"
        # tensorflow alone is most of the slug: split it by subpackage.
        if name == "tensorflow" and len(parts) > 7:
            return f"site-packages/tensorflow/{parts[6]}"
        return f"site-packages/{name}"
    return "/".join(parts[:3]) if parts[0] == ".heroku" else parts[0]


def remaining_bytes(app: Path, touched: set[str], top: int = 10) -> list[dict[str, Any]]:
    """Where the slug's bytes beyond the floor are: per package (tensorflow per subdir), gzip -6 per file.

    Each file is deflated on its own, so the sizes add up to a little more than the slug's
    (no shared dictionary across files); ``untouched`` is the part the smoke workload never opened.
    """
    total: dict[str, int] = defaultdict(int)
    untouched: dict[str, int] = defaultdict(int)
    files: dict[str, int] = defaultdict(int)
    for directory, _dirs, names in os.walk(app):
        for name in names:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(app).as_posix()
            size = len(zlib.compress(path.read_bytes(), 6))
            group = _group(relative)
            total[group] += size
            files[group] += 1
            if relative not in touched:
                untouched[group] += size
    # Ranked by what the smoke run never opened: the bytes between this slug and the floor.
    ranked = sorted(total, key=lambda g: (untouched[g], total[g]), reverse=True)[:top]
    return [{"where": g, "gz_bytes": total[g], "untouched_gz_bytes": untouched[g], "files": files[g]} for g in ranked]


def machine() -> dict[str, Any]:
    """CPUs, RAM, kernel and OS of this machine, for a results file."""
    cpu = "unknown"
    memory = 0
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        memory = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration):
        pass
    try:
        system = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        system = ""
    return {"nproc": os.cpu_count(), "ram_bytes": memory, "cpu": cpu, "kernel": platform.release(), "os": system}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def commit(repo: Path) -> str:
    """The benchmarked commit, "<short sha> <subject>"; an exported tree (git archive) names it in .bench-commit."""
    if (repo / ".git").exists():
        return _git(repo, "log", "-1", "--format=%h %s")
    return (repo / ".bench-commit").read_text(encoding="utf-8").strip() if (repo / ".bench-commit").is_file() else ""


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def collect(variants: list[VariantLike], floor: Mapping[str, Any], top: list[dict[str, Any]], seconds: float,
            repo: Path, env: Mapping[str, str]) -> dict[str, Any]:
    python = subprocess.run([env["EMULATED_PYTHON"], "--version"], capture_output=True, text=True, check=False)
    features = {
        "swap": (repo / "lib/slugslim/prepare/swap").is_dir(),
        "prune": (repo / "lib/slugslim/finish/prune").is_dir(),
        "models": (repo / "lib/slugslim/finish/models").is_dir(),
        "report": (repo / "lib/slugslim/finish/report").is_dir(),
        "runtime": (repo / "lib/slugslim/finish/runtime/litert_tool.py").is_file(),
    }
    out: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(repo),
        "features_on_this_commit": features,
        "machine": machine(),
        "python": python.stdout.strip() or python.stderr.strip(),
        "bench_seconds": round(seconds),
        # 1/5/15-minute load averages when the run ended: how busy the shared machine was.
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "variants": {},
        "floor_bytes": floor.get("floor_bytes"),
        "floor_files": floor.get("floor_files"),
        "floor_of": floor.get("floor_of"),
        "floor_error": floor.get("error"),
        "remaining_top10": top,
        "compiled_at_boot": floor.get("compiled_at_boot", []),
        "packages": {},
    }
    stock = next((v.data for v in variants if v.name == "stock"), {})
    for variant in variants:
        data = {k: v for k, v in variant.data.items() if k != "build_log_tail" or "error" in variant.data}
        data["description"] = variant.description
        data["slug_vs_stock"] = _ratio(data.get("slug_bytes"), stock.get("slug_bytes"))
        data["slug_vs_floor"] = _ratio(data.get("slug_bytes"), floor.get("floor_bytes"))
        data["cold_start_vs_stock"] = _ratio(data.get("cold_start_seconds"), stock.get("cold_start_seconds"))
        data["peak_rss_vs_stock"] = _ratio(data.get("peak_rss_mb"), stock.get("peak_rss_mb"))
        if data.get("labels") and stock.get("labels"):
            data["labels_differ"] = int(data["labels"] != stock["labels"])
        if "compiled_at_web_boot" in data:
            data["compiled_at_web"] = len(data["compiled_at_web_boot"]) + len(data["compiled_at_first_request"])
        out["variants"][variant.name] = data
        out["packages"][variant.name] = versions(variant.app_dir)
    def value(variant: str, key: str) -> Any:
        return out["variants"].get(variant, {}).get(key)

    out["targets"] = [
        {"target": label, "value": value(variant, key), "limit": limit,
         "pass": None if value(variant, key) is None else value(variant, key) <= limit}
        for label, variant, key, limit in TARGETS
    ]
    return out


def _mb(value: Any) -> str:
    return f"{value / 1e6:,.1f}" if isinstance(value, (int, float)) else "–"


def _x(value: Any) -> str:
    return f"{value:.2f}×" if isinstance(value, (int, float)) else "–"


def _s(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def table(outcome: Mapping[str, Any]) -> str:
    stock = outcome["variants"].get("stock", {}).get("slug_bytes")
    floor = outcome.get("floor_bytes")
    rows = ["| variant | slug MB (gz) | × stock | × floor | files | build s | cold start s (median of 5) |"
            " × stock (paired) | of which .profile.d s | cold start CPU s | CPU × stock (paired) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in outcome["variants"].items():
        failed = " (FAILED)" if v.get("error") else ""
        rows.append(f"| {name}{failed} | {_mb(v.get('slug_bytes'))} | {_x(v.get('slug_vs_stock'))} | "
                    f"{_x(v.get('slug_vs_floor'))} | {v.get('files', '–')} | {_s(v.get('build_seconds'))} | "
                    f"{_s(v.get('cold_start_seconds'))} | {_x(v.get('cold_start_paired_vs_stock'))} | "
                    f"{_s(v.get('profile_d_seconds'))} | {_s(v.get('cold_start_cpu_seconds'))} | "
                    f"{_x(v.get('cold_start_cpu_vs_stock'))} |")
    rows.append(f"| touched-file floor (of {outcome.get('floor_of') or '–'}) | {_mb(floor)} | "
                f"{_x(_ratio(floor, stock))} | 1.00× | {outcome.get('floor_files') or '–'} | – | – | – | – | – | – |")
    return "\n".join(rows)


def web_table(outcome: Mapping[str, Any]) -> str:
    """The Procfile's web process per variant: what it compiles from source, and the dyno start."""
    rows = ["| variant | slug MB (gz) | compiled at boot | compiled at first requests | dyno start s (median of 5) |"
            " × stock (paired) | of which unpack s | start to first answer s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in outcome["variants"].items():
        boot, first = v.get("compiled_at_web_boot"), v.get("compiled_at_first_request")
        rows.append(f"| {name} | {_mb(v.get('slug_bytes'))} | {len(boot) if boot is not None else '–'} | "
                    f"{len(first) if first is not None else '–'} | {_s(v.get('dyno_start_seconds'))} | "
                    f"{_x(v.get('dyno_start_paired_vs_stock'))} | {_s(v.get('dyno_start_unpack_seconds'))} | "
                    f"{_s(v.get('dyno_start_answer_seconds'))} |")
    return "\n".join(rows)


def memory_table(outcome: Mapping[str, Any]) -> list[str]:
    """Peak memory of one web process per variant, and the WEB_CONCURRENCY slugslim's script picks from it."""
    rows = ["## Memory of one web process", "",
            "Peak RSS of the smoke process (import the app, load both models, answer one request), median of the "
            "cold starts. WEB_CONCURRENCY is what `.profile.d/slugslim-memory.sh` sets (from the build's own "
            "measurement, in report.json) where heroku/python alone would set 2 (512 MB) and 4 (1 GB).", "",
            "| variant | peak RSS MB | × stock | build's measurement MB | WEB_CONCURRENCY on 512 MB | on 1 GB |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, v in outcome["variants"].items():
        measured = (v.get("report") or {}).get("memory") or {}
        per_dyno = {d.get("memory_mb"): d.get("web_concurrency") for d in measured.get("per_dyno", [])}
        rows.append(f"| {name} | {v.get('peak_rss_mb', '–')} | {_x(v.get('peak_rss_vs_stock'))} | "
                    f"{measured.get('process_mb', '–')} | "
                    f"{per_dyno.get(512, '–')} | {per_dyno.get(1024, '–')} |")
    return [*rows, ""]


def targets(outcome: Mapping[str, Any]) -> list[str]:
    lines = []
    for t in outcome["targets"]:
        verdict = "N/A (not measured)" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        value = "–" if t["value"] is None else f"{t['value']:.2f}×" if isinstance(t["value"], float) \
            else str(t["value"])
        lines.append(f"{verdict:5} {t['target']}: {value}")
    return lines


def _report_section(outcome: Mapping[str, Any]) -> list[str]:
    """Per-lever bytes as slugslim's own report (.slugslim/report.json in the slug) states them."""
    lines: list[str] = []
    for name, v in outcome["variants"].items():
        report = v.get("report")
        if not isinstance(report, dict):
            continue
        lines += [f"### Per lever, from slugslim's report.json ({name})", ""]
        before, after = report.get("before", {}), report.get("after", {})
        if before and after:
            lines += [f"- Estimated by slugslim: {_mb(before.get('compressed_bytes'))} MB gz before, "
                      f"{_mb(after.get('compressed_bytes'))} MB gz after ({_mb(before.get('bytes'))} → "
                      f"{_mb(after.get('bytes'))} MB on disk).", ""]
        for swap in report.get("swaps", []):
            lines.append(f"- Swap: {swap}")
        levers = report.get("levers") or []
        if levers:
            lines += ["", "| lever | MB saved | measured as |", "|---|---:|---|"]
            lines += [f"| {lever.get('lever')} | {_mb(lever.get('bytes'))} | {lever.get('measured', '')} |"
                      for lever in levers]
        lines.append("")
    return lines


def write(outcome: dict[str, Any], json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(outcome, indent=2, sort_keys=False, default=sorted) + "\n", encoding="utf-8")
    machine = outcome["machine"]
    features = ", ".join(f"{k} {'yes' if on else 'NO'}" for k, on in outcome["features_on_this_commit"].items())
    md = [
        "# Benchmark: the reference TensorFlow app, stock vs slugslim (TensorFlow and LiteRT) vs the floor",
        "",
        f"- Date: {outcome['date']}; `make bench` took {outcome['bench_seconds']} s end to end.",
        f"- Commit: `{outcome['commit']}`; slugslim features present: {features}.",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram_bytes'] / 2**30:.0f} GiB RAM, "
        f"Linux {machine['kernel']} ({machine['os']}), shared with other work while it ran "
        f"(load average {', '.join(map(str, outcome['load_average_at_end']))} at the end).",
        f"- App Python: {outcome['python']} (the emulated heroku/python: a venv of it, see below).",
        "",
        table(outcome),
        "",
        "### The Procfile's web process (gunicorn), booted from the slug",
        "",
        web_table(outcome),
        "",
        *memory_table(outcome),
        "## Targets",
        "",
        *[f"- {line}" for line in targets(outcome)],
        "",
    ]
    if outcome.get("floor_error"):
        md += [f"The floor could not be measured: {outcome['floor_error'][:500]}", ""]
    failed = [name for name, v in outcome["variants"].items() if v.get("error")]
    for name in failed:
        md += [f"**{name} failed:**", "", "```", str(outcome["variants"][name]["error"])[-1500:], "```", ""]
    if outcome["remaining_top10"]:
        missed = any(t["pass"] is False for t in outcome["targets"])
        md += [
            "## Where the slugslim slug's remaining bytes are (top 10)" + (" — targets missed" if missed else ""),
            "",
            "Ranked by *untouched*: the compressed bytes of files the smoke workload never opened, i.e. what "
            "separates this slug from the floor. Each file deflated on its own at level 6, so the columns add up "
            "to a little more than the slug.",
            "",
            "| where | untouched gz MB | all gz MB | files |",
            "|---|---:|---:|---:|",
            *[f"| {r['where']} | {_mb(r['untouched_gz_bytes'])} | {_mb(r['gz_bytes'])} | {r['files']} |"
              for r in outcome["remaining_top10"]],
            "",
        ]
    compiled = outcome.get("compiled_at_boot") or []
    if compiled:
        md += [
            f"## Modules compiled at every boot of the slugslim slug ({len(compiled)})",
            "",
            "The traced smoke run read these `.py` files and the slug has no bytecode for them, so every dyno "
            "compiles them again at boot (part of the cold-start difference):",
            "",
            ", ".join(f"`{m}`" for m in compiled[:60]) + (" …" if len(compiled) > 60 else ""),
            "",
        ]
    md += _report_section(outcome)
    for name, v in outcome["variants"].items():
        if v.get("slugslim_log"):
            md += [f"<details><summary>slugslim's part of the build log ({name})</summary>", "", "```",
                   *[line.rstrip() for line in v["slugslim_log"][:120]], "```", "", "</details>", ""]
    md += ["## Package versions in each slug", "", "| variant | versions |", "|---|---|"]
    md += [f"| {name} | {', '.join(f'{k} {v}' for k, v in versions.items())} |"
           for name, versions in outcome["packages"].items()]
    md += ["", METHOD]
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")


METHOD = """## How this was measured

- **Reference app** (`bench/app/`): Flask + gunicorn + Pillow + `tensorflow==2.21.0`. `app.py` loads, at
  import, `models/embeddings.bin` (50 MiB int8 embedding table, `np.fromfile`) and `models/classifier.keras`
  (a small Keras classifier), and `/predict` uses both. `bench/make_models.py` writes the two files with real
  TensorFlow at bench time (the table byte-identical on every machine, from a seeded RNG).
- **Builds**: `tests/heroku/build.py` (the emulated Heroku build), one variant after the other, each a first
  build (fresh BUILD_DIR and CACHE_DIR, so slugslim's tool bootstrap is included), pip offline from the wheel
  cache. *Build s* is the whole build including the slug's gzip. The slug is the harness's real tar.gz (gzip
  -6, app under `./app`); *files* counts its non-directory entries.
- The emulated heroku/python makes the app Python a venv of this machine's CPython, so the CPython runtime
  itself (≈ 15–20 MB gz on Heroku) is in none of the slugs, nor in the floor.
- **Models**: the slugslim variants set `SLUGSLIM_MODELS_SOURCE=http://127.0.0.1:<port>/<variant>` and
  `SLUGSLIM_MODELS_UPLOAD=true`; a small PUT/GET server in the bench stands in for the bucket.
- **Cold start**: the slug unpacked, then a fresh `bash` that sources `.profile.d/*.sh` with HOME set to the
  app (as a dyno does, config vars set) and runs `python smoke.py`: import the app (which loads both model
  files), serve one prediction through Flask's test client. **For slugslim the time includes fetching the
  models back at boot** (`.profile.d/slugslim-models.sh`, from the local server, so with no network latency:
  a lower bound for a real bucket); the *.profile.d s* column is that part. After every run the files it
  created (fetched models, bytecode Python wrote) are removed, so every run boots the slug as shipped.
  One warm-up round (not counted), then 5 rounds with the variants in rotating order, so contention from other
  work on this 2-CPU machine hits all variants alike; the page cache is warm for all of them. *× stock (paired)*
  is the median over the rounds of (variant's run / stock's run in the same round), and it is what the cold-start
  target is judged on. *Cold start CPU s* is user + system CPU of the whole boot (bash, curl, python), which
  other load on the machine disturbs far less than wall time; its ratio is paired the same way.
- **Dyno start**: the slug's tar.gz unpacked into a fresh directory (timed), then a fresh `bash` that sources
  `.profile.d/*.sh` with HOME there and the config vars set, and runs the Procfile's web command (gunicorn,
  as `python -m gunicorn`: the emulated build's console-script shebangs name the build directory), timed until
  it answers `GET /` on `$PORT`. 5 rounds, variants in rotating order, paired with stock like the cold start.
- **Compiled at boot / at first requests**: one more start of the web process per variant, with slugslim's
  import recorder on `PYTHONPATH` and `PYTHONDONTWRITEBYTECODE=1`: every site-packages module loaded without a
  valid `.pyc` (so compiled from source) before the first answer to `GET /`, and after it during `GET /` and
  one `POST /predict` with a PNG.
- **Floor**: the slugslim slug's smoke run under `strace -f -e trace=openat,open,execve`; the slug's files it
  opened (bytecode, shared libraries, data), plus the app's source files as shipped in that slug, tarred and
  gzipped (-6) exactly like a slug. Models fetched at boot are not in it, as they are not in the slugslim slug.
"""
