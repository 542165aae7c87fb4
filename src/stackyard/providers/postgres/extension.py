"""The ``postgres.extension`` kind: an extension installed in one database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

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
    ownership,
    parse_config,
    provider_errors,
    quoted,
    refuse,
    refuse_foreign,
    url_secrets,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql
else:  # imported on first use: naming and planning never talk to the server
    psycopg = lazy("psycopg")
    sql = lazy("psycopg.sql")

_READ = (
    "SELECT e.extversion, n.nspname, obj_description(e.oid, 'pg_extension')"
    " FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    " WHERE e.extname = %s"
)


class ExtensionConfig(KindConfig):
    """Config of ``postgres.extension``."""

    # ``schema`` would shadow a BaseModel attribute; the field is ``schema_``, spelled
    # ``schema`` in config and in dumps.
    model_config = pydantic.ConfigDict(serialize_by_alias=True)

    server: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin URL of the PostgreSQL server."
    )
    database: Identifier = config_field(..., replace_on_change=True, min_length=1)
    name: Identifier = config_field(
        ..., replace_on_change=True, min_length=1, description="Extension name, e.g. pgcrypto."
    )
    schema_: Identifier = config_field(
        "", alias="schema", replace_on_change=True, description="Empty means the default."
    )
    version: str = config_field(
        "", pattern=r"^[A-Za-z0-9_.-]{0,63}$", description="Empty means the default version."
    )


class ExtensionKind:
    """``postgres.extension``. The label is the extension's COMMENT (replacing its default)."""

    name: ClassVar[str] = "postgres.extension"
    config_model: ClassVar[type[KindConfig]] = ExtensionConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, connections: Connections) -> None:
        self._conns = connections

    def _config(self, meta: ResourceMeta, config: Any) -> tuple[ExtensionConfig, list[str]]:
        cfg = parse_config(ExtensionConfig, config, meta.address)
        return cfg, url_secrets(cfg.server)

    def check(self, config: Mapping[str, Any]) -> list[str]:
        """Whether the server can install the extension (and the version asked for): one
        read of ``pg_available_extension_versions`` on the admin connection; no writes."""
        server, name, version = (str(config.get(k) or "") for k in ("server", "name", "version"))
        if not server or not name:
            return []  # not known before apply: the create reports it
        with (
            provider_errors("check", secrets=url_secrets(server)),
            self._conns.connect(server) as conn,
        ):
            versions = [
                str(r[0])
                for r in conn.execute(
                    "SELECT version FROM pg_available_extension_versions WHERE name = %s",
                    (name,),
                )
            ]
        if not versions:
            return [
                f"the server has no extension '{name}' available: install its package on "
                "the server, or ask for one that pg_available_extensions lists"
            ]
        if version and version not in versions:
            return [
                f"the server has extension '{name}' in version(s) {', '.join(sorted(versions))}, "
                f"not '{version}'"
            ]
        return []

    def _database_exists(self, cfg: ExtensionConfig) -> bool:
        with self._conns.connect(cfg.server) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg.database,))
            return row.fetchone() is not None

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the extension with one query in its database; no writes.

        A missing database means a missing extension (checked only when connecting fails).
        """
        cfg, secrets = self._config(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=secrets):
            try:
                with self._conns.connect(cfg.server, cfg.database) as conn:
                    row = conn.execute(sql.SQL(_READ), (cfg.name,)).fetchone()
            except psycopg.OperationalError:
                if not self._database_exists(cfg):
                    return None
                raise
        if row is None:
            return None
        version, schema, label = row
        managed, why = ownership(req.meta, cfg.name, label)
        return Observed(
            config={
                "database": cfg.database,
                "name": cfg.name,
                "schema": schema if cfg.schema_ else "",
                "version": version if cfg.version else "",
            },
            outputs={"name": cfg.name, "version": version, "schema": schema},
            managed=managed,
            detail=why,
        )

    def create(self, req: CreateRequest) -> Applied:
        """Install the extension and label it in one transaction, or converge ours.

        An extension that is already installed with another comment (as every extension has
        by default) is not ours and is refused. A repeat call writes nothing.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Update the extension to the configured version in place; safe to repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Any) -> Applied:
        cfg, secrets = self._config(meta, config)
        ext = quoted(cfg.name)
        label = sql.SQL("COMMENT ON EXTENSION {} IS {}").format(ext, sql.Literal(meta.label))
        with (
            provider_errors(meta.address, secrets=secrets),
            self._conns.connect(cfg.server, cfg.database) as conn,
        ):
            row = conn.execute(sql.SQL(_READ), (cfg.name,)).fetchone()
            statements: list[sql.Composable] = []
            if row is None:
                options: list[sql.Composable] = []
                if cfg.schema_:
                    options.append(sql.SQL("SCHEMA {}").format(quoted(cfg.schema_)))
                if cfg.version:
                    options.append(sql.SQL("VERSION {}").format(sql.Literal(cfg.version)))
                statements = [
                    sql.SQL("CREATE EXTENSION {} {}").format(ext, sql.SQL(" ").join(options)),
                    label,
                ]
            else:
                version, schema, current_label = row
                managed, why = ownership(meta, cfg.name, current_label)
                if not managed:
                    refuse_foreign(meta, "extension", cfg.name, why)
                if cfg.schema_ and schema != cfg.schema_:
                    refuse(
                        meta.address,
                        f"The extension '{cfg.name}' is installed in schema '{schema}', "
                        f"not '{cfg.schema_}'",
                        hint="Replace the resource to move it.",
                    )
                if cfg.version and version != cfg.version:
                    statements.append(
                        sql.SQL("ALTER EXTENSION {} UPDATE TO {}").format(
                            ext, sql.Literal(cfg.version)
                        )
                    )
                if current_label != meta.label:
                    statements.append(label)
            if statements:
                conn.execute(sql.SQL("; ").join(statements))
                row = conn.execute(sql.SQL(_READ), (cfg.name,)).fetchone()
        assert row is not None  # just created, or read on this connection
        return Applied(
            outputs={"name": cfg.name, "version": row[0], "schema": row[1]},
            physical_id=f"{cfg.database}/{cfg.name}",
        )

    def delete(self, req: DeleteRequest) -> None:
        """Drop the extension (RESTRICT: objects that use it are never dropped with it).

        A missing extension or database is success; a foreign one is refused. Safe to repeat.
        """
        cfg, secrets = self._config(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=secrets):
            try:
                with self._conns.connect(cfg.server, cfg.database) as conn:
                    row = conn.execute(sql.SQL(_READ), (cfg.name,)).fetchone()
                    if row is None:
                        return
                    managed, why = ownership(req.meta, cfg.name, row[2])
                    if not managed:
                        refuse_foreign(req.meta, "extension", cfg.name, why)
                    conn.execute(sql.SQL("DROP EXTENSION IF EXISTS {}").format(quoted(cfg.name)))
            except psycopg.OperationalError:
                if not self._database_exists(cfg):
                    return
                raise
