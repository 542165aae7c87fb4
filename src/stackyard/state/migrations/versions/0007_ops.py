"""Day 2 operations: the platform's event log (``platform_events``), webhook deliveries
(``webhook_deliveries``), once-only marks and tick leases (``ops_marks``), the
availability observations SLOs are measured from (``slo_observations``) and the history of
drift scans (``drift_scans``).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "platform_events",
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
    op.create_table(
        "webhook_deliveries",
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
    op.create_table(
        "ops_marks",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("value", JSON, nullable=False),
    )
    op.create_table(
        "slo_observations",
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

    op.create_table(
        "drift_scans",
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


def downgrade() -> None:
    op.drop_table("drift_scans")
    op.drop_table("slo_observations")
    op.drop_table("ops_marks")
    op.drop_table("webhook_deliveries")
    op.drop_table("platform_events")
