"""The app `make test-docker` builds and boots: a WSGI callable served by gunicorn, nothing else.

Its answer names the interpreter that serves it, so the test sees that the dyno runs the slug's
own Python (/app/.heroku/python), not the image's.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"slugslim test-docker app: Python {platform.python_version()} at {sys.prefix}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
