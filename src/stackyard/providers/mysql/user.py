"""The ``mysql.user`` kind: an account ``'name'@'host'`` with a password and a connection limit."""

from __future__ import annotations

import hashlib
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
)
from stackyard.providers.mysql.connection import (
    MAX_HOST_CHARS,
    MAX_USER_CHARS,
    USER_NAMING,
    Connections,
    ServerSwept,
    checked_name,
    execute,
    is_error,
    label_of,
    native_hash,
    ownership,
    parse_config,
    provider_errors,
    read_with_label,
    refuse,
    refuse_foreign,
    remove_label,
    url_secrets,
    write_label,
)

#: What observe reports as the password when the stored hash does not match the desired one.
PASSWORD_DRIFTED = "<password changed outside stackyard>"  # noqa: S105  (a marker)
NATIVE_PLUGIN = "mysql_native_password"
_UNUSED_PASSWORD = hashlib.sha256(b"stackyard: a swept user's delete needs no password").hexdigest()
ER_CANNOT_USER = 1396

_READ = (
    "SELECT u.User, u.Host, u.plugin, u.authentication_string, u.max_user_connections, {label}"
    " FROM mysql.user u WHERE u.User = %s AND u.Host = %s"
)


class UserConfig(KindConfig):
    """Config of ``mysql.user``."""

    server: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin URL (mysql://user:pw@host:port/)."
    )
    name: str = config_field(
        "", replace_on_change=True, description="User name; empty means the physical name."
    )
    host: str = config_field(
        "%",
        replace_on_change=True,
        min_length=1,
        max_length=MAX_HOST_CHARS,
        description="Where the user may connect from: '%' (anywhere), 'localhost', '10.0.%'...",
    )
    password: str = config_field(..., sensitive=True, min_length=1)
    max_user_connections: int = config_field(
        0, ge=0, le=2_147_483_647, description="Most concurrent connections; 0 means no limit."
    )


def user_changes(row: tuple[Any, ...], cfg: UserConfig) -> list[str]:
    """The ``ALTER USER`` clauses that bring the observed ``row`` (plugin, hash, limit) to
    ``cfg``; empty when nothing differs. Pure: the table tests call it."""
    plugin, stored, limit = row
    clauses = []
    if plugin != NATIVE_PLUGIN or str(stored or "") != native_hash(cfg.password):
        clauses.append("password")
    if int(limit or 0) != cfg.max_user_connections:
        clauses.append("limit")
    return clauses


