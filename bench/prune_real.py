"""Measure the verified prune on a real tensorflow-cpu install (not part of `make test`).

    python bench/prune_real.py PRISTINE_VENV WORK_VENV APP_DIR

PRISTINE_VENV is a virtualenv with tensorflow-cpu, flask, gunicorn and pillow installed (left
untouched); WORK_VENV is overwritten with a copy and pruned. Prints JSON: per-rule savings
(uncompressed, and gzip -6 of what each rule removed), prune and verification times, the
site-packages tar.gz before and after, cold `import tensorflow` times (fresh interpreter,
no bytecode writing, median of 5, before/after runs interleaved in pairs), and a Keras
fit/save/load/predict smoke run on the pruned tree.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from slugslim.core.config import Config
from slugslim.removal.engine import Engine, default_python, quarantine_location

SMOKE = r"""
import os, tempfile, numpy as np, keras
x = np.random.rand(256, 8).astype("float32"); y = (x.sum(axis=1) > 4).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=3, batch_size=32, verbose=0)
path = os.path.join(tempfile.mkdtemp(), "m.keras")
model.save(path)
again = keras.models.load_model(path)
a, b = model.predict(x[:16], verbose=0), again.predict(x[:16], verbose=0)
assert np.allclose(a, b), "predictions differ after save/load"
print("keras smoke ok", keras.__version__)
"""


def gz_size(path: str) -> int:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    total = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def gz_of_tree(path: str) -> int:
    if os.path.islink(path):
        return 0
    if os.path.isfile(path):
        return gz_size(path)
    total = 0
    for top, dirnames, files in os.walk(path):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(top, d))]
        total += sum(gz_size(os.path.join(top, f)) for f in files if not os.path.islink(os.path.join(top, f)))
    return total


def gz_strip_saving(path: str) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "s")
        subprocess.run(["strip", "--strip-unneeded", "-o", out, path], check=True)
        return gz_size(path) - gz_size(out)


def tar_gz(directory: Path) -> int:
    tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(directory), "."], stdout=subprocess.PIPE)
    gz = subprocess.run(["gzip", "-6"], stdin=tar.stdout, capture_output=True)
    tar.wait()
    return len(gz.stdout)


def import_seconds(python: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([python, "-c", "import tensorflow"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    pristine, work, app = (Path(a).resolve() for a in sys.argv[1:4])
    if work.exists():
        shutil.rmtree(work)
    subprocess.run(["cp", "-a", str(pristine), str(work)], check=True)
    site = next(work.glob("lib/python3.*/site-packages"))
    site_before = next(pristine.glob("lib/python3.*/site-packages"))
    python, env = default_python(site)
    engine = Engine(site_packages=site, config=Config(), python=python, env=env, cwd=app,
                    quarantine_dir=quarantine_location(work, site), app_dir=app,
                    say=lambda t: print("      ", t, file=sys.stderr), warn=lambda t: print(t, file=sys.stderr))
    started = time.monotonic()
    result = engine.run()
    prune_total = time.monotonic() - started

    # gzip -6 of what each rule removed, measured on the untouched copy
    jobs = []
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for removal in result.plan.removals:
            original = str(site_before / removal.path)
            if removal.rule == "symbols":
                if removal.path in result.strip_rolled_back:
                    continue
                jobs.append((removal.rule, pool.submit(gz_strip_saving, original)))
            else:
                jobs.append((removal.rule, pool.submit(gz_of_tree, original)))
        gz_by_rule: dict[str, int] = {}
        for rule, future in jobs:
            gz_by_rule[rule] = gz_by_rule.get(rule, 0) + future.result()
        before_gz = pool.submit(tar_gz, site_before)
        after_gz = pool.submit(tar_gz, site)
        before_gz_bytes, after_gz_bytes = before_gz.result(), after_gz.result()

    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    base_env["PYTHONDONTWRITEBYTECODE"] = "1"
    base_env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    before_python = str(pristine / "bin" / "python")
    import_seconds(before_python, base_env)  # warm the page cache for both trees once
    import_seconds(python, base_env)
    before_times, after_times = [], []
    for _ in range(5):
        before_times.append(import_seconds(before_python, base_env))
        after_times.append(import_seconds(python, base_env))
    smoke = subprocess.run([python, "-c", SMOKE], env=base_env, capture_output=True, text=True)

    print(json.dumps({
        "status": result.status,
        "removed_bytes": result.removed,
        "removed_gz_bytes": gz_by_rule,
        "files": result.files,
        "timings": result.timings,
        "prune_total_seconds": prune_total,
        "verify_runs": result.verify_runs,
        "strip_rolled_back": result.strip_rolled_back,
        "strip_skipped": len(result.strip_skipped),
        "culprits": result.culprits,
        "site_packages_tar_gz_before": before_gz_bytes,
        "site_packages_tar_gz_after": after_gz_bytes,
        "import_tensorflow_before": before_times,
        "import_tensorflow_after": after_times,
        "import_tensorflow_median_before": statistics.median(before_times),
        "import_tensorflow_median_after": statistics.median(after_times),
        "keras_smoke": smoke.returncode == 0,
        "keras_smoke_output": (smoke.stdout + smoke.stderr).strip().splitlines()[-3:],
    }, indent=2))


if __name__ == "__main__":
    main()
