"""make bench-torch: the PyTorch app (torch==2.13.0, flask, gunicorn, a small model) through the REAL heroku/python.

Two first builds (fresh OUT dirs) with heroku-python-build.sh ($HEROKU_PYTHON_BUILD), which runs the official
buildpack and hides this machine's pip configuration (PIP_CONFIG_FILE=/dev/null), as a Heroku build would:

  stock     heroku/python alone: pip takes PyPI's torch, the CUDA build, and its CUDA wheels
  slugslim  slugslim in front: torch==2.13.0+cpu from a PEP 503 index on 127.0.0.1 that serves this
            machine's torch 2.13.0+cpu wheel (swap.torch_index), everything else from PyPI
  fixup     the stock build's site-packages (a hard-linked copy) put through the finish phase's fix-up,
            as when torch comes in through another package or a lock: the CUDA build and its CUDA
            wheels replaced by torch 2.13.0+cpu

For each: the slug's compressed size, the build's wall time (it may include waiting for the build
lock other builds on this machine hold), and the dyno start: gunicorn started from the build dir
with the slug's Python until the first answer to GET /, median of 3. Results: bench/torch-results.json.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(REPO / "lib")]

from slugslim.core.config import Config, SwapConfig  # noqa: E402
from slugslim.core.context import FinishContext  # noqa: E402
from slugslim.finish.fixup import fixup  # noqa: E402
from tests.localindex import serve  # noqa: E402

WORK = Path(os.environ.get("SLUGSLIM_BENCH_WORK", BENCH / "work")) / "torch"
# What this bench needs from outside the repo, each named by one variable (README, "Development").
NEEDS = {
    "HEROKU_PYTHON_BUILD": "the heroku-python-build.sh script that runs the real heroku/python",
    "HEROKU_PYTHON_BUILDPACK": "a git directory of heroku/heroku-buildpack-python",
    "SLUGSLIM_BENCH_TORCH_WHEELS": "directories (separated by ':') holding a torch-2.13.0+cpu wheel",
}
RUNS = 3


def say(message: str) -> None:
    print(f"[bench-torch {time.strftime('%H:%M:%S')}] {message}", flush=True)


def needed(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"bench-torch: set {name} to {NEEDS[name]}")
    return value


def make_app() -> Path:
    app = WORK / "app"
    shutil.rmtree(app, ignore_errors=True)
    shutil.copytree(BENCH / "torch_app", app)
    weights = array.array("f", [((i * 37) % 101 - 50) / 1000 for i in range(64 * 256)])
    (app / "model.bin").write_bytes(weights.tobytes())
    return app


def cpu_index_dir() -> Path:
    """The directory holding this machine's torch 2.13.0+cpu wheel, served as the CPU index."""
    directories = [Path(p) for p in needed("SLUGSLIM_BENCH_TORCH_WHEELS").split(os.pathsep)]
    for directory in directories:
        if any(directory.glob("torch-2.13.0+cpu-*.whl")):
            return directory
    raise SystemExit(f"bench-torch: no torch-2.13.0+cpu wheel in {directories}")


def build(name: str, app: Path, buildpacks: list[str], config_vars: dict[str, str]) -> dict[str, Any]:
    out = WORK / name
    shutil.rmtree(out, ignore_errors=True)
    env_dir = WORK / f"{name}-env"
    shutil.rmtree(env_dir, ignore_errors=True)
    env_dir.mkdir(parents=True)
    for key, value in config_vars.items():
        (env_dir / key).write_text(value)
    env = {**os.environ, "PBSIM_ENV_DIR": str(env_dir)}
    say(f"{name}: building")
    started = time.monotonic()
    done = subprocess.run(["bash", needed("HEROKU_PYTHON_BUILD"), "build", str(app), str(out), *buildpacks], env=env,
                          check=False)
    seconds = time.monotonic() - started
    log = (out / "log.txt").read_text(errors="replace") if (out / "log.txt").is_file() else ""
    if done.returncode != 0:
        print(log[-4000:])
        raise SystemExit(f"{name}: build failed ({done.returncode})")
    python = out / "build/.heroku/python/bin/python"
    site = next((out / "build/.heroku/python/lib").glob("python3.*/site-packages"))
    dists = sorted(p.name.removesuffix(".dist-info") for p in site.glob("*.dist-info"))
    result = {"slug_bytes": int((out / "slug_bytes").read_text()), "build_seconds": round(seconds, 1),
              "site_packages_bytes": site_bytes(site),
              "torch": next((d for d in dists if d.startswith("torch-")), ""),
              "cuda_wheels": [d for d in dists if d.startswith(("nvidia", "cuda", "triton"))],
              "slugslim_log": [line for line in log.splitlines() if "CPU swap" in line or "torch" in line][:12]}
    result["boot_seconds"] = [boot(out / "build", python) for _ in range(RUNS)]
    result["boot_median"] = round(statistics.median(result["boot_seconds"]), 2)
    say(f"{name}: slug {result['slug_bytes'] / 1e6:.0f} MB, build {seconds:.0f} s, boot {result['boot_median']} s")
    return result


