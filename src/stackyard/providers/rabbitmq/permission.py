"""``rabbitmq.permission``: a user's configure/write/read patterns on one vhost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    NamingRule,
    Observed,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    config_field,
    label_prefix,
)
from stackyard.providers.rabbitmq.client import (
    NAMING,
    Clients,
    ManagementApi,
    checked_name,
    label_of_tag,
    provider_errors,
    refuse,
    url_secrets,
)
from stackyard.providers.rabbitmq.config import parse
from stackyard.providers.rabbitmq.user import user_tags
from stackyard.providers.rabbitmq.vhost import vhost_label

PATTERNS = ("configure", "write", "read")
#: A pattern is a regular expression RabbitMQ compiles (and refuses with 400 when invalid).
MAX_PATTERN = 1024


def _pattern(description: str) -> Any:
    return config_field(".*", max_length=MAX_PATTERN, description=description)


class PermissionConfig(KindConfig):
    """Config of ``rabbitmq.permission``."""

    server: str = config_field(
        ...,
        sensitive=True,
        min_length=1,
        description="Management URL with admin credentials (http://user:pw@host:15672).",
    )
    vhost: str = config_field(..., replace_on_change=True, min_length=1)
    user: str = config_field(..., replace_on_change=True, min_length=1)
    configure: str = _pattern("Resources the user may declare and delete (a regex).")
    write: str = _pattern("Resources the user may publish to (a regex).")
    read: str = _pattern("Resources the user may consume from or bind (a regex).")


class PermissionKind:
    """``rabbitmq.permission``: not an object of its own (it goes with its user or vhost), so
    it carries no label; instead every write requires the vhost and the user to carry this
    environment's labels, so a config cannot grant on someone else's vhost or user."""

    name: ClassVar[str] = "rabbitmq.permission"
    config_model: ClassVar[type[KindConfig]] = PermissionConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def _resolve(self, meta: ResourceMeta, config: Mapping[str, Any]) -> PermissionConfig:
        cfg = parse(PermissionConfig, meta, config)
        checked_name(meta, "vhost", cfg.vhost)
        checked_name(meta, "user", cfg.user)
        return cfg

    @staticmethod
    def _outputs(cfg: PermissionConfig) -> dict[str, Any]:
        return {"vhost": cfg.vhost, "user": cfg.user, **{p: getattr(cfg, p) for p in PATTERNS}}

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the permission (one GET); no writes. ``None`` when the user holds none on
        the vhost."""
        cfg = self._resolve(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=url_secrets(cfg.server)):
            api = self._clients.api(cfg.server, req.meta.address)
            found = api.get("permissions", cfg.vhost, cfg.user)
        if found is None:
            return None
        observed = {p: str(found.get(p, "")) for p in PATTERNS}
        return Observed(
            config={"vhost": cfg.vhost, "user": cfg.user, **observed},
            outputs={"vhost": cfg.vhost, "user": cfg.user, **observed},
        )

    def create(self, req: CreateRequest) -> Applied:
        """Set the three patterns (one PUT, only when they differ); the vhost and the user
        must carry this environment's labels. Safe to repeat."""
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Set the three patterns as configured. Safe to repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Mapping[str, Any]) -> Applied:
        cfg = self._resolve(meta, config)
        with provider_errors(meta.address, secrets=url_secrets(cfg.server)):
            api = self._clients.api(cfg.server, meta.address)
            self._check_ours(api, meta, cfg, missing_ok=False)
            found = api.get("permissions", cfg.vhost, cfg.user)
            wanted = {p: getattr(cfg, p) for p in PATTERNS}
            if found is None or {p: found.get(p) for p in PATTERNS} != wanted:
                api.put("permissions", cfg.vhost, cfg.user, body=wanted)
        return Applied(outputs=self._outputs(cfg), physical_id=f"{cfg.vhost}:{cfg.user}")

    def delete(self, req: DeleteRequest) -> None:
        """Revoke the user's permission on the vhost. Gone with its user or vhost, or never
        set: success. Refused when the vhost or user is not this environment's. Safe to
        repeat."""
        cfg = self._resolve(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=url_secrets(cfg.server)):
            api = self._clients.api(cfg.server, req.meta.address)
            if not self._check_ours(api, req.meta, cfg, missing_ok=True):
                return
            api.delete("permissions", cfg.vhost, cfg.user)

    def _check_ours(
        self, api: ManagementApi, meta: ResourceMeta, cfg: PermissionConfig, *, missing_ok: bool
    ) -> bool:
        """Whether both the vhost and the user exist; refuses either when it is not labelled
        by this installation and environment (or missing, unless ``missing_ok``)."""
        prefix = label_prefix(meta.installation, meta.env)
        vhost = api.get("vhosts", cfg.vhost)
        user = api.get("users", cfg.user)
        for what, name, obj, label in (
            ("vhost", cfg.vhost, vhost, vhost_label(vhost) if vhost else None),
            ("user", cfg.user, user, label_of_tag(user_tags(user)) if user else None),
        ):
            if obj is None:
                if missing_ok:
                    continue
                refuse(
                    meta.address,
                    f"The RabbitMQ {what} {name!r} does not exist",
                    hint=f"Create the {what} first (the component's {what} resource).",
                )
            if not (label or "").startswith(prefix):
                refuse(
                    meta.address,
                    f"The RabbitMQ {what} {name!r} is not managed by this environment, so "
                    "stackyard does not change its permissions",
                )
        return vhost is not None and user is not None
