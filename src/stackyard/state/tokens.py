"""The API token table: one row per token, holding a sha256 of its secret and never the secret.

Every method is one short transaction on the state store (SQLite or PostgreSQL).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stackyard.state.sql import SqlStateStore
from stackyard.state.tables import api_tokens

__all__ = ["TokenRecord", "TokenStatus", "Tokens"]


class TokenStatus(enum.StrEnum):
    """Where a token stands. ``active`` becomes ``expired`` by time alone and ``revoked`` by
    ``Tokens.revoke``; neither goes back (a revoked token stays revoked once expired)."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One row of ``api_tokens`` (``secret_hash`` is the hex sha256 of the secret)."""

    id: str
    user: str
    secret_hash: str
    description: str
    created_at: float
    created_by: str
    expires_at: float
    revoked_at: float | None = None
    revoked_by: str | None = None
    last_used_at: float | None = None

    def status(self, now: float) -> TokenStatus:
        """The token's status at ``now`` (epoch seconds)."""
        if self.revoked_at is not None:
            return TokenStatus.REVOKED
        if now >= self.expires_at:
            return TokenStatus.EXPIRED
        return TokenStatus.ACTIVE

    def to_json(self, now: float) -> dict[str, Any]:
        """A JSON-ready form, without the hash (it is of no use outside the store)."""
        return {
            "id": self.id,
            "user": self.user,
            "description": self.description,
            "status": self.status(now).value,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "last_used_at": self.last_used_at,
        }


class Tokens:
    """The ``api_tokens`` table of one state store."""

    def __init__(self, store: SqlStateStore) -> None:
        self.store = store

    def add(self, record: TokenRecord) -> None:
        """Insert a new token (its id is new: a clash is a ``StateError``)."""
        with self.store.writing() as conn:
            conn.execute(
                sa.insert(api_tokens).values(
                    id=record.id,
                    username=record.user,
                    secret_hash=record.secret_hash,
                    description=record.description,
                    created_at=record.created_at,
                    created_by=record.created_by,
                    expires_at=record.expires_at,
                    revoked_at=record.revoked_at,
                    revoked_by=record.revoked_by,
                    last_used_at=record.last_used_at,
                )
            )

    def get(self, token_id: str) -> TokenRecord | None:
        """The token with this id, or None."""
        with self.store.reading() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).first()
        return None if row is None else _record(row)

    def list(self, *, user: str | None = None) -> Sequence[TokenRecord]:
        """Every token (of ``user`` when given), oldest first."""
        query = sa.select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        if user is not None:
            query = query.where(api_tokens.c.username == user)
        with self.store.reading() as conn:
            rows = conn.execute(query).all()
        return [_record(r) for r in rows]

    def revoke(self, token_id: str, *, by: str, at: float) -> bool:
        """Mark the token revoked; False when it was revoked already (or does not exist)."""
        with self.store.writing() as conn:
            done = conn.execute(
                sa.update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=at, revoked_by=by)
            )
            return bool(done.rowcount)

    def touch(self, token_id: str, *, at: float, every_s: float) -> bool:
        """Record a use at ``at`` unless one was recorded less than ``every_s`` before (so
        servers sharing the store write at most once per interval); True when written."""
        with self.store.writing() as conn:
            done = conn.execute(
                sa.update(api_tokens)
                .where(
                    api_tokens.c.id == token_id,
                    sa.or_(
                        api_tokens.c.last_used_at.is_(None),
                        api_tokens.c.last_used_at <= at - every_s,
                    ),
                )
                .values(last_used_at=at)
            )
            return bool(done.rowcount)


def _record(row: sa.Row[Any]) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        user=row.username,
        secret_hash=row.secret_hash,
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        last_used_at=row.last_used_at,
    )
