"""Jobs: long operations (deploy, env create and destroy, promote, approve, reap) queued,
run by workers, serialised per environment, and read back with their events."""

from __future__ import annotations

from stackyard.jobs.model import Job, JobConflictError, JobEvent, JobNotFoundError, JobStatus
from stackyard.jobs.queue import Jobs, open_jobs
from stackyard.jobs.worker import Worker

__all__ = [
    "Job",
    "JobConflictError",
    "JobEvent",
    "JobNotFoundError",
    "JobStatus",
    "Jobs",
    "Worker",
    "open_jobs",
]
