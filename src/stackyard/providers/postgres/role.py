"""The ``postgres.role`` kind: a login role with a password and a connection limit."""

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
from stackyard.providers.postgres import scram
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

#: What observe reports as the password when the stored verifier does not match the desired one.
PASSWORD_DRIFTED = "<password changed outside stackyard>"  # noqa: S105  (a marker)

_READ = (
    "SELECT a.rolcanlogin, a.rolconnlimit, a.rolpassword,"
    " shobj_description(a.oid, 'pg_authid')"
    " FROM pg_authid a WHERE a.rolname = %s"
)
_READ_FOR_DROP = (
    "SELECT shobj_description(a.oid, 'pg_authid'), current_database(),"
    " array(SELECT DISTINCT d.datname FROM pg_shdepend s"
    "  JOIN pg_database d ON d.oid = s.dbid"
    "  WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = a.oid AND d.datallowconn"
    "  ORDER BY 1)"
    " FROM pg_authid a WHERE a.rolname = %s"
)


class RoleConfig(KindConfig):
    """Config of ``postgres.role``."""

    server: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin URL of the PostgreSQL server."
    )
    name: Identifier = config_field(
        "", replace_on_change=True, description="Role name; empty means the physical name."
    )
    password: str = config_field("", sensitive=True, description="Empty means no password.")
    login: bool = config_field(True, description="Whether the role may log in.")
    connection_limit: int = config_field(
        -1, ge=-1, le=2_147_483_647, description="-1 means no limit."
    )


class RoleKind(ServerSwept):
    """``postgres.role``. The admin must be a superuser (it reads ``pg_authid``)."""

    name: ClassVar[str] = "postgres.role"
    swept: ClassVar[str] = "role"
    config_model: ClassVar[type[KindConfig]] = RoleConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, connections: Connections) -> None:
        self._conns = connections

    def _config(self, meta: ResourceMeta, config: Any) -> tuple[RoleConfig, str, list[str]]:
        cfg = parse_config(RoleConfig, config, meta.address)
        return cfg, resolve_name(meta, cfg.name, "role"), [*url_secrets(cfg.server), cfg.password]

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the role with one catalog query; no writes.

        The password is compared by verifying the desired one against the stored SCRAM
        verifier locally: a match reports the desired value, a mismatch ``PASSWORD_DRIFTED``.
        """
        cfg, name, secrets = self._config(req.meta, req.config)
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as conn,
        ):
            row = conn.execute(sql.SQL(_READ), (name,)).fetchone()
        if row is None:
            return None
        login, limit, stored, label = row
        managed, why = ownership(req.meta, name, label)
        password = (
            cfg.password if scram.verify(cfg.password, stored, role=name) else PASSWORD_DRIFTED
        )
        return Observed(
            config={
                "name": cfg.name,
                "password": password,
                "login": login,
                "connection_limit": limit,
            },
            outputs={"name": name},
            managed=managed,
            detail=why,
        )

    def create(self, req: CreateRequest) -> Applied:
        """Create the role, or converge an existing one that is ours (crash recovery).

        Role and label are written in one statement batch (one transaction). Only what
        differs is changed, so a repeat call writes nothing. A role with a foreign label is
        refused.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Converge the role in place (recreating it if it vanished); safe to repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Any) -> Applied:
        cfg, name, secrets = self._config(meta, config)
        role = quoted(name)
        label = sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(meta.label))
        with (
            provider_errors(meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as conn,
        ):
            row = conn.execute(sql.SQL(_READ), (name,)).fetchone()
            statements: list[sql.Composable] = []
            if row is None:
                options = [
                    sql.SQL("LOGIN" if cfg.login else "NOLOGIN"),
                    sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(cfg.connection_limit)),
                    _password_clause(cfg.password),
                ]
                create = sql.SQL("CREATE ROLE {} WITH {}").format(role, sql.SQL(" ").join(options))
                statements = [create, label]
            else:
                login, limit, stored, current_label = row
                managed, why = ownership(meta, name, current_label)
                if not managed:
                    refuse_foreign(meta, "role", name, why)
                options = []
                if login != cfg.login:
                    options.append(sql.SQL("LOGIN" if cfg.login else "NOLOGIN"))
                if limit != cfg.connection_limit:
                    options.append(
                        sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(cfg.connection_limit))
                    )
                if not scram.verify(cfg.password, stored, role=name):
                    options.append(_password_clause(cfg.password))
                if options:
                    statements.append(
                        sql.SQL("ALTER ROLE {} WITH {}").format(role, sql.SQL(" ").join(options))
                    )
                if current_label != meta.label:
                    statements.append(label)
            if statements:
                # No parameters: one simple-query batch, run as one implicit transaction.
                conn.execute(sql.SQL("; ").join(statements))
        return Applied(outputs={"name": name}, physical_id=name)

    def delete(self, req: DeleteRequest) -> None:
        """Drop the role; a missing role is success, a foreign one is refused.

        First, in every database where ``pg_shdepend`` shows the role owning objects or
        holding privileges, ``REASSIGN OWNED BY`` it to the admin and ``DROP OWNED BY`` it
        (these statements only reach the current database, so each one is visited). The
        role's sessions are then terminated and the role dropped. Safe to repeat after a
        failure at any step.
        """
        cfg, name, secrets = self._config(req.meta, req.config)
        role = quoted(name)
        cleanup = sql.SQL("REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}").format(
            role=role
        )
        with provider_errors(req.meta.address, secrets=secrets):
            with self._conns.connect(cfg.server) as admin:
                row = admin.execute(sql.SQL(_READ_FOR_DROP), (name,)).fetchone()
            if row is None:
                return
            label, admin_db, databases = row
            managed, why = ownership(req.meta, name, label)
            if not managed:
                refuse_foreign(req.meta, "role", name, why)
            for database in databases:
                if database != admin_db:
                    with self._conns.connect(cfg.server, database) as conn:
                        conn.execute(cleanup)
            with self._conns.connect(cfg.server) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE usename = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                admin.execute(sql.SQL("{}; DROP ROLE IF EXISTS {}").format(cleanup, role))


def _password_clause(password: str) -> sql.Composable:
    """``PASSWORD '<SCRAM verifier>'``: hashed here, so the plaintext never reaches the server."""
    if not password:
        return sql.SQL("PASSWORD NULL")
    return sql.SQL("PASSWORD {}").format(sql.Literal(scram.make_verifier(password)))
