"""The ``mysql.database`` kind: a database (schema) with a default character set and collation."""

from __future__ import annotations

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
    DATABASE_NAMING,
    MAX_DATABASE_CHARS,
    META_DATABASE,
    Connections,
    ServerSwept,
    checked_name,
    execute,
    identifier,
    is_error,
    label_of,
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

#: Databases a config may never name: the server's own and the label store.
RESERVED = frozenset({"mysql", "information_schema", "performance_schema", "sys", META_DATABASE})
ER_DB_CREATE_EXISTS = 1007
ER_NO_SUCH_THREAD = 1094

_READ = (
    "SELECT s.SCHEMA_NAME, s.DEFAULT_CHARACTER_SET_NAME, s.DEFAULT_COLLATION_NAME, {label}"
    " FROM information_schema.SCHEMATA s WHERE s.SCHEMA_NAME = %s"
)
_CHARSET = r"^[a-z0-9_]{1,64}$"


class DatabaseConfig(KindConfig):
    """Config of ``mysql.database``."""

    server: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin URL (mysql://user:pw@host:port/)."
    )
    name: str = config_field(
        "", replace_on_change=True, description="Database name; empty means the physical name."
    )
    charset: str = config_field("utf8mb4", pattern=_CHARSET, description="Default character set.")
    collation: str = config_field(
        "",
        pattern=r"^$|" + _CHARSET,
        description="Default collation; empty means the character set's default.",
    )


def database_changes(row: tuple[str, str], cfg: DatabaseConfig) -> list[str]:
    """The ``ALTER DATABASE`` options that bring the observed (charset, collation) to ``cfg``;
    empty when nothing differs. Pure: the table tests call it."""
    charset, collation = row
    out: list[str] = []
    if charset.lower() != cfg.charset.lower() or (
        cfg.collation and collation.lower() != cfg.collation.lower()
    ):
        out.append(f"CHARACTER SET {cfg.charset}")
        if cfg.collation:
            out.append(f"COLLATE {cfg.collation}")
    return out


class DatabaseKind(ServerSwept):
    """``mysql.database``. The admin needs ``CREATE``, ``DROP`` and ``PROCESS`` (or SUPER)."""

    name: ClassVar[str] = "mysql.database"
    swept: ClassVar[str] = "database"
    config_model: ClassVar[type[KindConfig]] = DatabaseConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = DATABASE_NAMING

    def __init__(self, connections: Connections) -> None:
        self._conns = connections

    def _config(self, meta: ResourceMeta, config: Any) -> tuple[DatabaseConfig, str, list[str]]:
        cfg = parse_config(DatabaseConfig, config, meta.address)
        name = checked_name(
            meta.address, "database", cfg.name or meta.physical_name, limit=MAX_DATABASE_CHARS
        )
        if name.lower() in RESERVED:
            refuse(meta.address, f"The database name {name!r} is reserved")
        return cfg, name, url_secrets(cfg.server)

    def _read(self, conn: Any, name: str) -> tuple[Any, ...] | None:
        rows = read_with_label(conn, _READ, [name], ("database", name, ""))
        # information_schema compares case-insensitively: keep the exact match only
        exact = [r for r in rows if r[0] == name]
        return exact[0][1:] if exact else None

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the database and its label with one query; no writes."""
        cfg, name, secrets = self._config(req.meta, req.config)
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as conn,
        ):
            row = self._read(conn, name)
        if row is None:
            return None
        charset, collation, label = row
        managed, why = ownership(req.meta, name, label)
        same = not database_changes((charset, collation), cfg)
        return Observed(
            config={
                "name": cfg.name,
                "charset": cfg.charset if same else charset,
                "collation": cfg.collation if same else collation,
            },
            outputs={"name": name},
            managed=managed,
            detail=why,
        )

    def create(self, req: CreateRequest) -> Applied:
        """Create the database, or converge an existing one that is ours (crash recovery).

        The label is written first, then ``CREATE DATABASE``: a crash between the two leaves
        a label without a database, which observe reports as missing and a repeat completes.
        A database that exists without our label is refused before anything is written. A
        repeat call writes nothing.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Change the default character set and collation in place; safe to repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Any) -> Applied:
        cfg, name, secrets = self._config(meta, config)
        key = ("database", name, "")
        database = identifier(name)
        wanted = database_changes(("", ""), cfg)  # the full option list
        with provider_errors(meta.address, secrets=secrets), self._conns.connect(cfg.server) as c:
            row = self._read(c, name)
            if row is None:
                existing = label_of(c, key)
                if existing is not None and existing != meta.label:
                    refuse_foreign(meta, "database", name, f"its name is labelled {existing!r}")
                self._conns.ensure_meta(cfg.server, c)
                write_label(c, key, meta.label)
                try:
                    execute(c, f"CREATE DATABASE {database} {' '.join(wanted)}")
                except Exception as exc:
                    if is_error(exc, ER_DB_CREATE_EXISTS):  # made by someone else meanwhile
                        remove_label(c, key, meta.label)
                    raise
            else:
                charset, collation, label = row
                managed, why = ownership(meta, name, label)
                if not managed:
                    refuse_foreign(meta, "database", name, why)
                changes = database_changes((charset, collation), cfg)
                if changes:
                    execute(c, f"ALTER DATABASE {database} {' '.join(changes)}")
        return Applied(outputs={"name": name}, physical_id=name)

    def delete(self, req: DeleteRequest) -> None:
        """Drop the database, ending the sessions that use it first.

        A missing database is success; a foreign one is refused. A statement still waiting on
        the database's metadata lock ends after the operation timeout (``lock_wait_timeout``).
        The label goes last, so a repeat (or the leak sweeper) finishes a stopped delete.
        """
        cfg, name, secrets = self._config(req.meta, req.config)
        key = ("database", name, "")
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as c,
        ):
            row = self._read(c, name)
            if row is None:
                remove_label(c, key, req.meta.label)
                return
            managed, why = ownership(req.meta, name, row[2])
            if not managed:
                refuse_foreign(req.meta, "database", name, why)
            sessions = execute(
                c,
                "SELECT ID, DB FROM information_schema.PROCESSLIST WHERE DB = %s"
                " AND ID <> CONNECTION_ID()",
                [name],
            )
            for session, db in sessions:
                if db != name:
                    continue
                try:
                    execute(c, f"KILL CONNECTION {int(session):d}")
                except Exception as exc:
                    if not is_error(exc, ER_NO_SUCH_THREAD):
                        raise
            execute(c, f"DROP DATABASE IF EXISTS {identifier(name)}")
            remove_label(c, key, req.meta.label)