class UserKind(ServerSwept):
    """``mysql.user``. The admin needs ``CREATE USER`` and ``SELECT`` on ``mysql.*``."""

    name: ClassVar[str] = "mysql.user"
    swept: ClassVar[str] = "user"
    config_model: ClassVar[type[KindConfig]] = UserConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = USER_NAMING

    def __init__(self, connections: Connections) -> None:
        self._conns = connections

    def _sweep_config(self, server: str, host: str) -> dict[str, Any]:
        # a delete never uses the password; a fixed placeholder keeps the config valid
        return {"server": server, "host": host, "password": _UNUSED_PASSWORD}

    def _config(self, meta: ResourceMeta, config: Any) -> tuple[UserConfig, str, list[str]]:
        cfg = parse_config(UserConfig, config, meta.address)
        name = checked_name(
            meta.address, "user", cfg.name or meta.physical_name, limit=MAX_USER_CHARS
        )
        checked_name(meta.address, "host", cfg.host, limit=MAX_HOST_CHARS)
        secrets = [*url_secrets(cfg.server), cfg.password, native_hash(cfg.password)]
        return cfg, name, secrets

    def _read(self, conn: Any, name: str, host: str) -> tuple[Any, ...] | None:
        rows = read_with_label(conn, _READ, [name, host], ("user", name, host))
        # mysql.user compares host names case-insensitively: keep the exact match only
        exact = [r for r in rows if r[0] == name and r[1] == host]
        return exact[0][2:] if exact else None

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the account and its label with one query; no writes.

        The password is compared by its ``mysql_native_password`` hash: a match reports the
        desired value, anything else ``PASSWORD_DRIFTED``.
        """
        cfg, name, secrets = self._config(req.meta, req.config)
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as conn,
        ):
            row = self._read(conn, name, cfg.host)
        if row is None:
            return None
        plugin, stored, limit, label = row
        managed, why = ownership(req.meta, name, label)
        drift = user_changes((plugin, stored, limit), cfg)
        return Observed(
            config={
                "name": cfg.name,
                "host": cfg.host,
                "password": PASSWORD_DRIFTED if "password" in drift else cfg.password,
                "max_user_connections": int(limit or 0),
            },
            outputs={"name": name, "host": cfg.host},
            managed=managed,
            detail=why,
        )

    def create(self, req: CreateRequest) -> Applied:
        """Create the account, or converge an existing one that is ours (crash recovery).

        The label is written first, then ``CREATE USER``: a crash between the two leaves a
        label without an account, which observe reports as missing and a repeat completes. An
        account that exists without our label is refused before anything is written. Only
        what differs is changed, so a repeat call writes nothing.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Converge the account in place (recreating it if it vanished); safe to repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Any) -> Applied:
        cfg, name, secrets = self._config(meta, config)
        account = [name, cfg.host]
        key = ("user", name, cfg.host)
        auth = "IDENTIFIED VIA mysql_native_password USING %s"
        limit = f"WITH MAX_USER_CONNECTIONS {cfg.max_user_connections:d}"
        with provider_errors(meta.address, secrets=secrets), self._conns.connect(cfg.server) as c:
            row = self._read(c, name, cfg.host)
            if row is None:
                existing = label_of(c, key)
                if existing is not None and existing != meta.label:
                    refuse_foreign(meta, "user", name, f"its name is labelled {existing!r}")
                self._conns.ensure_meta(cfg.server, c)
                write_label(c, key, meta.label)
                try:
                    execute(
                        c,
                        f"CREATE USER %s@%s {auth} {limit}",
                        [*account, native_hash(cfg.password)],
                    )
                except Exception as exc:
                    if is_error(exc, ER_CANNOT_USER):  # made by someone else meanwhile
                        remove_label(c, key, meta.label)
                    raise
            else:
                plugin, stored, current_limit, label = row
                managed, why = ownership(meta, name, label)
                if not managed:
                    refuse_foreign(meta, "user", name, why)
                changes = user_changes((plugin, stored, current_limit), cfg)
                if "password" in changes:
                    execute(c, f"ALTER USER %s@%s {auth}", [*account, native_hash(cfg.password)])
                if "limit" in changes:
                    execute(c, f"ALTER USER %s@%s {limit}", account)
        return Applied(outputs={"name": name, "host": cfg.host}, physical_id=f"{name}@{cfg.host}")

    def delete(self, req: DeleteRequest) -> None:
        """Drop the account and end its sessions; a missing one is success, a foreign one is
        refused.

        ``DROP USER`` removes its grants too; open sessions would outlive it, so they are
        killed first. The label goes last, so a delete stopped at any step is finished by a
        repeat (or by the leak sweeper, which lists labels).
        """
        cfg, name, secrets = self._config(req.meta, req.config)
        key = ("user", name, cfg.host)
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as c,
        ):
            row = self._read(c, name, cfg.host)
            if row is None:
                remove_label(c, key, req.meta.label)
                return
            managed, why = ownership(req.meta, name, row[3])
            if not managed:
                refuse_foreign(req.meta, "user", name, why)
            execute(c, "DROP USER IF EXISTS %s@%s", [name, cfg.host])
            sessions = execute(
                c,
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s"
                " AND ID <> CONNECTION_ID()",
                [name],
            )
            for (session,) in sessions:
                try:
                    execute(c, f"KILL CONNECTION {int(session):d}")
                except Exception as exc:
                    if not is_error(exc, 1094):  # unknown thread: it ended meanwhile
                        raise
            remove_label(c, key, req.meta.label)


def check_user_name(address: str, name: str) -> str:
    """``name`` if it can be a user name (used by the grant kind)."""
    if not name:
        refuse(address, "The user name is empty")
    return checked_name(address, "user", name, limit=MAX_USER_CHARS)
