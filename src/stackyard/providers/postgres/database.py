"""The ``postgres.database`` kind: a database with an owner, an encoding and a template."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from stackyard.lazy import lazy
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
from stackyard.providers.postgres.connection import (
    NAMING,
    Connections,
    Identifier,
    ServerSwept,
    ownership,
    parse_config,
    provider_errors,
    quoted,
    refuse_foreign,
    resolve_name,
    url_secrets,
)

if TYPE_CHECKING:
    from psycopg import sql
else:  # imported on first use: naming and planning never talk to the server
    sql = lazy("psycopg.sql")

#: ``DROP DATABASE ... WITH (FORCE)`` exists from PostgreSQL 13.
FORCE_DROP_VERSION = 130000

_READ = (
    "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),"
    " shobj_description(d.oid, 'pg_database'), current_user"
    " FROM pg_database d WHERE d.datname = %s"
)


def _same_encoding(a: str, b: str) -> bool:
    """``UTF8``, ``utf-8`` and ``UTF_8`` name the same encoding to PostgreSQL."""

    def norm(text: str) -> str:
        return text.upper().replace("-", "").replace("_", "")

    return norm(a) == norm(b)


class DatabaseConfig(KindConfig):
    """Config of ``postgres.database``."""

    server: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin URL of the PostgreSQL server."
    )
    name: Identifier = config_field(
        "", replace_on_change=True, description="Database name; empty means the physical name."
    )
    owner: Identifier = config_field("", description="Owning role; empty means the admin role.")
    encoding: str = config_field("UTF8", replace_on_change=True, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    template: Identifier = config_field("template0", replace_on_change=True)


class DatabaseKind(ServerSwept):
    """``postgres.database``."""

    name: ClassVar[str] = "postgres.database"
    swept: ClassVar[str] = "database"
    config_model: ClassVar[type[KindConfig]] = DatabaseConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, connections: Connections) -> None:
        self._conns = connections

    def _config(self, meta: ResourceMeta, config: Any) -> tuple[DatabaseConfig, str, list[str]]:
        cfg = parse_config(DatabaseConfig, config, meta.address)
        return cfg, resolve_name(meta, cfg.name, "database"), url_secrets(cfg.server)

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the database with one catalog query; no writes.

        The template is not recorded by PostgreSQL, so it is not observed (nor compared).
        """
        cfg, name, secrets = self._config(req.meta, req.config)
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as conn,
        ):
            row = conn.execute(sql.SQL(_READ), (name,)).fetchone()
        if row is None:
            return None
        owner, encoding, label, admin = row
        managed, why = ownership(req.meta, name, label, crash_window=True)
        reported_owner = "" if not cfg.owner and owner == admin else owner
        return Observed(
            config={
                "name": cfg.name,
                "owner": reported_owner,
                "encoding": cfg.encoding if _same_encoding(encoding, cfg.encoding) else encoding,
            },
            outputs={"name": name, "owner": owner},
            managed=managed,
            detail=why,
        )

    def create(self, req: CreateRequest) -> Applied:
        """Create the database and label it, or converge an existing one that is ours.

        CREATE DATABASE cannot share a transaction with its COMMENT; a crash between the two
        leaves an unlabelled database under the deterministic name, which is claimed only
        when ``meta.resuming`` (the journal's interrupted create). A foreign or otherwise
        unlabelled one is refused. A repeat call writes nothing.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Change the owner (and repair the label) in place; safe to repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Any) -> Applied:
        cfg, name, secrets = self._config(meta, config)
        database = quoted(name)
        label = sql.SQL("COMMENT ON DATABASE {} IS {}").format(database, sql.Literal(meta.label))
        with (
            provider_errors(meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as conn,
        ):
            row = conn.execute(sql.SQL(_READ), (name,)).fetchone()
            if row is None:
                options = [
                    sql.SQL("ENCODING {}").format(sql.Literal(cfg.encoding)),
                    sql.SQL("TEMPLATE {}").format(quoted(cfg.template)),
                ]
                if cfg.owner:
                    options.insert(0, sql.SQL("OWNER {}").format(quoted(cfg.owner)))
                conn.execute(
                    sql.SQL("CREATE DATABASE {} WITH {}").format(
                        database, sql.SQL(" ").join(options)
                    )
                )
                conn.execute(label)
                owner = cfg.owner or conn.info.user
            else:
                owner, _encoding, current_label, admin = row
                managed, why = ownership(meta, name, current_label, crash_window=True)
                if not managed:
                    refuse_foreign(meta, "database", name, why)
                statements: list[sql.Composable] = []
                wanted = cfg.owner or admin
                if owner != wanted:
                    statements.append(
                        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, quoted(wanted))
                    )
                    owner = wanted
                if current_label != meta.label:
                    statements.append(label)
                if statements:
                    conn.execute(sql.SQL("; ").join(statements))
        return Applied(outputs={"name": name, "owner": owner}, physical_id=name)

    def delete(self, req: DeleteRequest) -> None:
        """Drop the database, terminating its connections first.

        A missing database is success; a foreign one is refused. On PostgreSQL 13+ this is
        ``DROP DATABASE ... WITH (FORCE)``; before that, sessions are terminated and the
        database dropped right after. Safe to repeat.
        """
        cfg, name, secrets = self._config(req.meta, req.config)
        database = quoted(name)
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as conn,
        ):
            row = conn.execute(sql.SQL(_READ), (name,)).fetchone()
            if row is None:
                return
            managed, why = ownership(req.meta, name, row[2], crash_window=True)
            if not managed:
                refuse_foreign(req.meta, "database", name, why)
            self._conns.evict(cfg.server, name)
            if conn.info.server_version >= FORCE_DROP_VERSION:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
            else:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(database))
