"""``proxy.hostname``: a host name under ``*.localhost`` (or another domain) for a ``dns``
request. Pure: no real object exists; the name is derived from the config and lives in state.

``*.localhost`` resolves to the loopback address in browsers (RFC 6761) and in glibc's
``myhostname`` module, so ``http://<host>:<proxy port>/`` reaches the environment's proxy; curl
takes ``--resolve`` or a ``Host`` header.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

import pydantic

from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    NamingRule,
    Observed,
    ObserveRequest,
    UpdateRequest,
    config_field,
)

__all__ = ["HostnameConfig", "HostnameKind", "host_label"]

_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
MAX_LABEL = 63


def host_label(text: str) -> str:
    """``text`` as one DNS label: lower-case, runs of other characters as ``-``, trimmed;
    past 63 characters (or when nothing is left) cut and suffixed with 8 hex of its sha256,
    so two long names stay apart."""
    label = _NOT_ALLOWED.sub("-", text.lower()).strip("-")
    if label and len(label) <= MAX_LABEL:
        return label
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    head = label[: MAX_LABEL - 9].rstrip("-")
    return f"{head}-{digest}" if head else f"h{digest}"


class HostnameConfig(KindConfig):
    """Config of ``proxy.hostname``."""

    name: str = config_field(
        ...,
        replace_on_change=True,
        max_length=1024,
        description="The wanted first label (e.g. <workload>-<env>); made DNS-safe.",
    )
    domain: str = config_field("localhost", replace_on_change=True, description="The domain.")

    @pydantic.field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if len(value) > 180 or not _DOMAIN.match(value):
            raise ValueError("must be a lower-case DNS domain such as localhost")
        return value


class HostnameKind:
    """``proxy.hostname``: outputs ``host``. Every field is replace-on-change."""

    name: ClassVar[str] = "proxy.hostname"
    config_model: ClassVar[type[KindConfig]] = HostnameConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NamingRule()

    @staticmethod
    def _host(config: Any) -> str:
        cfg = HostnameConfig.model_validate(dict(config))
        return f"{host_label(cfg.name)}.{cfg.domain}"

    def observe(self, req: ObserveRequest) -> Observed | None:
        """The recorded host (``None`` before the first create). No I/O."""
        host = req.outputs.get("host")
        if not host:
            return None
        return Observed(config=dict(req.config), outputs={"host": host})

    def create(self, req: CreateRequest) -> Applied:
        """Derive the host. No I/O; safe to repeat (same config, same host)."""
        return Applied({"host": self._host(req.config)})

    def update(self, req: UpdateRequest) -> Applied:
        """Derive the host again (only replace-on-change fields exist). No I/O."""
        return Applied({"host": self._host(req.config)})

    def delete(self, req: DeleteRequest) -> None:
        """Nothing to delete. No I/O."""
