"""The platform's event log (``platform_events``): what happened, in order, for webhooks and
metrics. The service layer publishes (``notify``: never failing the operation it tells of);
readers page through by ``seq``. ``stackyard.ops.events`` re-exports this module for the day
2 readers; it lives here, below the service layer, so that ``environments`` can publish.

Types (``TYPES``) are dotted, past tense or state: ``deployment.started``,
``deployment.succeeded``, ``deployment.failed``, ``approval.requested``, ``approval.decided``,
``environment.expiring``, ``environment.expired``, ``environment.destroyed``,
``drift.found``, ``component.deprecated``. ``data`` is JSON and never holds a secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackyard.model.platform import EVENT_TYPES
from stackyard.state.tables import ops_marks, platform_events, upsert

if TYPE_CHECKING:
    from stackyard.model.environment import Deployment, Environment
    from stackyard.state.sql import SqlStateStore

__all__ = [
    "TYPES",
    "Event",
    "about",
    "announce_expired",
    "latest_seq",
    "notify",
    "notify_deployment",
    "once",
    "publish",
    "read",
]

log = logging.getLogger("stackyard.ops")

#: The event types, in the order the docs list them (the platform documents' own list: a
#: ``Webhook`` subscribes to them).
TYPES: tuple[str, ...] = EVENT_TYPES


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


def notify(
    store: SqlStateStore,
    type: str,
    subject: str,
    *,
    env: str | None = None,
    env_type: str | None = None,
    team: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> int | None:
    """``publish`` for the service layer: an event that cannot be written is logged and
    dropped, never failing the operation it tells of; its ``seq``, or None."""
    try:
        return publish(store, type, subject, env=env, env_type=env_type, team=team, data=data)
    except Exception as exc:
        log.warning(
            "the platform event %s (%s) was not recorded: %s",
            type,
            subject[:200],
            type_name(exc),
        )
        return None


def about(env: Environment) -> dict[str, Any]:
    """The ``env``, ``env_type`` and ``team`` (its owner) of an event about ``env``."""
    return {"env": env.name, "env_type": env.type, "team": env.owner}


def notify_deployment(
    store: SqlStateStore,
    type: str,
    env: Environment,
    dep: Deployment,
    **extra: Any,
) -> int | None:
    """``notify`` of a ``deployment.*`` or ``approval.*`` event: the deployment's id, kind,
    release, workloads, actor and outcome (its error's first line when it failed)."""
    data: dict[str, Any] = {
        "deployment": dep.id,
        "kind": dep.kind,
        "release": dep.release_id,
        "workloads": list(dep.workloads),
        "actor": dep.actor,
        "status": str(dep.status),
    }
    if dep.error:
        data["error"] = dep.error.splitlines()[0][:300]
    data.update(extra)
    return notify(store, type, f"deployment {dep.id}", **about(env), data=data)


def once(store: SqlStateStore, key: str, value: Mapping[str, Any] | None = None) -> bool:
    """Set the mark ``key`` (``ops_marks``) unless it is set; True for the one caller that
    set it (across processes too: the key is the table's primary key)."""
    with store.writing() as conn:
        inserted = conn.execute(
            upsert(conn, ops_marks)
            .values(key=key[:300], at=time.time(), value=dict(value or {}))
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(ops_marks.c.key)  # an INSERT's rowcount is -1 on psycopg
        ).first()
        return inserted is not None


def announce_expired(store: SqlStateStore, env: Environment) -> int | None:
    """Publish ``environment.expired`` for ``env`` once per expiry (the mark
    ``expired:<env>:<expires_at>``): whoever sees it first, the reaper or the expiry step.
    Never raises."""
    if env.expires_at is None:
        return None
    try:
        if not once(store, f"expired:{env.name}:{env.expires_at:.3f}"):
            return None
    except Exception as exc:
        log.warning("the expiry of %s was not announced: %s", env.name, type_name(exc))
        return None
    return notify(
        store,
        "environment.expired",
        f"environment {env.name}",
        **about(env),
        data={"expires_at": env.expires_at, "status": str(env.status)},
    )


def type_name(exc: BaseException) -> str:
    """An exception's class and first line (no values of the statement it ran)."""
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


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
