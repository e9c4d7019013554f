"""AWS Signature Version 4 for the few S3 requests the build makes (HEAD and PUT of one object).

Why our own and not ``curl --aws-sigv4``: the build runs on heroku-22 too, whose curl (7.81)
signs only ``host`` and ``x-amz-date`` and hashes an empty body for ``--upload-file``, so S3
rejects its PUTs. Signing here with the object's sha256 as the payload hash (we compute it for
the manifest anyway) works on every stack and with every S3-compatible store. The dyno's boot
script only GETs, where curl's signing is enough. ``tests/test_models_store.py`` checks this
signer against botocore's on the same request.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Characters S3 leaves unescaped in a canonical URI (RFC 3986 unreserved, plus the separator).
_UNRESERVED = "-_.~"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str = ""

    def __repr__(self) -> str:
        # Dataclass reprs end up in tracebacks and debug output; never show the secret there.
        return f"Credentials(access_key={self.access_key[:4]}…, secret_key=***)"


def quote_key(key: str) -> str:
    """An object key as it appears in a URL path and in the canonical request (S3 encodes once)."""
    return "/".join(urllib.parse.quote(part, safe=_UNRESERVED) for part in key.split("/"))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sign(
    method: str,
    host: str,
    path: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: Credentials,
    region: str,
    now: datetime | None = None,
    service: str = "s3",
) -> dict[str, str]:
    """Return the headers to add to a request: Authorization, x-amz-date, x-amz-content-sha256.

    ``path`` is the already-encoded URL path (``quote_key``). ``host`` is the Host header as sent,
    with a port when it is not the scheme's default. Every header passed in is signed.
    """
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    signed: dict[str, str] = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed["host"] = host
    signed["x-amz-date"] = stamp
    signed["x-amz-content-sha256"] = payload_sha256
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path or "/",
            "",
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    key = _hmac(f"AWS4{credentials.secret_key}".encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    out = {name: signed[name] for name in names if name != "host"}
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out
