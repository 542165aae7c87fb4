"""The jobs read model in the state store: the ``jobs`` and ``job_events`` tables (0006).

Every backend keeps its jobs here: the API reads status, results and events from these
tables whichever queue carries the work. On SQLite the ``jobs`` table is also the queue
(``claim``); on PostgreSQL procrastinate carries the work and these rows follow it.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection

from stackyard.jobs.model import JOB, Job, JobEvent, JobNotFoundError, JobStatus, iso
from stackyard.state.locks import clock
from stackyard.state.tables import JSON

if TYPE_CHECKING:
    from stackyard.state.sql import SqlStateStore

__all__ = ["JobStore", "Running", "job_events", "jobs"]

_meta = sa.MetaData()

jobs = sa.Table(
    "jobs",
    _meta,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("env", sa.String(200), nullable=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("teams", JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("args", JSON, nullable=False),
    sa.Column("result", JSON, nullable=True),
    sa.Column("error", JSON, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("not_before", sa.Float, nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    sa.Column("worker", sa.String(300), nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("queue_id", sa.BigInteger, nullable=True),
)

job_events = sa.Table(
    "job_events",
    _meta,
    sa.Column("job_id", sa.String(40), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", JSON, nullable=False),
)


@dataclass(frozen=True)
class Running:
    """A job a worker has just started: the job, and whether it took it over from a dead one."""

    job: Job
    taken_over_from: str | None = None


class JobStore:
    """Reads and writes job rows; every status change is checked against ``JOB``."""

    def __init__(self, store: SqlStateStore) -> None:
        self.store = store

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        with self.store.reading() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one_or_none()
        return None if row is None else _job(row)

    def require(self, job_id: str) -> Job:
        """The job, or ``JobNotFoundError``."""
        found = self.get(job_id)
        if found is None:
            raise JobNotFoundError(job_id)
        return found

    def list(
        self, *, env: str | None = None, limit: int = 50, before: str | None = None
    ) -> list[Job]:
        """Jobs newest first; ``before`` is the id of the last job of the previous page."""
        query = sa.select(jobs)
        if env is not None:
            query = query.where(jobs.c.env == env)
        with self.store.reading() as conn:
            if before is not None:
                edge = conn.execute(
                    sa.select(jobs.c.created_at).where(jobs.c.id == before)
                ).scalar_one_or_none()
                if edge is None:
                    raise JobNotFoundError(before)
                query = query.where(
                    sa.or_(
                        jobs.c.created_at < edge,
                        sa.and_(jobs.c.created_at == edge, jobs.c.id < before),
                    )
                )
            rows = conn.execute(
                query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(max(1, limit))
            ).all()
        return [_job(r) for r in rows]

    def events(self, job_id: str, *, after: int = 0) -> builtins.list[JobEvent]:
        """The job's events with ``seq > after``, in order."""
        with self.store.reading() as conn:
            rows = conn.execute(
                sa.select(job_events)
                .where(job_events.c.job_id == job_id, job_events.c.seq > after)
                .order_by(job_events.c.seq)
            ).all()
        return [JobEvent(r.job_id, r.seq, iso(r.at) or "", r.message, dict(r.data)) for r in rows]

    def queue_id(self, job_id: str) -> int | None:
        """The PostgreSQL queue's id of the job (None on the embedded queue)."""
        with self.store.reading() as conn:
            found = conn.execute(sa.select(jobs.c.queue_id).where(jobs.c.id == job_id)).scalar()
        return None if found is None else int(found)

    # -- writes -----------------------------------------------------------------------------

    def insert(
        self,
        kind: str,
        *,
        env: str | None,
        actor: str,
        teams: tuple[str, ...],
        args: dict[str, Any],
        max_attempts: int,
    ) -> Job:
        """A new queued job."""
        job_id = f"job-{secrets.token_hex(8)}"
        with self.store.writing() as conn:
            now = clock(conn)
            conn.execute(
                jobs.insert().values(
                    id=job_id,
                    kind=kind,
                    env=env,
                    actor=actor,
                    teams=list(teams),
                    status=JOB.check(None, JobStatus.QUEUED).value,
                    attempts=0,
                    max_attempts=max_attempts,
                    args=args,
                    created_at=now,
                    cancel_requested=False,
                )
            )
            _append(conn, job_id, now, "queued", {"kind": kind, "env": env})
        return self.require(job_id)

    def set_queue_id(self, job_id: str, queue_id: int) -> None:
        """Remember the PostgreSQL queue's id of the job."""
        with self.store.writing() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(queue_id=queue_id))

    def cancel(self, job_id: str) -> bool:
        """Move a queued job to cancelled; False when it is no longer queued."""
        with self.store.writing() as conn:
            now = clock(conn)
            done = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.QUEUED.value)
                .values(
                    status=JOB.check(JobStatus.QUEUED, JobStatus.CANCELLED).value,
                    cancel_requested=True,
                    finished_at=now,
                )
            ).rowcount
            if done:
                _append(conn, job_id, now, "cancelled", {})
        return bool(done)

    def start(self, job_id: str, *, worker: str) -> Running | None:
        """Mark the job running on ``worker`` (one more attempt); None when it is final.

        A job already ``running`` is being taken over: its worker was declared dead.
        """
        with self.store.writing() as conn:
            return self._start(conn, job_id, worker=worker)

    def _start(self, conn: Connection, job_id: str, *, worker: str) -> Running | None:
        row = conn.execute(
            sa.select(jobs).where(jobs.c.id == job_id).with_for_update()
        ).one_or_none()
        if row is None:
            return None
        old = JOB.parse(row.status, subject=job_id)
        if old.is_final:
            return None
        now = clock(conn)
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(
                status=JOB.check(old, JobStatus.RUNNING).value,
                attempts=row.attempts + 1,
                worker=worker,
                started_at=now,
                heartbeat_at=now,
                not_before=None,
            )
        )
        before = row.worker if old is JobStatus.RUNNING else None
        _append(
            conn,
            job_id,
            now,
            f"attempt {row.attempts + 1} on {worker}"
            + (f" (taken over from {before}, which stopped)" if before else ""),
            {"attempt": row.attempts + 1, "worker": worker, "taken_over_from": before},
        )
        row_after = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()
        return Running(_job(row_after), before)

    def claim(self, *, worker: str, stalled_after_s: float) -> Running | None:
        """The embedded queue: start the oldest runnable job, in one write transaction.

        A job is runnable when it is queued (its backoff, if any, over), is the oldest queued
        job of its environment, and no job of its environment is running; or when it is
        running on a worker whose heartbeat is older than ``stalled_after_s`` (the worker
        died: it is taken over). On SQLite the transaction is ``BEGIN IMMEDIATE``, so two
        claimers never pick the same job.
        """
        # A read first: an idle queue costs no write transaction (SQLite has one writer).
        with self.store.reading() as conn:
            if (
                _runnable(_candidates(conn), now=clock(conn), stalled_after_s=stalled_after_s)
                is None
            ):
                return None
        with self.store.writing() as conn:
            chosen = _runnable(_candidates(conn), now=clock(conn), stalled_after_s=stalled_after_s)
            if chosen is None:
                return None
            return self._start(conn, chosen, worker=worker)

    def heartbeat(self, job_ids: Iterable[str]) -> None:
        """Tell the embedded queue these running jobs' worker is alive."""
        ids = list(job_ids)
        if not ids:
            return
        with self.store.writing() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.id.in_(ids), jobs.c.status == JobStatus.RUNNING.value)
                .values(heartbeat_at=clock(conn))
            )

    def succeed(self, job_id: str, result: dict[str, Any], *, worker: str) -> None:
        """Record the result (only by the worker that runs the job)."""
        self._finish(job_id, JobStatus.SUCCEEDED, worker=worker, result=result)

    def fail(self, job_id: str, error: dict[str, Any], *, worker: str) -> None:
        """Record a final failure."""
        self._finish(job_id, JobStatus.FAILED, worker=worker, error=error)

    def requeue(self, job_id: str, error: dict[str, Any], *, worker: str, delay_s: float) -> None:
        """A transient failure: queued again, runnable after ``delay_s``."""
        with self.store.writing() as conn:
            now = clock(conn)
            done = conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status == JobStatus.RUNNING.value,
                    jobs.c.worker == worker,
                )
                .values(
                    status=JOB.check(JobStatus.RUNNING, JobStatus.QUEUED).value,
                    error=error,
                    not_before=now + delay_s,
                )
            ).rowcount
            if done:
                _append(
                    conn,
                    job_id,
                    now,
                    f"retrying in {delay_s:g} s: {error.get('detail', '')}",
                    {"retry_in_s": delay_s, "error": error},
                )

    def append(self, job_id: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Add one event to the job."""
        with self.store.writing() as conn:
            _append(conn, job_id, clock(conn), message, data or {})

    def _finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        worker: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        with self.store.writing() as conn:
            now = clock(conn)
            # Only the worker that runs the job writes its end: a worker declared dead that
            # comes back must not overwrite what the one that took over wrote.
            done = conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status == JobStatus.RUNNING.value,
                    jobs.c.worker == worker,
                )
                .values(
                    status=JOB.check(JobStatus.RUNNING, status).value,
                    result=result,
                    error=error,
                    finished_at=now,
                )
            ).rowcount
            if done:
                detail = "" if error is None else f": {error.get('detail', '')}"
                _append(conn, job_id, now, f"{status.value}{detail}", {"status": status.value})


def _runnable(rows: Iterable[Any], *, now: float, stalled_after_s: float) -> str | None:
    """The id of the first runnable job of ``rows`` (oldest first), as ``claim`` says."""
    busy: set[str] = set()
    seen: set[str] = set()
    stalled: str | None = None
    for r in rows:
        if r.status == JobStatus.RUNNING.value:
            if (r.heartbeat_at or 0.0) < now - stalled_after_s and stalled is None:
                stalled = r.id
            elif r.env is not None:
                busy.add(r.env)
    if stalled is not None:
        return stalled
    for r in rows:
        if r.status != JobStatus.QUEUED.value:
            continue
        if r.env is not None:
            if r.env in busy or r.env in seen:
                continue
            seen.add(r.env)  # only an environment's oldest queued job may start
        if r.not_before is None or r.not_before <= now:
            return str(r.id)
    return None


def _candidates(conn: Connection) -> list[Any]:
    """The queued and running jobs, oldest first (what ``_runnable`` chooses among)."""
    return list(
        conn.execute(
            sa.select(jobs.c.id, jobs.c.env, jobs.c.status, jobs.c.not_before, jobs.c.heartbeat_at)
            .where(jobs.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
            .order_by(jobs.c.created_at, jobs.c.id)
        ).all()
    )


def _append(conn: Connection, job_id: str, at: float, message: str, data: dict[str, Any]) -> None:
    """One event, numbered after the job's last (inside the caller's write transaction).

    The job's row is locked first: an apply reports its parallel changes from several
    threads, and two appends reading the same last number would clash on PostgreSQL (the
    loser's event was lost). SQLite's single writer needs no lock (``FOR UPDATE`` is a no-op).
    """
    conn.execute(sa.select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())
    last = conn.execute(
        sa.select(sa.func.max(job_events.c.seq)).where(job_events.c.job_id == job_id)
    ).scalar()
    conn.execute(
        job_events.insert().values(
            job_id=job_id, seq=int(last or 0) + 1, at=at, message=message, data=data
        )
    )


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        env=row.env,
        actor=row.actor,
        teams=tuple(row.teams or ()),
        status=JOB.parse(row.status, subject=row.id),
        attempts=int(row.attempts),
        created_at=iso(row.created_at) or "",
        started_at=iso(row.started_at),
        finished_at=iso(row.finished_at),
        args=dict(row.args or {}),
        result=None if row.result is None else dict(row.result),
        error=None if row.error is None else dict(row.error),
        worker=row.worker,
        cancel_requested=bool(row.cancel_requested),
    )
