"""The installation identity: one short random id per state store, made once.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "installation",
        # One row: the primary key is the constant 1, so a second row cannot exist.
        sa.Column("singleton", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    # Migrations run once per store under a lock, so every process sharing this store
    # reads the same id from here on.
    op.bulk_insert(table, [{"singleton": 1, "id": secrets.token_hex(5), "created_at": time.time()}])


def downgrade() -> None:
    op.drop_table("installation")
