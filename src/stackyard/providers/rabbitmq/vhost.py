"""``rabbitmq.vhost``: a virtual host, labelled through its description."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    Labelled,
    NamingRule,
    Observed,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    config_field,
)
from stackyard.providers.rabbitmq.client import (
    NAMING,
    Clients,
    checked_name,
    ownership,
    provider_errors,
    refuse_foreign,
    url_secrets,
)
from stackyard.providers.rabbitmq.config import parse


class VhostConfig(KindConfig):
    """Config of ``rabbitmq.vhost``."""

    server: str = config_field(
        ...,
        sensitive=True,
        min_length=1,
        description="Management URL with admin credentials (http://user:pw@host:15672).",
    )
    name: str = config_field(
        "", replace_on_change=True, description="Vhost name; empty means the physical name."
    )


class VhostKind:
    """``rabbitmq.vhost``: the label is the vhost's ``description`` (set in the same PUT that
    creates it). Deleting the vhost deletes its queues, exchanges and messages with it."""

    name: ClassVar[str] = "rabbitmq.vhost"
    config_model: ClassVar[type[KindConfig]] = VhostConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def _resolve(self, meta: ResourceMeta, config: Mapping[str, Any]) -> tuple[VhostConfig, str]:
        cfg = parse(VhostConfig, meta, config)
        return cfg, checked_name(meta, "vhost", cfg.name or meta.physical_name)

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the vhost (one GET); no writes. ``managed`` is False unless its description
        is exactly our label (an edited description makes it foreign)."""
        cfg, name = self._resolve(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=url_secrets(cfg.server)):
            found = self._clients.api(cfg.server, req.meta.address).get("vhosts", name)
        if found is None:
            return None
        managed, why = ownership(req.meta, name, vhost_label(found))
        return Observed(
            config={"name": cfg.name}, outputs={"name": name}, managed=managed, detail=why
        )

    def create(self, req: CreateRequest) -> Applied:
        """Create the vhost with our label (one PUT); ours already there converges untouched,
        a foreign one is refused before any write. Safe to repeat.

        The API has no create-if-absent: a vhost made by someone else between our read and
        our PUT would be relabelled. Physical names hash the installation, so only an
        explicitly named vhost can meet that race.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Nothing can change in place (the name replaces): converge as create does."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Mapping[str, Any]) -> Applied:
        cfg, name = self._resolve(meta, config)
        with provider_errors(meta.address, secrets=url_secrets(cfg.server)):
            api = self._clients.api(cfg.server, meta.address)
            found = api.get("vhosts", name)
            if found is not None:
                managed, why = ownership(meta, name, vhost_label(found))
                if not managed:
                    refuse_foreign(meta, "vhost", name, why)
            else:
                api.put("vhosts", name, body={"description": meta.label})
        return Applied(outputs={"name": name}, physical_id=name)

    def delete(self, req: DeleteRequest) -> None:
        """Delete the vhost and everything in it (RabbitMQ closes its connections); missing
        is success, a foreign one is refused. Safe to repeat."""
        cfg, name = self._resolve(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=url_secrets(cfg.server)):
            api = self._clients.api(cfg.server, req.meta.address)
            found = api.get("vhosts", name)
            if found is None:
                return
            managed, why = ownership(req.meta, name, vhost_label(found))
            if not managed:
                refuse_foreign(req.meta, "vhost", name, why)
            api.delete("vhosts", name)

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The management URL: vhosts are listed once per server."""
        return str(config.get("server", ""))

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """Vhosts whose description starts with ``prefix`` (one GET of names and
        descriptions); no writes."""
        server = str(config.get("server", ""))
        with provider_errors("sweep", secrets=url_secrets(server)):
            rows = self._clients.api(server, "sweep").get(
                "vhosts", params={"columns": "name,description"}
            )
        found = [
            Labelled(str(row["name"]), label, {"server": server})
            for row in rows or []
            if (label := vhost_label(row)).startswith(prefix)
        ]
        return sorted(found, key=lambda o: o.physical_name)[:limit]


def vhost_label(vhost: Mapping[str, Any]) -> str:
    """The vhost's description (3.8+ also nests it under ``metadata``)."""
    value = vhost.get("description")
    if value is None:
        value = (vhost.get("metadata") or {}).get("description")
    return str(value or "")