def site_bytes(site: Path) -> int:
    return sum(p.lstat().st_size for p in site.rglob("*") if p.is_file())


def fixup_stock(index: str) -> dict[str, Any]:
    build_dir = WORK / "fixup" / "build"
    shutil.rmtree(build_dir.parent, ignore_errors=True)
    build_dir.parent.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(WORK / "stock" / "build"), str(build_dir)], check=True)
    python = build_dir / ".heroku/python/bin/python"
    site = next((build_dir / ".heroku/python/lib").glob("python3.*/site-packages"))
    before = site_bytes(site)
    ctx = FinishContext(build_dir=build_dir, cache_dir=None, config=Config(swap=SwapConfig(torch_index=index)),
                        python=python, site_packages=site, state={"swap": {"manager": "pip"}},
                        env={"PIP_CONFIG_FILE": os.devnull})
    say("fixup: replacing the stock build's CUDA torch")
    started = time.monotonic()
    outcome = fixup.run(ctx)
    seconds = time.monotonic() - started
    result: dict[str, Any] = {"fixup_seconds": round(seconds, 1), "site_packages_bytes_before": before,
                              "site_packages_bytes": site_bytes(site), "bytes_removed": outcome.bytes_removed,
                              "actions": [a["detail"] for a in outcome.actions]}
    result["boot_seconds"] = [boot(build_dir, python) for _ in range(RUNS)]
    result["boot_median"] = round(statistics.median(result["boot_seconds"]), 2)
    say(f"fixup: {before / 1e9:.2f} GB -> {result['site_packages_bytes'] / 1e9:.2f} GB in {seconds:.0f} s")
    return result


def boot(app: Path, python: Path) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(app), "PYTHONPATH": str(app)}
    started = time.monotonic()
    server = subprocess.Popen([str(python), "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "app:app"], cwd=app,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - started < 300:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    json.loads(answer.read())
                    return round(time.monotonic() - started, 2)
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the app did not answer within 300 s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    for name in NEEDS:
        needed(name)
    WORK.mkdir(parents=True, exist_ok=True)
    if "--fixup-only" in sys.argv:  # again on the stock build of an earlier run
        saved = json.loads((BENCH / "torch-results.json").read_text())
        with serve(cpu_index_dir()) as index:
            saved["fixup"] = fixup_stock(index)
        (BENCH / "torch-results.json").write_text(json.dumps(saved, indent=2) + "\n")
        return 0
    app = make_app()
    results: dict[str, Any] = {}
    with serve(cpu_index_dir()) as index:
        results["stock"] = build("stock", app, ["python"], {})
        results["slugslim"] = build("slugslim", app, [str(REPO), "python"], {"SLUGSLIM_SWAP_TORCH_INDEX": index})
        results["fixup"] = fixup_stock(index)
    results["ratio_slug"] = round(results["stock"]["slug_bytes"] / results["slugslim"]["slug_bytes"], 2)
    (BENCH / "torch-results.json").write_text(json.dumps(results, indent=2) + "\n")
    say(f"stock/slugslim slug size: {results['ratio_slug']}x; results in bench/torch-results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
