"""Governance: role grants, the decision log, the hash-chained audit log, approvals and cost.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

_NO_CHANGE = "audit_events is append-only"


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("subject", sa.String(300), primary_key=True),  # user:<name> | team:<name>
        sa.Column("role", sa.String(40), primary_key=True),
        sa.Column("scope", sa.String(300), primary_key=True),  # org | type:<name> | env:<name>
        sa.Column("granted_by", sa.String(200), nullable=False),
        sa.Column("granted_at", sa.Float, nullable=False),
    )
    op.create_table(
        "decisions",
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
        sa.Index("ix_decisions_env_at", "env", "at"),
    )
    op.create_table(
        "audit_events",
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
    op.create_table(
        "approvals",
        sa.Column("deployment_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),  # approved | rejected
        sa.Column("comment", sa.Text, nullable=False),
    )
    op.add_column("deployments", sa.Column("request", JSON, nullable=True))
    op.add_column("deployments", sa.Column("decision_id", sa.String(40), nullable=True))
    op.add_column("instances", sa.Column("monthly_cost", sa.String(40), nullable=True))
    op.add_column("instances", sa.Column("currency", sa.String(10), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{_NO_CHANGE}'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_NO_CHANGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    for table in ("approvals", "audit_events", "decisions", "grants"):
        op.drop_table(table)
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("request")
        batch.drop_column("decision_id")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("monthly_cost")
        batch.drop_column("currency")
