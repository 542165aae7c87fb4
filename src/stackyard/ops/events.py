"""The platform's event log (``platform_events``): what happened, in order, for webhooks and
metrics. The service layer publishes; readers page through by ``seq``.

Types (``TYPES``) are dotted, past tense or state: ``deployment.started``,
``deployment.succeeded``, ``deployment.failed``, ``approval.requested``, ``approval.decided``,
``environment.expiring``, ``environment.expired``, ``environment.destroyed``,
``drift.found``, ``component.deprecated``. ``data`` is JSON and never holds a secret.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackyard.state.tables import platform_events

if TYPE_CHECKING:
    from stackyard.state.sql import SqlStateStore

__all__ = ["TYPES", "Event", "latest_seq", "publish", "read"]

TYPES: tuple[str, ...] = (
    "deployment.started",
    "deployment.succeeded",
    "deployment.failed",
    "approval.requested",
    "approval.decided",
    "environment.expiring",
    "environment.expired",
    "environment.destroyed",
    "drift.found",
    "component.deprecated",
)


@dataclass(frozen=True)
class Event:
    """One row of the event log."""

    seq: int
    at: float
    type: str
    subject: str
    env: str | None = None
    env_type: str | None = None
    team: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The event as JSON (what a webhook delivers)."""
        return {
            "seq": self.seq,
            "at": self.at,
            "type": self.type,
            "subject": self.subject,
            "env": self.env,
            "env_type": self.env_type,
            "team": self.team,
            "data": dict(self.data),
        }


def publish(
    store: SqlStateStore,
    type: str,
    subject: str,
    *,
    env: str | None = None,
    env_type: str | None = None,
    team: str | None = None,
    data: Mapping[str, Any] | None = None,
    at: float | None = None,
) -> int:
    """Append one event; its ``seq``."""
    if type not in TYPES:
        raise ValueError(f"unknown platform event type {type!r}")
    with store.writing() as conn:
        result = conn.execute(
            sa.insert(platform_events).values(
                at=time.time() if at is None else at,
                type=type,
                env=env,
                env_type=env_type,
                team=team,
                subject=subject[:500],
                data=dict(data or {}),
            )
        )
        key = result.inserted_primary_key
        return int(key[0]) if key else 0


def read(
    store: SqlStateStore,
    *,
    after: int = 0,
    types: Sequence[str] | None = None,
    env: str | None = None,
    since: float | None = None,
    limit: int | None = 1000,
) -> list[Event]:
    """Events with ``seq > after``, oldest first, filtered."""
    query = sa.select(platform_events).where(platform_events.c.seq > after)
    if types:
        query = query.where(platform_events.c.type.in_(list(types)))
    if env is not None:
        query = query.where(platform_events.c.env == env)
    if since is not None:
        query = query.where(platform_events.c.at >= since)
    query = query.order_by(platform_events.c.seq)
    if limit is not None:
        query = query.limit(limit)
    with store.reading() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        Event(
            seq=int(r["seq"]),
            at=float(r["at"]),
            type=str(r["type"]),
            subject=str(r["subject"]),
            env=r["env"],
            env_type=r["env_type"],
            team=r["team"],
            data=dict(r["data"] or {}),
        )
        for r in rows
    ]


def latest_seq(store: SqlStateStore) -> int:
    """The newest event's ``seq`` (0 when there is none)."""
    with store.reading() as conn:
        value = conn.execute(sa.select(sa.func.max(platform_events.c.seq))).scalar()
    return int(value or 0)
