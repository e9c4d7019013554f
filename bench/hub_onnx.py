"""make bench-hub's ONNX Runtime comparison: the smoke request, the model store, and the targets of issue 22.

After each dyno start answers GET / (the timed part), the bench POSTs SENTENCES to /embed and reads the
peak RSS of the web process (dyno.web_memory: the gunicorn master and its worker, shared pages counted in
both, as each process's RSS counts them). The onnx variants' embeddings are compared with the torch
variant's (slugslim on PyTorch) by cosine, row by row; the smallest over every start is what counts.

The onnx-store variant keeps its models in an S3-compatible store: moto's S3 server on 127.0.0.1, in a
thread of the bench, with made-up credentials (the build uploads there, each dyno start downloads from there;
on one machine, so the time it takes is a lower bound of a real store's).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dyno
import numpy as np
import run

# Short and long, plain and odd: the longest is over the model's 256 tokens, so truncation counts too.
SENTENCES = [
    "slugslim bakes Hub models into the slug",
    "A man is eating food.",
    "The new movie is awesome, I loved every minute of it!",
    "Quarterly revenue fell 3% while operating costs rose; the board blamed currency effects.",
    "¿Dónde está la biblioteca? 图书馆在哪里？ Where is the library?",
    " ".join(f"Sentence {n} of a long document about dynos, slugs and buildpacks." for n in range(40)),
]
# Issue 22's targets: onnx vs the same app on PyTorch built with slugslim.
SLUG, SLUG_STORE, RSS, START, COSINE = 0.5, 0.35, 0.45, 0.3, 0.999
BUCKET = "slugslim-bench-models"
# Made-up credentials for moto, which accepts any.
STORE_VARS = {"AWS_ACCESS_KEY_ID": "AKIASLUGSLIMBENCH000", "AWS_SECRET_ACCESS_KEY": "slugslim-bench-not-a-secret",
              "AWS_REGION": "us-east-1"}


@contextmanager
def model_store() -> Iterator[dict[str, str]]:
    """moto's S3 on 127.0.0.1 with an empty bucket; yields the config vars that put an app's models there."""
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id=STORE_VARS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=STORE_VARS["AWS_SECRET_ACCESS_KEY"])
        client.create_bucket(Bucket=BUCKET)
        yield {**STORE_VARS, "AWS_ENDPOINT_URL": endpoint, "SLUGSLIM_MODELS_SOURCE": f"s3://{BUCKET}/onnx-store",
               "SLUGSLIM_MODELS_UPLOAD": "true"}
    finally:
        server.stop()


def smoke(port: int, session: int) -> dict[str, Any]:
    """The web process's peak RSS after GET /, POST /embed with SENTENCES, and its peak RSS after that:
    dyno.web_start's probe."""
    booted = dyno.web_memory(session)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/embed", body=json.dumps({"texts": SENTENCES}),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    embeddings = json.loads(body)["embeddings"] if response.status == 200 else None
    return {"status": response.status, "embeddings": embeddings, "memory": dyno.web_memory(session),
            "memory_at_first_answer": booted}


def min_cosine(ours: list[list[float]], theirs: list[list[float]]) -> float:
    """The smallest cosine of corresponding rows; -1 when the answers' shapes differ."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        return -1.0
    cosines = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cosines.min())


def compare(built: list[run.Variant]) -> None:
    """Every start's POST /embed answer against the first of slugslim on PyTorch: the smallest cosine."""
    torch = next((v for v in built if v.name == "hub-slugslim"), None)
    reference = next((r["embeddings"] for r in (torch.data.get("dyno_starts", []) if torch else [])
                      if r.get("embeddings")), None)
    for variant in built:
        answers = [r.pop("embeddings", None) for r in variant.data.get("dyno_starts", [])]
        if any(r.get("embed_status") != 200 for r in variant.data.get("dyno_starts", []) if r["ok"]):
            variant.data["error"] = "POST /embed did not answer 200 after a dyno start"
        if reference is not None and any(answers):
            variant.data["min_cosine_vs_slugslim"] = min(min_cosine(a, reference) for a in answers if a)
            run.say(f"{variant.name}: smallest cosine vs slugslim on PyTorch "
                    f"{variant.data['min_cosine_vs_slugslim']:.6f}")


