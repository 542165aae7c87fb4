"""The state schema as SQLAlchemy Core tables (migrations in ``migrations/versions`` own DDL).

These definitions mirror the newest migration; they are used for queries only and never for
``create_all``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "JSON",
    "applied_plans",
    "environments_state",
    "insert_for",
    "installation",
    "intents",
    "lock_tokens",
    "locks",
    "metadata",
    "resources",
    "upsert",
]


class _Json(sa.types.TypeDecorator[Any]):
    """JSON everywhere, stored as JSONB on PostgreSQL (what the migrations create).

    Not ``sa.JSON().with_variant(postgresql.JSONB(), ...)``: building JSONB up front imports
    the PostgreSQL dialect (and its asyncpg/psycopg modules) on every command, SQLite stores
    included; here it is imported only when a PostgreSQL connection compiles a statement.
    """

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


#: JSON everywhere, stored as JSONB on PostgreSQL.
JSON = _Json()

metadata = sa.MetaData()

environments_state = sa.Table(
    "environments_state",
    metadata,
    sa.Column("env", sa.String(200), primary_key=True),
    sa.Column("lineage", sa.String(36), nullable=False),
    sa.Column("serial", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

resources = sa.Table(
    "resources",
    metadata,
    sa.Column("env", sa.String(200), primary_key=True),
    sa.Column("address", sa.String(1000), primary_key=True),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("physical_name", sa.String(1000), nullable=False),
    sa.Column("physical_id", sa.String(1000), nullable=False),
    sa.Column("config", JSON, nullable=False),
    sa.Column("outputs", JSON, nullable=False),
    sa.Column("secret_blob", sa.Text, nullable=True),
    sa.Column("depends_on", JSON, nullable=False),
    sa.Column("uid", sa.String(1000), nullable=False),
    sa.Column("component", sa.String(1000), nullable=False),
    sa.Column("deletion", sa.String(20), nullable=False),
    sa.Column("serial", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

intents = sa.Table(
    "intents",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("env", sa.String(200), nullable=False),
    sa.Column("op", sa.String(20), nullable=False),
    sa.Column("address", sa.String(1000), nullable=False),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("physical_name", sa.String(1000), nullable=False),
    sa.Column("config", JSON, nullable=False),
    sa.Column("secret_blob", sa.Text, nullable=True),
    sa.Column("depends_on", JSON, nullable=False),
    sa.Column("uid", sa.String(1000), nullable=False),
    sa.Column("component", sa.String(1000), nullable=False),
    sa.Column("deletion", sa.String(20), nullable=False),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Index("ix_intents_env_created", "env", "created_at"),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("env", sa.String(200), primary_key=True),
    sa.Column("lock_id", sa.String(100), nullable=False),
    sa.Column("holder", sa.String(500), nullable=False),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

#: The highest fencing token ever issued per environment; kept after release so tokens
#: only ever grow.
lock_tokens = sa.Table(
    "lock_tokens",
    metadata,
    sa.Column("env", sa.String(200), primary_key=True),
    sa.Column("last_token", sa.BigInteger, nullable=False),
)

applied_plans = sa.Table(
    "applied_plans",
    metadata,
    sa.Column("env", sa.String(200), primary_key=True),
    sa.Column("plan_id", sa.String(200), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


def upsert(conn: Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` with ``ON CONFLICT`` support; SQLite and PostgreSQL share that API."""
    return insert_for(conn.dialect.name)(table)


