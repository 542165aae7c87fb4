"""The environment lock: a lease with a heartbeat and a fencing token, kept in the store.

Each function runs inside the caller's write transaction (``sql.py`` opens it). On SQLite
that transaction began with ``BEGIN IMMEDIATE``, so it is the only writer; on PostgreSQL the
row locks taken here (``FOR UPDATE`` / ``FOR SHARE``) serialise the writers of one environment.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from stackyard.errors import InvalidInputError, LockHeldError, LockLostError
from stackyard.state.api import Lease, LockInfo
from stackyard.state.tables import lock_tokens, locks, upsert

__all__ = [
    "acquire",
    "check_fence",
    "clock",
    "force_unlock",
    "heartbeat",
    "held_error",
    "holder_identity",
    "lock_info",
    "release",
]


def clock(conn: Connection) -> float:
    """The store's clock in epoch seconds, which every lease is measured by.

    PostgreSQL's ``clock_timestamp()``, so writers on several machines agree on when a lease
    runs out whatever their own clocks say (a machine running ahead would otherwise take over
    a live lease). A SQLite store is a file on this machine: its clock is the machine's.
    """
    if conn.dialect.name == "postgresql":
        return float(conn.execute(_CLOCK).scalar_one())
    return time.time()


_CLOCK = sa.text("SELECT extract(epoch FROM clock_timestamp())")


def holder_identity(actor: str) -> str:
    """How a lock holder is named to others: ``actor@host (pid N)``."""
    return f"{actor}@{socket.gethostname()} (pid {os.getpid()})"


def lock_info(conn: Connection, env: str, *, for_update: bool = False) -> LockInfo | None:
    """The environment's lock row, expired or not."""
    query = sa.select(locks).where(locks.c.env == env)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        return None
    return LockInfo(
        env=row.env,
        lock_id=row.lock_id,
        holder=row.holder,
        token=row.token,
        acquired_at=row.acquired_at,
        expires_at=row.expires_at,
    )


def held_error(info: LockInfo) -> LockHeldError:
    """The error telling a second writer who holds the lock."""
    return LockHeldError(
        info.env, holder=info.holder, lock_id=info.lock_id, expires_at=_iso(info.expires_at)
    )


def acquire(conn: Connection, env: str, *, holder: str, ttl_s: float) -> Lease:
    """Take the lock, taking over an expired lease; ``LockHeldError`` if it is held.

    The token counter row is locked first (an upsert), which serialises acquirers of one
    environment on PostgreSQL; a losing acquirer's increment is rolled back with its
    transaction, and a winner's is kept forever, so tokens never repeat or go back.
    """
    now = clock(conn)
    token = conn.execute(
        upsert(conn, lock_tokens)
        .values(env=env, last_token=1)
        .on_conflict_do_update(
            index_elements=[lock_tokens.c.env],
            set_={"last_token": lock_tokens.c.last_token + 1},
        )
        .returning(lock_tokens.c.last_token)
    ).scalar_one()
    current = lock_info(conn, env, for_update=True)
    if current is not None and current.expires_at > now:
        raise held_error(current)
    lease = Lease(
        env=env, lock_id=uuid.uuid4().hex, holder=holder, token=token, expires_at=now + ttl_s
    )
    values = {
        "lock_id": lease.lock_id,
        "holder": holder,
        "token": token,
        "acquired_at": now,
        "expires_at": lease.expires_at,
    }
    if current is None:
        conn.execute(sa.insert(locks).values(env=env, **values))
    else:
        conn.execute(sa.update(locks).where(locks.c.env == env).values(**values))
    return lease


def heartbeat(conn: Connection, lease: Lease, *, ttl_s: float) -> Lease:
    """Extend the lease; ``LockLostError`` once it was released, broken or taken over.

    A lease that expired but that nobody took over is still ours (its token is the newest),
    so it is extended.
    """
    current = lock_info(conn, lease.env, for_update=True)
    if current is None or (current.lock_id, current.token) != (lease.lock_id, lease.token):
        raise lost_error(lease, current)
    expires_at = clock(conn) + ttl_s
    conn.execute(sa.update(locks).where(locks.c.env == lease.env).values(expires_at=expires_at))
    return Lease(
        env=lease.env,
        lock_id=lease.lock_id,
        holder=lease.holder,
        token=lease.token,
        expires_at=expires_at,
    )


def release(conn: Connection, lease: Lease) -> None:
    """Delete the lock row if it is still this lease's."""
    conn.execute(
        sa.delete(locks).where(
            locks.c.env == lease.env,
            locks.c.lock_id == lease.lock_id,
            locks.c.token == lease.token,
        )
    )


def force_unlock(conn: Connection, env: str, lock_id: str) -> None:
    """Break the lock given its id; ``InvalidInputError`` if there is no lock with that id."""
    current = lock_info(conn, env, for_update=True)
    if current is None:
        raise InvalidInputError(
            f"Environment '{env}' is not locked", hint="There is nothing to unlock."
        )
    if current.lock_id != lock_id:
        raise InvalidInputError(
            f"Lock id {lock_id} does not match the lock on environment '{env}'",
            hint=f"Run 'stackyard state lock {env}' to see the current lock and its id.",
        )
    conn.execute(sa.delete(locks).where(locks.c.env == env, locks.c.lock_id == lock_id))


def check_fence(conn: Connection, lease: Lease) -> None:
    """Refuse a write unless ``lease`` is still the environment's live lease.

    Runs first in every fenced write transaction. On PostgreSQL the lock row is held
    ``FOR SHARE`` until the transaction ends, so a takeover (which needs ``FOR UPDATE``) waits
    for writes already admitted, and writes admitted later see the new token and fail.
    """
    checked = conn.info.get(FENCED)
    key = (lease.env, lease.lock_id, lease.token)
    if checked is not None and key in checked:
        return  # already checked in this (group-committed) transaction
    row = conn.execute(_FENCE, {"w_env": lease.env}).one_or_none()
    if row is None or (row.lock_id, row.token) != (lease.lock_id, lease.token):
        raise lost_error(lease, None if row is None else lock_info(conn, lease.env))
    if row.expires_at <= clock(conn):
        raise expired_error(lease, row.expires_at)
    if checked is not None:
        checked.add(key)


#: ``conn.info`` key of the fences already checked in the current group-commit transaction.
FENCED = "stackyard.fenced"


_FENCE = (
    sa.select(locks.c.lock_id, locks.c.token, locks.c.expires_at)
    .where(locks.c.env == sa.bindparam("w_env"))
    .with_for_update(read=True)
)


def expired_error(lease: Lease, expires_at: float) -> LockLostError:
    """The error for a write under a lease that ran out."""
    return LockLostError(
        f"The lease on environment '{lease.env}' (lock {lease.lock_id}) expired at "
        f"{_iso(expires_at)}; refusing to write",
        hint="Heartbeat more often than the lease ttl, and run the operation again.",
    )


def lost_error(lease: Lease, current: LockInfo | None) -> LockLostError:
    """The error for a write under a lease that was taken over, released or broken."""
    now_held = (
        f"it is now held by {current.holder} (lock {current.lock_id}, token {current.token})"
        if current is not None
        else "it was released or broken"
    )
    return LockLostError(
        f"Lost the lock on environment '{lease.env}' (lock {lease.lock_id}, token "
        f"{lease.token}): {now_held}; refusing to write",
        hint="Another operation took over. Check 'stackyard state lock' and run again.",
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