def runtime_report(report: dict[str, Any]) -> dict[str, Any] | None:
    """slugslim's report.json on its runtime step, without the build machine's cache path."""
    runtime = report.get("runtime")
    return None if not runtime else {k: v for k, v in runtime.items() if k != "cache"}


def notes(variants: dict[str, dict[str, Any]]) -> list[str]:
    """What slugslim's runtime step said it did, and what a dyno start fetched from the model store."""
    lines = []
    for name, v in variants.items():
        runtime = v.get("report_runtime") or {}
        memory = runtime.get("memory") or {}
        for model in runtime.get("models", []):
            lines.append(f"{name}: report.json runtime: {runtime.get('status')} (onnxruntime {runtime.get('version')})"
                         f", {model['path']} {'verified' if model.get('verified') else 'NOT verified'}: cosine "
                         f"{model.get('cosine', 0):.6f}, max abs {model.get('max_abs', 0):.1e}; the build measured "
                         f"the web process at {memory.get('torch', 0) / 1e6:.0f} MB on PyTorch, "
                         f"{memory.get('onnx', 0) / 1e6:.0f} MB on ONNX Runtime")
        fetched = next((r["store_fetch"] for r in v.get("dyno_starts", []) if r.get("store_fetch")), "")
        if fetched:
            lines.append(f"{name}: each dyno start, from the model store: {fetched}")
    return lines


def targets(variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of issue 22: what was measured, the ratio to the torch variant, the limit, pass or miss."""
    torch = variants.get("slugslim", {})
    rows: list[dict[str, Any]] = []

    def ratio(name: str, what: str, key: str, limit: float, paired: str = "") -> None:
        mine = variants.get(name, {})
        value = mine.get(paired) if paired else (
            mine[key] / torch[key] if mine.get(key) and torch.get(key) else None)
        rows.append({"variant": name, "what": what, "onnx": mine.get(key), "torch": torch.get(key),
                     "ratio": None if value is None else round(value, 3), "target": f"≤ {limit}",
                     "pass": None if value is None else value <= limit})

    for name in ("onnx", "onnx-store"):
        ratio(name, "slug, compressed", "slug_bytes", SLUG_STORE if name == "onnx-store" else SLUG)
        ratio(name, "peak RSS of one web process", "peak_rss_bytes", RSS)
        ratio(name, "dyno start (median of the paired ratios)", "dyno_start_seconds", START,
              "dyno_start_seconds_paired_vs_slugslim")
        cosine = variants.get(name, {}).get("min_cosine_vs_slugslim")
        rows.append({"variant": name, "what": "cosine on the smoke request, smallest", "onnx": cosine,
                     "torch": None, "ratio": cosine, "target": f"≥ {COSINE}",
                     "pass": None if cosine is None else cosine >= COSINE})
    return rows


def targets_table(rows: list[dict[str, Any]]) -> str:
    def shown(value: Any, what: str) -> str:
        if not isinstance(value, (int, float)):
            return "–"
        if "slug" in what or "RSS" in what:
            return f"{value / 1e6:,.1f} MB"
        return f"{value:.2f} s" if "start" in what else f"{value:.6f}"

    lines = ["| variant | | ONNX Runtime | PyTorch (slugslim) | ratio | target | |",
             "|---|---|---:|---:|---:|---:|---|"]
    for row in rows:
        verdict = "–" if row["pass"] is None else "PASS" if row["pass"] else "MISS"
        ratio = "–" if row["ratio"] is None else f"{row['ratio']:.6f}" if "cosine" in row["what"] else \
            f"{row['ratio']:.3f}×"
        lines.append(f"| {row['variant']} | {row['what']} | {shown(row['onnx'], row['what'])} | "
                     f"{shown(row['torch'], row['what'])} | {ratio} | {row['target']} | {verdict} |")
    return "\n".join(lines)
