"""Jobs as values: the ``JobStatus`` vocabulary with its moves, ``Job`` and ``JobEvent``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from stackyard.errors import InvalidInputError, StackyardError
from stackyard.model.status import Lifecycle

__all__ = [
    "JOB",
    "KINDS",
    "Job",
    "JobConflictError",
    "JobEvent",
    "JobNotFoundError",
    "JobStatus",
    "iso",
]


class JobStatus(StrEnum):
    """Where a job is (``jobs.status``)."""

    QUEUED = "queued"  # waiting for a worker (again, after a transient failure)
    RUNNING = "running"  # a worker runs it
    SUCCEEDED = "succeeded"  # the operation returned; ``result`` holds its JSON
    FAILED = "failed"  # a permanent error, or a transient one past the last attempt
    CANCELLED = "cancelled"  # cancelled while queued: it never ran

    @property
    def is_final(self) -> bool:
        """True once the job will never move again."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


_J = JobStatus
#: The allowed moves. ``running -> running`` is a takeover: the worker running it was
#: declared dead (no heartbeat) and another one runs it again (the intent journal makes the
#: repeat safe); ``running -> queued`` is a retry after a transient failure.
JOB: Lifecycle[JobStatus] = Lifecycle(
    JobStatus,
    initial=frozenset({_J.QUEUED}),
    moves=MappingProxyType(
        {
            _J.QUEUED: frozenset({_J.RUNNING, _J.CANCELLED}),
            _J.RUNNING: frozenset({_J.SUCCEEDED, _J.FAILED, _J.QUEUED}),
            _J.SUCCEEDED: frozenset(),
            _J.FAILED: frozenset(),
            _J.CANCELLED: frozenset(),
        }
    ),
)

#: The job kinds a worker knows, each with the argument keys it requires.
KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "deploy": ("env",),
        "env.create": ("name",),
        "env.destroy": ("name",),
        "promote": ("release", "to"),
        "approve": ("deployment",),
        "reap": (),
        "drift.fix": (),
        "adopt": ("env", "address"),
        "env.repair": ("name",),
        "upgrade": ("component", "to"),
        "remove": ("env",),
    }
)


def iso(ts: float | None) -> str | None:
    """An epoch timestamp as ISO 8601 UTC with microseconds (sortable as text)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    """One long operation: who asked for what, where it is, and how it ended.

    ``args`` never holds a secret (Score texts hold placeholders, not values); ``result`` is
    the operation's JSON, the same shape as the CLI's ``--output json``; ``error`` is
    ``{"type", "title", "detail", "exit_code", "diagnostics", "hint"}`` (masked).
    """

    id: str
    kind: str
    env: str | None
    actor: str
    teams: tuple[str, ...]
    status: JobStatus
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    args: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    worker: str | None = None
    cancel_requested: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "id": self.id,
            "kind": self.kind,
            "env": self.env,
            "actor": self.actor,
            "teams": list(self.teams),
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "args": self.args,
            "result": self.result,
            "error": self.error,
            "worker": self.worker,
            "cancel_requested": self.cancel_requested,
        }


@dataclass(frozen=True)
class JobEvent:
    """One line of a job's progress, in order (``seq`` from 1)."""

    job_id: str
    seq: int
    at: str
    message: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "job_id": self.job_id,
            "seq": self.seq,
            "at": self.at,
            "message": self.message,
            "data": self.data,
        }


class JobNotFoundError(InvalidInputError):
    """No job has this id (the API answers 404)."""

    http_status = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"No job '{job_id}'", hint="List jobs with GET /api/v1/jobs to find its id."
        )
        self.job_id = job_id


class JobConflictError(StackyardError):
    """The job is not in a status the request needs (cancelling a running job; 409)."""

    exit_code = 2
    http_status = 409

    def __init__(self, job: Job, wanted: str) -> None:
        super().__init__(
            f"Job {job.id} is {job.status.value}: it cannot be {wanted}",
            hint="Only a queued job can be cancelled; a running one finishes (or fails) by itself.",
        )
        self.job_id = job.id
        self.status = job.status
