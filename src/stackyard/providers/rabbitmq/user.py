"""``rabbitmq.user``: a user with a password, labelled through one of its tags."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import pydantic

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
    HASHING_ALGORITHM,
    LABEL_TAG_PREFIX,
    MAX_TAG_LENGTH,
    NAMING,
    PASSWORD_DRIFTED,
    Clients,
    ManagementApi,
    RabbitApiError,
    checked_name,
    hash_password,
    label_of_tag,
    ownership,
    provider_errors,
    refuse,
    refuse_foreign,
    tag_of_label,
    url_secrets,
    verify_password,
)
from stackyard.providers.rabbitmq.config import parse

#: Tags a platform may add (``management`` lets the user into the web UI, limited to its
#: own vhosts). Never a label: those start with ``stackyard:``.
TAG_PATTERN = re.compile(r"^[a-z][a-z_-]{0,31}$")
#: A swept user's delete needs no password; this placeholder appears in no message.
_UNUSED_PASSWORD = hashlib.sha256(b"stackyard: a swept user's delete needs no password").hexdigest()


class UserConfig(KindConfig):
    """Config of ``rabbitmq.user``."""

    server: str = config_field(
        ...,
        sensitive=True,
        min_length=1,
        description="Management URL with admin credentials (http://user:pw@host:15672).",
    )
    name: str = config_field(
        "", replace_on_change=True, description="User name; empty means the physical name."
    )
    password: str = config_field(..., sensitive=True, min_length=1)
    tags: tuple[str, ...] = config_field(
        (),
        description="Extra user tags (e.g. 'management'); the ownership label is added.",
    )

    @pydantic.field_validator("tags")
    @classmethod
    def _tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in value if not TAG_PATTERN.fullmatch(t)]
        if bad:
            raise ValueError(f"{len(bad)} tag(s) are not lower-case words like 'management'")
        return tuple(sorted(set(value)))


class UserKind:
    """``rabbitmq.user``: the label is a tag (the label percent-encoded, ``stackyard:...``) set
    in the same PUT as the user. The password crosses the wire only as a salted SHA-256
    (``password_hash``), and is re-set only when the server's hash does not verify it."""

    name: ClassVar[str] = "rabbitmq.user"
    config_model: ClassVar[type[KindConfig]] = UserConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def _resolve(
        self, meta: ResourceMeta, config: Mapping[str, Any]
    ) -> tuple[UserConfig, str, list[str]]:
        cfg = parse(UserConfig, meta, config)
        name = checked_name(meta, "user", cfg.name or meta.physical_name)
        return cfg, name, [*url_secrets(cfg.server), cfg.password]

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the user (one GET); no writes. The password is verified against the
        server's salted hash locally; extra tags are compared as a set."""
        cfg, name, secrets = self._resolve(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=secrets):
            user = self._clients.api(cfg.server, req.meta.address).get("users", name)
        if user is None:
            return None
        tags = user_tags(user)
        managed, why = ownership(req.meta, name, label_of_tag(tags))
        extra = tuple(sorted(t for t in tags if not t.startswith(LABEL_TAG_PREFIX)))
        same_password = verify_password(
            cfg.password, str(user.get("password_hash") or ""), str(user.get("hashing_algorithm"))
        )
        return Observed(
            config={
                "name": cfg.name,
                "password": cfg.password if same_password else PASSWORD_DRIFTED,
                "tags": list(cfg.tags) if extra == cfg.tags else list(extra),
            },
            outputs={"username": name},
            managed=managed,
            detail=why,
        )

    def create(self, req: CreateRequest) -> Applied:
        """Create the user with its label tag (one PUT), or converge ours; a foreign user is
        refused before any write. Writes nothing when ours already matches. Safe to repeat.

        The API has no create-if-absent: a user made by someone else between our read and
        our PUT would be taken over. Physical names hash the installation, so only an
        explicitly named user can meet that race.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Bring the password and tags in line (one PUT, only when they differ). Safe to
        repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Mapping[str, Any]) -> Applied:
        cfg, name, secrets = self._resolve(meta, config)
        tag = tag_of_label(meta.label)
        if len(tag) > MAX_TAG_LENGTH:
            refuse(
                meta.address,
                f"The ownership label of this user is {len(tag)} characters long; RabbitMQ "
                f"user tags hold at most {MAX_TAG_LENGTH}",
                hint="Shorten the environment, workload or resource names.",
            )
        with provider_errors(meta.address, secrets=secrets):
            api = self._clients.api(cfg.server, meta.address)
            user = api.get("users", name)
            password_hash = ""
            if user is not None:
                managed, why = ownership(meta, name, label_of_tag(user_tags(user)))
                if not managed:
                    refuse_foreign(meta, "user", name, why)
                current, algorithm = (
                    str(user.get("password_hash") or ""),
                    str(user.get("hashing_algorithm")),
                )
                if algorithm == HASHING_ALGORITHM and verify_password(
                    cfg.password, current, algorithm
                ):
                    password_hash = current  # keep the salt: no churn on a repeat
                if password_hash and sorted(user_tags(user)) == sorted([tag, *cfg.tags]):
                    return Applied(outputs={"username": name}, physical_id=name)
            api.put(
                "users",
                name,
                body={
                    "password_hash": password_hash or hash_password(cfg.password),
                    "hashing_algorithm": HASHING_ALGORITHM,
                    # a comma-separated string: every version parses it (lists came in 3.9)
                    "tags": ",".join([tag, *cfg.tags]),
                },
            )
        return Applied(outputs={"username": name}, physical_id=name)

    def delete(self, req: DeleteRequest) -> None:
        """Delete the user, then close its open connections (after the delete, none can
        open again); missing is success, a foreign user is refused. Safe to repeat.

        A kill between the two steps leaves connections that were already open until they
        close: the user is gone, so they cannot re-authenticate.
        """
        cfg, name, secrets = self._resolve(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=secrets):
            api = self._clients.api(cfg.server, req.meta.address)
            user = api.get("users", name)
            if user is None:
                return
            managed, why = ownership(req.meta, name, label_of_tag(user_tags(user)))
            if not managed:
                refuse_foreign(req.meta, "user", name, why)
            api.delete("users", name)
            _close_connections(api, name)

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The management URL: users are listed once per server."""
        return str(config.get("server", ""))

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """Users whose label tag starts with ``prefix`` (one GET of every user); no writes."""
        server = str(config.get("server", ""))
        with provider_errors("sweep", secrets=url_secrets(server)):
            rows = self._clients.api(server, "sweep").get("users")
        found = []
        for row in rows or []:
            label = label_of_tag(user_tags(row))
            if label is not None and label.startswith(prefix):
                delete = {"server": server, "password": _UNUSED_PASSWORD}
                found.append(Labelled(str(row["name"]), label, delete))
        return sorted(found, key=lambda o: o.physical_name)[:limit]


def user_tags(user: Mapping[str, Any]) -> list[str]:
    """A user's tags: a list since 3.9, a comma-separated string before."""
    raw = user.get("tags") or []
    if isinstance(raw, str):
        return [t for t in raw.split(",") if t]
    return [str(t) for t in raw]


def _close_connections(api: ManagementApi, name: str) -> None:
    """Close the user's connections (``DELETE /api/connections/username/...``, 3.9+; an older
    server answers 404 or 405, and its connections end when they next authenticate)."""
    try:
        api.delete("connections", "username", name)
    except RabbitApiError as exc:
        if exc.status != 405:
            raise
