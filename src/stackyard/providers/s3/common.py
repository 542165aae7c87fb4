"""What the s3 kinds share: the admin connection fields, ownership tags and name rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar

import pydantic

from stackyard.errors import ForeignObjectError, ProviderPermanentError
from stackyard.providers.api import KindConfig, ResourceMeta, config_field
from stackyard.providers.s3.api import CLIENTS, Api, Clients, Endpoint
from stackyard.providers.s3.sigv4 import Credentials

__all__ = [
    "OWNER_TAG",
    "AdminConfig",
    "decode_label",
    "encode_label",
    "label_tags",
    "parse",
    "refuse",
    "refuse_foreign",
]

#: The tag that carries the ownership label (and ``-2``, ``-3``... when it is longer than a
#: tag value may be).
OWNER_TAG = "stackyard-owner"
TAG_VALUE_MAX = 256
#: Characters AWS allows in S3 and IAM tag values (besides letters, digits and spaces, of
#: which only ASCII ones are kept as they are here); anything else is written ``=XX``.
_TAG_SAFE = re.compile(r"[A-Za-z0-9_.:/+\-@ ]")
_ESCAPE = re.compile(r"=([0-9A-F]{2})")
C = TypeVar("C", bound=KindConfig)


class AdminConfig(KindConfig):
    """The server and the admin key every s3 kind talks to it with."""

    endpoint: str = config_field(
        ...,
        replace_on_change=True,
        min_length=1,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="S3 endpoint URL, e.g. http://127.0.0.1:9000 or https://s3.eu-west-1.amazonaws.com.",
    )
    region: str = config_field(
        "us-east-1",
        replace_on_change=True,
        pattern=r"^[a-z0-9-]{1,32}$",
        description="The region buckets are made in and requests are signed for.",
    )
    access_key_id: str = config_field(
        ..., min_length=1, pattern=r"^[A-Za-z0-9+/=_.-]{1,128}$", description="Admin access key id."
    )
    secret_key: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin secret access key."
    )
    iam_endpoint: str = config_field(
        "",
        pattern=r"^$|^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="IAM endpoint; empty means the S3 endpoint (moto, Ceph RGW).",
    )

    def endpoint_of(self) -> Endpoint:
        """The API endpoint and key these fields name."""
        return Endpoint(
            url=self.endpoint,
            region=self.region,
            credentials=Credentials(self.access_key_id, self.secret_key),
            iam_url=self.iam_endpoint,
        )

    def api(self, clients: Clients = CLIENTS) -> Api:
        """The calls against this server, as its admin."""
        return clients.api(self.endpoint_of())


def parse(model: type[C], meta: ResourceMeta, config: Mapping[str, Any]) -> C:
    """``config`` validated by ``model``; a permanent error naming the fields, never values."""
    try:
        return model.model_validate(dict(config))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ProviderPermanentError(f"Invalid config: {problems}", address=meta.address) from None


def encode_label(label: str) -> str:
    """``label`` in the characters tag values allow (``=XX`` per UTF-8 byte otherwise)."""
    out = []
    for ch in label:
        if _TAG_SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def decode_label(text: str) -> str:
    """The label ``encode_label`` wrote."""
    out = bytearray()
    i = 0
    while i < len(text):
        m = _ESCAPE.match(text, i)
        if m:
            out.append(int(m.group(1), 16))
            i = m.end()
        else:
            out += text[i].encode("utf-8")
            i += 1
    return out.decode("utf-8", "surrogatepass")


def label_tags(label: str) -> dict[str, str]:
    """The owner tags of ``label``: ``stackyard-owner``, then ``-2``, ``-3``... as needed."""
    encoded = encode_label(label)
    chunks = [encoded[i : i + TAG_VALUE_MAX] for i in range(0, len(encoded), TAG_VALUE_MAX)]
    return {(OWNER_TAG if i == 0 else f"{OWNER_TAG}-{i + 1}"): c for i, c in enumerate(chunks)}


def label_of(tags: Mapping[str, str]) -> str | None:
    """The label the owner tags in ``tags`` carry, or ``None`` when there are none."""
    if OWNER_TAG not in tags:
        return None
    parts, i = [tags[OWNER_TAG]], 2
    while f"{OWNER_TAG}-{i}" in tags:
        parts.append(tags[f"{OWNER_TAG}-{i}"])
        i += 1
    return decode_label("".join(parts))


def ownership(meta: ResourceMeta, what: str, name: str, label: str | None) -> tuple[bool, str]:
    """Whether ``label`` is ours, and why not."""
    if label == meta.label:
        return True, ""
    if label is None:
        return False, f"{what} '{name}' exists without a stackyard label"
    return False, f"{what} '{name}' is labelled {label!r}, not {meta.label!r}"


def refuse(meta: ResourceMeta, message: str) -> NoReturn:
    """A permanent error for ``meta``."""
    raise ProviderPermanentError(message, address=meta.address)


def refuse_foreign(meta: ResourceMeta, what: str, name: str, why: str) -> NoReturn:
    """The error for an object at our name that is not ours."""
    raise ForeignObjectError(
        f"The {what} '{name}' exists and is not managed by this environment ({why})",
        address=meta.address,
        hint="It is not this installation's: remove or rename it, or choose another name. "
        "Taking over an existing object ('stackyard adopt') is not available yet.",
    )
