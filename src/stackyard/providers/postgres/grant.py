"""The ``postgres.grant`` kind: a role's privileges on a database, or on a schema in one."""

from __future__ import annotations

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
    parse_config,
    provider_errors,
    quoted,
    refuse,
    url_secrets,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql
else:  # imported on first use: naming and planning never talk to the server
    psycopg = lazy("psycopg")
    sql = lazy("psycopg.sql")

DATABASE_PRIVILEGES = ("CONNECT", "CREATE", "TEMPORARY")
SCHEMA_PRIVILEGES = ("CREATE", "USAGE")
_ALIASES = {"TEMP": "TEMPORARY"}

# The role's own entries in the object's ACL (the default ACL when none was ever set).
# Privileges PUBLIC holds are deliberately not counted: they are not this grant's.
_DATABASE_READ = (
    "SELECT r.oid IS NOT NULL, d.oid IS NOT NULL,"
    " array(SELECT DISTINCT a.privilege_type"
    "  FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
    "  WHERE a.grantee = r.oid ORDER BY 1)"
    " FROM (SELECT 1) one"
    " LEFT JOIN pg_roles r ON r.rolname = %s"
    " LEFT JOIN pg_database d ON d.datname = %s"
)
_SCHEMA_READ = (
    "SELECT r.oid IS NOT NULL, n.oid IS NOT NULL,"
    " array(SELECT DISTINCT a.privilege_type"
    "  FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a"
    "  WHERE a.grantee = r.oid ORDER BY 1)"
    " FROM (SELECT 1) one"
    " LEFT JOIN pg_roles r ON r.rolname = %s"
    " LEFT JOIN pg_namespace n ON n.nspname = %s"
)


class GrantConfig(KindConfig):
    """Config of ``postgres.grant``."""

    model_config = pydantic.ConfigDict(serialize_by_alias=True)

    server: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin URL of the PostgreSQL server."
    )
    role: Identifier = config_field(..., replace_on_change=True, min_length=1)
    database: Identifier = config_field(..., replace_on_change=True, min_length=1)
    schema_: Identifier = config_field(
        "",
        alias="schema",
        replace_on_change=True,
        description="When set, the privileges are on this schema inside the database.",
    )
    privileges: tuple[str, ...] = config_field(
        ..., min_length=1, description="CONNECT, CREATE, TEMPORARY (database); USAGE, CREATE."
    )

    @pydantic.field_validator("privileges", mode="after")
    @classmethod
    def _normalise(cls, value: tuple[str, ...], info: pydantic.ValidationInfo) -> tuple[str, ...]:
        on_schema = bool(info.data.get("schema_"))
        allowed = SCHEMA_PRIVILEGES if on_schema else DATABASE_PRIVILEGES
        names = {" ".join(p.split()).upper() for p in value}
        names = {_ALIASES.get(p, p) for p in names}
        if names & {"ALL", "ALL PRIVILEGES"}:
            return allowed
        unknown = names - set(allowed)
        if unknown:
            target = "a schema" if on_schema else "a database"
            raise ValueError(
                f"privileges on {target} are {', '.join(allowed)} (or ALL); "
                f"{len(unknown)} given are not"
            )
        return tuple(sorted(names))