def insert_for(dialect: str) -> Callable[[sa.Table], postgresql.Insert | sqlite.Insert]:
    """The ``insert`` of ``dialect`` (``postgresql`` or else SQLite), importing that
    dialect's module only: PostgreSQL's costs a SQLite store ~16 ms."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


# -- platform and delivery records (migration 0002) ----------------------------------------

platform_documents = sa.Table(
    "platform_documents",
    metadata,
    sa.Column("kind", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("file", sa.String(1000), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
    sa.Column("applied_by", sa.String(200), nullable=False),
)

environments = sa.Table(
    "environments",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("parent", sa.String(200), nullable=True),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("declared", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=True),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("claimed_at", sa.Float, nullable=True),
    sa.Column("variables", JSON, nullable=False),
    sa.Column("labels", JSON, nullable=False),
    sa.Column("bindings", JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("document", JSON, nullable=False),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("env", sa.String(200), nullable=False),
    sa.Column("release_id", sa.String(80), nullable=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("workloads", JSON, nullable=False),
    sa.Column("summary", JSON, nullable=False),
    sa.Column("plan", JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("request", JSON, nullable=True),  # 0003: what to re-plan after an approval
    sa.Column("decision_id", sa.String(40), nullable=True),  # 0003
)

deployment_events = sa.Table(
    "deployment_events",
    metadata,
    sa.Column("deployment_id", sa.String(40), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("address", sa.String(1000), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

workloads = sa.Table(
    "workloads",
    metadata,
    sa.Column("env", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("deployment_id", sa.String(40), nullable=False),
    sa.Column("release_id", sa.String(80), nullable=True),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("uids", JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("env", sa.String(200), primary_key=True),
    sa.Column("uid", sa.String(1000), primary_key=True),
    sa.Column("component", sa.String(300), nullable=False),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("core", sa.Boolean, nullable=False),
    sa.Column("params", JSON, nullable=False),
    sa.Column("requires", JSON, nullable=False),
    sa.Column("outputs", JSON, nullable=False),
    sa.Column("secret_blob", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("monthly_cost", sa.String(40), nullable=True),  # 0003: decimal as text
    sa.Column("currency", sa.String(10), nullable=True),  # 0003
)


# -- governance (migration 0003) --------------------------------------------------------------

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("subject", sa.String(300), primary_key=True),
    sa.Column("role", sa.String(40), primary_key=True),
    sa.Column("scope", sa.String(300), primary_key=True),
    sa.Column("granted_by", sa.String(200), nullable=False),
    sa.Column("granted_at", sa.Float, nullable=False),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("env", sa.String(200), nullable=True),
    sa.Column("subject", sa.String(300), nullable=True),
    sa.Column("input_hash", sa.String(80), nullable=False),
    sa.Column("revision", sa.String(80), nullable=False),
    sa.Column("outcome", sa.String(30), nullable=False),
    sa.Column("results", JSON, nullable=False),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("target", sa.String(500), nullable=False),
    sa.Column("result", sa.String(30), nullable=False),
    sa.Column("detail", JSON, nullable=False),
    sa.Column("prev_hash", sa.String(80), nullable=False),
    sa.Column("hash", sa.String(80), nullable=False),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("deployment_id", sa.String(40), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
)

# -- the installation identity (migration 0004) --------------------------------------------

#: One row: the id that names and labels carry, so installations sharing a server never
#: touch each other's objects.
installation = sa.Table(
    "installation",
    metadata,
    sa.Column("singleton", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("id", sa.String(20), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# -- API tokens (migration 0005) -------------------------------------------------------------

#: One row per API token: only the sha256 of its secret is kept.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("username", sa.String(200), nullable=False),
    sa.Column("secret_hash", sa.String(80), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("revoked_by", sa.String(200), nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
)

# -- day 2 operations (migration 0007) --------------------------------------------------------

#: What happened on the platform, in order: the source of webhooks and of some metrics
#: (``stackyard.ops.events``). ``data`` never holds a secret.
platform_events = sa.Table(
    "platform_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("type", sa.String(60), nullable=False),
    sa.Column("env", sa.String(200), nullable=True),
    sa.Column("env_type", sa.String(200), nullable=True),
    sa.Column("team", sa.String(200), nullable=True),
    sa.Column("subject", sa.String(500), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Index("ix_platform_events_type_at", "type", "at"),
    sa.Index("ix_platform_events_env_at", "env", "at"),
)

#: One row per (webhook, event): what was sent, how often, and the last response.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("webhook", sa.String(200), nullable=False),
    sa.Column("event_seq", sa.Integer, nullable=False),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_at", sa.Float, nullable=True),
    sa.Column("response_code", sa.Integer, nullable=True),
    sa.Column("response_body", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_webhook_deliveries_status_next", "status", "next_at"),
    sa.Index("ix_webhook_deliveries_created", "created_at"),
    sa.UniqueConstraint("webhook", "event_seq", name="uq_webhook_deliveries_event"),
)

#: Keyed marks: a cursor, a tick's last run (its lease across workers), a notice sent once.
ops_marks = sa.Table(
    "ops_marks",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("value", JSON, nullable=False),
)

#: Availability observations (a probe, a provider's read) that SLOs are measured from.
slo_observations = sa.Table(
    "slo_observations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("env", sa.String(200), nullable=False),
    sa.Column("target", sa.String(1000), nullable=False),
    sa.Column("component", sa.String(300), nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_slo_observations_env_target_at", "env", "target", "at"),
    sa.Index("ix_slo_observations_at", "at"),
)

#: One row per drift scan of an environment (scheduled or asked for): what it found, with
#: secrets masked, so that ``status`` and the portal show the last one and its history.
drift_scans = sa.Table(
    "drift_scans",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("env", sa.String(200), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("trigger", sa.String(20), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("resources", sa.Integer, nullable=False),
    sa.Column("drifted", sa.Integer, nullable=False),
    sa.Column("findings", JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_drift_scans_env_at", "env", "at"),
)
