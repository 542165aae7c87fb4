"""Initial state schema: environments, resources, intents, locks, tokens, applied plans.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "environments_state",
        sa.Column("env", sa.String(200), primary_key=True),
        sa.Column("lineage", sa.String(36), nullable=False),
        sa.Column("serial", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "resources",
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
    op.create_table(
        "intents",
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
    )
    op.create_index("ix_intents_env_created", "intents", ["env", "created_at"])
    op.create_table(
        "locks",
        sa.Column("env", sa.String(200), primary_key=True),
        sa.Column("lock_id", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(500), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "lock_tokens",
        sa.Column("env", sa.String(200), primary_key=True),
        sa.Column("last_token", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "applied_plans",
        sa.Column("env", sa.String(200), primary_key=True),
        sa.Column("plan_id", sa.String(200), primary_key=True),
        sa.Column("applied_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "applied_plans",
        "lock_tokens",
        "locks",
        "intents",
        "resources",
        "environments_state",
    ):
        op.drop_table(table)
