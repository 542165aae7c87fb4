"""The ``mysql.grant`` kind: an account's privileges on one database (``GRANT ... ON db.*``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    ResourceMeta,
    UpdateRequest,
    config_field,
)
from stackyard.providers.mysql.connection import (
    MAX_DATABASE_CHARS,
    MAX_HOST_CHARS,
    USER_NAMING,
    Connections,
    checked_name,
    grant_target,
    parse_config,
    provider_errors,
    refuse,
    url_secrets,
)
from stackyard.providers.mysql.user import check_user_name

#: ``mysql.db`` columns and the privilege each stands for (GRANT OPTION is never granted).
COLUMNS = {
    "Select_priv": "SELECT",
    "Insert_priv": "INSERT",
    "Update_priv": "UPDATE",
    "Delete_priv": "DELETE",
    "Create_priv": "CREATE",
    "Drop_priv": "DROP",
    "References_priv": "REFERENCES",
    "Index_priv": "INDEX",
    "Alter_priv": "ALTER",
    "Create_tmp_table_priv": "CREATE TEMPORARY TABLES",
    "Lock_tables_priv": "LOCK TABLES",
    "Create_view_priv": "CREATE VIEW",
    "Show_view_priv": "SHOW VIEW",
    "Create_routine_priv": "CREATE ROUTINE",
    "Alter_routine_priv": "ALTER ROUTINE",
    "Execute_priv": "EXECUTE",
    "Event_priv": "EVENT",
    "Trigger_priv": "TRIGGER",
    "Delete_history_priv": "DELETE HISTORY",
}
PRIVILEGES = frozenset(COLUMNS.values())
ALL = "ALL"
_ALIASES = {"ALL PRIVILEGES": ALL, "TEMPORARY": "CREATE TEMPORARY TABLES"}

# One round trip: whether the account exists, and its row in mysql.db for this database.
_READ = (
    "SELECT u.User AS account_user, u.Host AS account_host, d.* FROM (SELECT 1) one"
    " LEFT JOIN mysql.user u ON u.User = %s AND u.Host = %s"
    " LEFT JOIN mysql.db d ON d.User = %s AND d.Host = %s AND d.Db = %s"
)


class GrantConfig(KindConfig):
    """Config of ``mysql.grant``."""

    server: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin URL (mysql://user:pw@host:port/)."
    )
    user: str = config_field(..., replace_on_change=True, min_length=1)
    host: str = config_field("%", replace_on_change=True, min_length=1, max_length=MAX_HOST_CHARS)
    database: str = config_field(..., replace_on_change=True, min_length=1)
    privileges: tuple[str, ...] = config_field(
        (ALL,), min_length=1, description="ALL, or database privileges (SELECT, INSERT, ...)."
    )

    @pydantic.field_validator("privileges", mode="after")
    @classmethod
    def _normalise(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return normalise(value)


def normalise(privileges: Iterable[str]) -> tuple[str, ...]:
    """Upper-cased, de-duplicated, sorted privileges; ``ALL`` absorbs the rest."""
    names = {" ".join(p.split()).upper() for p in privileges}
    names = {_ALIASES.get(p, p) for p in names}
    if ALL in names:
        return (ALL,)
    unknown = names - PRIVILEGES
    if unknown:
        raise ValueError(
            f"privileges on a database are ALL or {', '.join(sorted(PRIVILEGES))}; "
            f"{len(unknown)} given are not"
        )
    return tuple(sorted(names))


def held_privileges(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The privileges a ``mysql.db`` row grants, as ``normalise`` writes them: ``ALL`` when it
    holds every privilege this server knows (its ``*_priv`` columns but GRANT OPTION). Pure."""
    known = [c for c in row if c.endswith("_priv") and c != "Grant_priv"]
    held = [c for c in known if str(row[c]).upper() == "Y"]
    if known and len(held) == len(known):
        return (ALL,)
    return tuple(sorted(COLUMNS[c] for c in held if c in COLUMNS))


def grant_changes(
    held: tuple[str, ...], wanted: tuple[str, ...], *, revoke_others: bool
) -> tuple[list[str], list[str]]:
    """(to grant, to revoke) that bring ``held`` to ``wanted``. Pure: the table tests call it."""
    if held == wanted:
        return [], []
    if wanted == (ALL,):
        return ["ALL PRIVILEGES"], []
    if held == (ALL,):  # narrowing: revoke everything, then grant the list (revoked first)
        return (list(wanted), ["ALL PRIVILEGES"]) if revoke_others else ([], [])
    grant = [p for p in wanted if p not in held]
    revoke = [p for p in held if p not in wanted] if revoke_others else []
    return grant, revoke


