r"""Canonical JSON: the one byte form stackyard hashes, signs and addresses content by.

Sorted keys, no insignificant whitespace, UTF-8. Equal documents give equal bytes, so equal
digests. Digests already written somewhere (release ids, the audit chain, the decision log,
plan and workload digests, OCI manifests, signatures) must never change, so the few forms in
use are options here rather than copies elsewhere, each kept where it was first used:

- ``ascii_only``: non-ASCII text escaped as ``\uXXXX`` (the platform, decision, audit, plan,
  workload and placeholder forms) instead of written as UTF-8 (the content-address form of
  releases, OCI documents and attestations);
- ``default``: how a value JSON has no type for is written (``str`` for documents that may
  hold dates or paths); without it such a value is a ``TypeError``;
- ``allow_nan=False``: refuse NaN and infinities, which are not JSON (component configs);
- ``spaced``: ``", "`` and ``": "`` between items (the plan's graph digest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypedDict, Unpack

__all__ = ["Options", "canonical_bytes", "canonical_json", "digest", "sha256_digest"]


class Options(TypedDict, total=False):
    """The forms of the module docstring: each is off unless given (``allow_nan`` is on)."""

    ascii_only: bool
    default: Callable[[Any], Any] | None
    allow_nan: bool
    spaced: bool


def canonical_json(value: Any, **options: Unpack[Options]) -> str:
    """The canonical JSON text of ``value`` (see the module docstring for the options).

    ``TypeError`` for a value JSON cannot hold (and ``default`` does not render), ``ValueError``
    for a circular structure, or for NaN when ``allow_nan`` is off.
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(", ", ": ") if options.get("spaced", False) else (",", ":"),
        ensure_ascii=options.get("ascii_only", False),
        default=options.get("default"),
        allow_nan=options.get("allow_nan", True),
    )


def canonical_bytes(value: Any, **options: Unpack[Options]) -> bytes:
    """``canonical_json`` encoded as UTF-8: the bytes that are hashed, signed or stored."""
    return canonical_json(value, **options).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: the OCI digest form, also used for content ids."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest(value: Any, **options: Unpack[Options]) -> str:
    """``sha256:<hex>`` of the canonical bytes of ``value``."""
    return sha256_digest(canonical_bytes(value, **options))
