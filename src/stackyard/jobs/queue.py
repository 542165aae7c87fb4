"""``Jobs``: submit, read and cancel jobs, on the queue the settings' store implies.

A SQLite home uses the embedded queue: the ``jobs`` table itself, claimed by the in-process
worker of ``stackyard server`` (a single-process fallback). A PostgreSQL store uses
procrastinate (``pgqueue``), so any number of servers and workers share one queue.
"""

from __future__ import annotations

import builtins
import json
import os
import threading
from typing import TYPE_CHECKING, Any

from stackyard.errors import InvalidInputError
from stackyard.jobs.handlers import check_args, env_of
from stackyard.jobs.model import Job, JobConflictError, JobEvent, JobStatus
from stackyard.jobs.store import JobStore

if TYPE_CHECKING:
    from stackyard.jobs.pgqueue import PgQueue
    from stackyard.settings import Settings
    from stackyard.state.sql import SqlStateStore

__all__ = ["DEFAULT_MAX_ATTEMPTS", "SUBMITTED", "Jobs", "is_postgres", "max_attempts", "open_jobs"]

#: How many times a job runs at most when its failures are transient.
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS_ENV = "STACKYARD_JOB_MAX_ATTEMPTS"
#: Set when this process queued a job: the embedded worker of the same process (``stackyard
#: server`` on SQLite) claims it at once instead of at its next poll.
SUBMITTED = threading.Event()


def is_postgres(settings: Settings) -> bool:
    """Whether the settings' store is PostgreSQL (procrastinate) rather than SQLite."""
    return settings.database_url.startswith("postgres")


def max_attempts() -> int:
    """The attempts a job gets (``STACKYARD_JOB_MAX_ATTEMPTS``, default 3)."""
    raw = os.environ.get(MAX_ATTEMPTS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_ATTEMPTS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInputError(
            f"Invalid {MAX_ATTEMPTS_ENV} {raw!r}", hint="Give a whole number of 1 or more."
        )
    return value


class Jobs:
    """Opened with ``open_jobs(settings)``; close it (the store too, when ``owns_store``)."""

    def __init__(
        self, store: SqlStateStore, queue: PgQueue | None, *, owns_store: bool = True
    ) -> None:
        self.store = store
        self.rows = JobStore(store)
        self.queue = queue
        self._owns_store = owns_store

    def submit(
        self,
        kind: str,
        *,
        env: str | None,
        actor: str,
        teams: tuple[str, ...] = (),
        args: dict[str, Any],
    ) -> Job:
        """Queue a job; its arguments are checked now (``InvalidInputError``), its permission
        when it runs (as ``actor``, so RBAC and audit see the real requester)."""
        check_args(kind, args)
        try:
            json.dumps(args)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"The arguments of a '{kind}' job are not JSON", hint="Pass plain JSON values."
            ) from None
        env = env or env_of(kind, args)
        job = self.rows.insert(
            kind, env=env, actor=actor, teams=tuple(teams), args=args, max_attempts=max_attempts()
        )
        if self.queue is not None:
            try:
                queue_id = self.queue.defer(job.id, lock=f"env:{env}" if env else None)
            except BaseException:
                self.rows.cancel(job.id)  # never left queued with nothing to run it
                raise
            self.rows.set_queue_id(job.id, queue_id)
        else:
            SUBMITTED.set()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        return self.rows.get(job_id)

    def list(
        self, *, env: str | None = None, limit: int = 50, before: str | None = None
    ) -> list[Job]:
        """Jobs newest first (``before``: the last id of the previous page)."""
        return self.rows.list(env=env, limit=limit, before=before)

    def cancel(self, job_id: str, *, actor: str) -> Job:
        """Cancel a queued job (it never runs); ``JobConflictError`` once it has started."""
        job = self.rows.require(job_id)
        if job.status is not JobStatus.QUEUED:
            raise JobConflictError(job, "cancelled")
        if self.queue is not None:
            queue_id = self.rows.queue_id(job_id)
            # procrastinate decides: a job a worker has already fetched is not cancelled.
            if queue_id is not None and not self.queue.cancel(queue_id):
                raise JobConflictError(self.rows.require(job_id), "cancelled")
        if not self.rows.cancel(job_id):
            raise JobConflictError(self.rows.require(job_id), "cancelled")
        self.rows.append(job_id, f"cancelled by {actor}", {"by": actor})
        return self.rows.require(job_id)

    def events(self, job_id: str, *, after: int = 0) -> builtins.list[JobEvent]:
        """The job's events after ``after``, in order."""
        return self.rows.events(job_id, after=after)

    def close(self) -> None:
        """Close the queue, and the store when it was opened for these jobs."""
        try:
            if self.queue is not None:
                self.queue.close()
        finally:
            if self._owns_store:
                self.store.close()


def open_jobs(settings: Settings, *, store: SqlStateStore | None = None) -> Jobs:
    """The jobs of the settings' store (its schema upgraded to hold them if needed): on
    ``store`` when given (the caller's to close; a server shares its own), else on a store
    opened here and closed with the jobs."""
    from stackyard.state import open_store

    owned = store is None
    opened = open_store(settings) if store is None else store
    try:
        queue = None
        if is_postgres(settings):
            from stackyard.jobs.pgqueue import PgQueue

            queue = PgQueue(settings.database_url)
        return Jobs(opened, queue, owns_store=owned)
    except BaseException:
        if owned:
            opened.close()
        raise