class GrantKind:
    """``mysql.grant``: the account holds exactly ``privileges`` on one database.

    A grant is not an object and carries no label: it is read from ``mysql.db`` and goes away
    with its account. The database name is escaped in the grant (``_`` and ``%`` are
    wildcards there), so it reaches that database only.
    """

    name: ClassVar[str] = "mysql.grant"
    config_model: ClassVar[type[KindConfig]] = GrantConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = USER_NAMING

    def __init__(self, connections: Connections) -> None:
        self._conns = connections

    def _config(self, meta: ResourceMeta, config: Any) -> tuple[GrantConfig, list[str]]:
        cfg = parse_config(GrantConfig, config, meta.address)
        check_user_name(meta.address, cfg.user)
        checked_name(meta.address, "host", cfg.host, limit=MAX_HOST_CHARS)
        checked_name(meta.address, "database", cfg.database, limit=MAX_DATABASE_CHARS)
        return cfg, url_secrets(cfg.server)

    @staticmethod
    def _id(cfg: GrantConfig) -> str:
        return f"{cfg.database}:{cfg.user}@{cfg.host}"

    def _read(self, conn: Any, cfg: GrantConfig) -> tuple[bool, tuple[str, ...]]:
        """(the account exists, the privileges it holds on the database); one query."""
        pattern = grant_target(cfg.database)[1:-1].replace("``", "`")
        args = (cfg.user, cfg.host, cfg.user, cfg.host, pattern)
        with conn.cursor() as cur:
            cur.execute(_READ, args)
            columns = [d[0] for d in cur.description]
            rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
        exists = any(r["account_user"] == cfg.user and r["account_host"] == cfg.host for r in rows)
        # mysql.db compares hosts case-insensitively: keep the exact row only
        matching = [r for r in rows if r.get("Db") == pattern and r.get("Host") == cfg.host]
        if not exists or not matching:
            return exists, ()
        return exists, held_privileges({k: v for k, v in matching[0].items() if k in COLUMNS})

    def _statement(self, cfg: GrantConfig, verb: str, privileges: list[str]) -> str:
        # Privileges are fixed keywords (validated), never user text; the account is bound.
        preposition = "TO" if verb == "GRANT" else "FROM"
        target = grant_target(cfg.database).replace("%", "%%")
        return f"{verb} {', '.join(privileges)} ON {target}.* {preposition} %s@%s"

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the account's privileges on the database (one query); ``None`` when it holds
        none or the account is gone. No writes."""
        cfg, secrets = self._config(req.meta, req.config)
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as conn,
        ):
            _exists, held = self._read(conn, cfg)
        if not held:
            return None
        grant_id = self._id(cfg)
        return Observed(config={"privileges": list(held)}, outputs={"id": grant_id})

    def create(self, req: CreateRequest) -> Applied:
        """Grant what the account lacks; a repeat grants nothing. A missing account is a
        permanent error."""
        return self._converge(req.meta, req.config, revoke_others=False)

    def update(self, req: UpdateRequest) -> Applied:
        """Make the account hold exactly ``privileges`` (granting and revoking); repeatable."""
        return self._converge(req.meta, req.config, revoke_others=True)

    def _converge(self, meta: ResourceMeta, config: Any, *, revoke_others: bool) -> Applied:
        cfg, secrets = self._config(meta, config)
        account = [cfg.user, cfg.host]
        with provider_errors(meta.address, secrets=secrets), self._conns.connect(cfg.server) as c:
            exists, held = self._read(c, cfg)
            if not exists:
                refuse(meta.address, "Cannot grant: the user does not exist")
            grant, revoke = grant_changes(held, cfg.privileges, revoke_others=revoke_others)
            with c.cursor() as cur:
                if revoke:
                    cur.execute(self._statement(cfg, "REVOKE", revoke), account)
                if grant:
                    cur.execute(self._statement(cfg, "GRANT", grant), account)
        grant_id = self._id(cfg)
        return Applied(outputs={"id": grant_id}, physical_id=grant_id)

    def delete(self, req: DeleteRequest) -> None:
        """Revoke the configured privileges; a missing account or grant is success. Repeatable."""
        cfg, secrets = self._config(req.meta, req.config)
        with (
            provider_errors(req.meta.address, secrets=secrets),
            self._conns.connect(cfg.server) as c,
        ):
            exists, held = self._read(c, cfg)
            if not exists or not held:
                return
            if cfg.privileges == (ALL,) or held == (ALL,):
                revoke = ["ALL PRIVILEGES"] if cfg.privileges == (ALL,) else list(cfg.privileges)
            else:
                revoke = [p for p in cfg.privileges if p in held]
            if revoke:
                with c.cursor() as cur:
                    cur.execute(self._statement(cfg, "REVOKE", revoke), [cfg.user, cfg.host])
