"""AWS Signature Version 4: the headers that sign one S3 or IAM request (stdlib ``hmac``).

Pure: no I/O, no clock of its own (the caller passes the time), so a signature is a function
of its inputs and can be checked against AWS's published examples. Only header signing is
implemented (no presigned URLs, no chunked payloads): each request's body is hashed whole.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

__all__ = ["EMPTY_SHA256", "Credentials", "canonical_query", "sign", "uri_encode"]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key: its id and its secret."""

    access_key_id: str
    secret_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_key='***')"


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 encoding as SigV4 wants it: unreserved characters stay, the rest is %XX."""
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """``k=v`` pairs, each side encoded, sorted by key (a key without value keeps ``=``)."""
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key of one day, region and service."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def sign(
    *,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to add to a request: ``x-amz-date``, ``x-amz-content-sha256`` and
    ``Authorization``.

    ``path`` is already URI-encoded (each segment once, ``/`` kept); ``headers`` are the other
    headers to sign (lower-case names), besides ``host`` and the two added here. ``now`` must
    be in UTC.
    """
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    date = stamp[:8]
    signed = {
        **{k.lower(): " ".join(str(v).split()) for k, v in headers.items()},
        "host": host,
        "x-amz-date": stamp,
        "x-amz-content-sha256": payload_sha256,
    }
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path or "/",
            canonical_query(query),
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    key = signing_key(credentials.secret_key, date, region, service)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": stamp,
        "x-amz-content-sha256": payload_sha256,
        "Authorization": (
            f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        ),
    }
