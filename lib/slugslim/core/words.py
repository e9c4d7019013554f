"""The longer warnings the phases print, worded in one place (``errors`` words the failures).

Each function returns the whole warning, first line ``Warning: …``, for ``log.warning``; the
steps decide when to print it. Written for a Heroku user who has never heard of slugslim.
"""

from __future__ import annotations

from slugslim.core import log


def model_not_a_regular_file(path: str, problem: str) -> str:
    return (f"Warning: {path} stays in the slug: {problem}.\n"
            "slugslim only moves regular files, so that nothing outside your app can be read or removed.")


def models_without_a_source(count: int, total_bytes: int) -> str:
    return (f"Warning: {count} model(s) ({log.human_bytes(total_bytes)}) stay in the slug.\n"
            "To take them out and fetch them at dyno boot instead, set models.source in slugslim.yml\n"
            "(for example 'source: s3://my-bucket/models' with 'upload: true' and the AWS_* config vars).\n"
            "To silence this, set 'models: false'.")


def models_not_at_the_source(count: int, lines: str) -> str:
    return (f"Warning: {count} model(s) stay in the slug, because they are not known to be at models.source:\n"
            f"{lines}\n"
            "The app still works: these models ship inside the slug as before. To take them out, fix the\n"
            "cause above (set models.upload: true, or the AWS_* config vars).\n"
            "Set models.strict: true to fail the build instead.")


def framework_kept(framework: str, engine: str, reason: str) -> str:
    return (f"Warning: slugslim kept {framework} for this app, because " + reason + "\n"
            f"The app is deployed as it would be without runtime.engine: {engine}: it works, with the "
            f"larger slug\nand memory of {framework}. Set runtime.engine: tensorflow to silence this.")


def web_process_over_the_smallest_dyno(mb: int, smallest_mb: int, measured_by: str) -> str:
    return (f"Warning: One web process of this app needs about {mb} MB, more than the {smallest_mb} MB of\n"
            "Eco, Basic and Standard-1X dynos. There the app is over its memory quota (R14) from the start,\n"
            f"and Heroku restarts it at twice the quota (R15). slugslim measured this at build time\n"
            f"({measured_by}). Choose one of:\n"
            "  - a larger dyno: Standard-2X has 1 GB (heroku ps:type web=standard-2x);\n"
            "  - import the framework lazily, inside the code that needs it, not when the app starts;\n"
            "  - a smaller runtime: for inference only, ai-edge-litert (TensorFlow Lite) runs a small Keras\n"
            "    model in about 40 MB.\n"
            "Set 'memory: false' in slugslim.yml to silence this and leave WEB_CONCURRENCY to heroku/python.")


def hub_not_baked(why: str) -> str:
    return (f"Warning: Hugging Face models were not downloaded at build time. {why}\n"
            "The app works as before: each dyno downloads its models from the Hub when it boots.")


def hub_tool_failed(why: str) -> str:
    return (f"Warning: The models in hf.models could not be downloaded: {why}\n"
            "The build goes on; each dyno downloads them from the Hub when it loads them.")


def hub_model_not_fetched(model: str, origin: str, kind: str, message: str) -> str:
    fix = {"missing": "no model by that name exists on the Hub (or it is private: set the HF_TOKEN config var).",
           "gated": "the model is gated: accept its terms on the Hub, and set the HF_TOKEN config var to a token\n"
                    "of that account.",
           "revision": "that revision does not exist in the repo: check the branch, tag or commit.",
           "unreachable": "the Hub could not be reached from the build."}.get(kind, "")
    return (f"Warning: {model}, named in {origin}, was not downloaded: {fix or message}\n"
            + (f"({message})\n" if fix else "") + "Each dyno downloads it from the Hub when it loads it.")


def hub_stays_online(why: str) -> str:
    return (f"Warning: Dynos still contact the Hugging Face Hub at boot. {why}\n"
            "The models ship in the slug, so the dyno reads them from there, but it asks the Hub first, and a\n"
            "Hub outage slows or stops its boot. Name the files it still needs in hf.models (with 'files').")


def hub_models_too_big(total_bytes: int, hard_mb: int) -> str:
    return (f"Warning: The Hugging Face models are {log.human_bytes(total_bytes)}, more than Heroku's slug limit "
            f"of {hard_mb} MB on their own.\n"
            "Set models.source in slugslim.yml to keep them in a bucket instead, fetched when a dyno boots.")


def hub_ids_not_loaded(missing: dict[str, list[str]]) -> str:
    lines = "\n".join(f"  {model} ({', '.join(places)})" for model, places in sorted(missing.items()))
    return ("Warning: The app names these Hugging Face models, but none of the build's checks loaded them,\n"
            f"so dynos still download them from the Hub when they first load them:\n{lines}\n"
            "Add them to hf.models in slugslim.yml to download them at build time, or add the request path that\n"
            "loads them to verify.paths.")


def lock_not_swapped(lock: str, manifest: str, why: str) -> str:
    return (f"Warning: {lock} was not re-locked for the CPU builds: {why}\n"
            f"{manifest} and {lock} are exactly as you wrote them. The install downloads the GPU builds they\n"
            "lock, and slugslim replaces them with the CPU builds after it (the build goes on).")