class GrantKind:
    """``postgres.grant``: the role holds exactly ``privileges`` on the target.

    A grant is not an object and cannot carry a COMMENT, so it has no label: it is observed
    from the target's ACL, and it goes away with its role or its database.
    """

    name: ClassVar[str] = "postgres.grant"
    config_model: ClassVar[type[KindConfig]] = GrantConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, connections: Connections) -> None:
        self._conns = connections

    def _config(self, meta: ResourceMeta, config: Any) -> tuple[GrantConfig, list[str]]:
        cfg = parse_config(GrantConfig, config, meta.address)
        return cfg, url_secrets(cfg.server)

    @staticmethod
    def _id(cfg: GrantConfig) -> str:
        target = f"{cfg.database}/{cfg.schema_}" if cfg.schema_ else cfg.database
        return f"{target}:{cfg.role}"

    def _read(self, cfg: GrantConfig) -> tuple[bool, bool, list[str]]:
        """(role exists, target exists, the role's privileges on it); one query."""
        try:
            if cfg.schema_:
                with self._conns.connect(cfg.server, cfg.database) as conn:
                    row = conn.execute(sql.SQL(_SCHEMA_READ), (cfg.role, cfg.schema_)).fetchone()
            else:
                with self._conns.connect(cfg.server) as conn:
                    row = conn.execute(sql.SQL(_DATABASE_READ), (cfg.role, cfg.database)).fetchone()
        except psycopg.OperationalError:
            if cfg.schema_ and not self._database_exists(cfg):
                return False, False, []
            raise
        assert row is not None  # a single-row SELECT
        return bool(row[0]), bool(row[1]), list(row[2])

    def _database_exists(self, cfg: GrantConfig) -> bool:
        with self._conns.connect(cfg.server) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg.database,))
            return row.fetchone() is not None

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the role's privileges on the target; ``None`` when it holds none. No writes."""
        cfg, secrets = self._config(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=secrets):
            role_exists, target_exists, held = self._read(cfg)
        if not (role_exists and target_exists and held):
            return None
        config = cfg.model_dump(mode="json", exclude={"server"})
        config["privileges"] = held
        return Observed(config=config, outputs={"id": self._id(cfg)})

    def create(self, req: CreateRequest) -> Applied:
        """Grant the privileges (GRANT is idempotent); a repeat call writes nothing."""
        cfg, secrets = self._config(req.meta, req.config)
        return self._converge(req.meta, cfg, secrets, revoke_others=False)

    def update(self, req: UpdateRequest) -> Applied:
        """Make the role hold exactly the configured privileges; safe to repeat."""
        cfg, secrets = self._config(req.meta, req.config)
        return self._converge(req.meta, cfg, secrets, revoke_others=True)

    def _statement(self, cfg: GrantConfig, verb: str, privileges: list[str]) -> sql.Composable:
        target = (
            sql.SQL("SCHEMA {}").format(quoted(cfg.schema_))
            if cfg.schema_
            else sql.SQL("DATABASE {}").format(quoted(cfg.database))
        )
        direction = "TO" if verb == "GRANT" else "FROM"
        return sql.SQL("{} {} ON {} {} {}").format(
            sql.SQL(verb),
            sql.SQL(", ").join(sql.SQL(p) for p in privileges),
            target,
            sql.SQL(direction),
            quoted(cfg.role),
        )

    def _execute(self, cfg: GrantConfig, statements: list[sql.Composable]) -> None:
        database = cfg.database if cfg.schema_ else None
        with self._conns.connect(cfg.server, database) as conn:
            conn.execute(sql.SQL("; ").join(statements))

    def _converge(
        self, meta: ResourceMeta, cfg: GrantConfig, secrets: list[str], *, revoke_others: bool
    ) -> Applied:
        with provider_errors(meta.address, secrets=secrets):
            role_exists, target_exists, held = self._read(cfg)
            if not role_exists or not target_exists:
                what = "role" if not role_exists else ("schema" if cfg.schema_ else "database")
                refuse(meta.address, f"Cannot grant: the {what} does not exist")
            # Privileges are fixed keywords (validated), never user text.
            missing = [p for p in cfg.privileges if p not in held]
            extra = [p for p in held if p not in cfg.privileges] if revoke_others else []
            statements: list[sql.Composable] = []
            if missing:
                statements.append(self._statement(cfg, "GRANT", missing))
            if extra:
                statements.append(self._statement(cfg, "REVOKE", extra))
            if statements:
                self._execute(cfg, statements)
        grant_id = self._id(cfg)
        return Applied(outputs={"id": grant_id}, physical_id=grant_id)

    def delete(self, req: DeleteRequest) -> None:
        """Revoke the configured privileges; a missing role or target is success. Repeatable."""
        cfg, secrets = self._config(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=secrets):
            role_exists, target_exists, held = self._read(cfg)
            granted = [p for p in cfg.privileges if p in held]
            if role_exists and target_exists and granted:
                self._execute(cfg, [self._statement(cfg, "REVOKE", granted)])
