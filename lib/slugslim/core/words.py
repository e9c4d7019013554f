"""The longer warnings the finish steps print, worded in one place (``errors`` words the failures).

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


def tensorflow_kept(reason: str) -> str:
    return ("Warning: slugslim kept TensorFlow for this app, because " + reason + "\n"
            "The app is deployed as it would be without runtime.engine: litert: it works, with the "
            "larger slug\nand memory of TensorFlow. Set runtime.engine: tensorflow to silence this.")


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
