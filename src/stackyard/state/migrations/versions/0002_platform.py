"""Platform and delivery records: documents, environments, releases, deployments, workloads.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "platform_documents",
        sa.Column("kind", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("file", sa.String(1000), nullable=False),
        sa.Column("applied_at", sa.Float, nullable=False),
        sa.Column("applied_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "environments",
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
    op.create_table(
        "releases",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("document", JSON, nullable=False),
    )
    op.create_table(
        "deployments",
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
        sa.Index("ix_deployments_env_created", "env", "created_at"),
    )
    op.create_table(
        "deployment_events",
        sa.Column("deployment_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("address", sa.String(1000), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_table(
        "workloads",
        sa.Column("env", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("release_id", sa.String(80), nullable=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("uids", JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "instances",
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
    )


def downgrade() -> None:
    for table in (
        "instances",
        "workloads",
        "deployment_events",
        "deployments",
        "releases",
        "environments",
        "platform_documents",
    ):
        op.drop_table(table)
