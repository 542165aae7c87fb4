"""PostgreSQL only: every committed change to the tables the API's read cache serves from is
announced on the ``stackyard_state`` channel (``NOTIFY``), so each server process knows at
once that what it cached is stale (``stackyard.api.readcache``).

A statement-level trigger per table calls ``pg_notify`` with the table's name; PostgreSQL
delivers the notification when the writing transaction commits (never for a rollback) and
folds identical ones of one transaction into one. Left out are the tables written by every
request or tick that no cached read depends on (token use, tick marks, the event log and its
deliveries, SLO samples) and the job queue's. A table added by a later migration that a
cached route reads must get the trigger too (``WATCHED``).

SQLite needs none of this: the cache asks SQLite's ``PRAGMA data_version`` instead.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHANNEL = "stackyard_state"
FUNCTION = "stackyard_notify_change"
#: The tables whose changes make cached reads stale.
WATCHED = (
    "applied_plans",
    "approvals",
    "decisions",
    "deployments",
    "drift_scans",
    "environments",
    "environments_state",
    "grants",
    "installation",
    "instances",
    "platform_documents",
    "releases",
    "resources",
    "workloads",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$
        """
    )
    for table in WATCHED:
        op.execute(
            f"CREATE TRIGGER {table}_notify_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in WATCHED:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify_change ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
