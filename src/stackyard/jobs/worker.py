"""The worker: runs jobs, one thread each, on the queue the settings' store implies.

``stackyard worker`` runs one in the foreground; the embedded ``stackyard server`` runs one
in a thread. On PostgreSQL procrastinate fetches the jobs (``pgqueue.serve``); on SQLite
the worker claims them from the ``jobs`` table itself. Either way one job runs as
``execute`` says: start it (an attempt more), run its handler, and record the result, a
retry after a transient failure (with exponential backoff), or the final failure.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from stackyard.jobs import handlers
from stackyard.jobs.model import Job
from stackyard.jobs.queue import SUBMITTED, is_postgres, max_attempts
from stackyard.jobs.store import JobStore

if TYPE_CHECKING:
    from stackyard.settings import Settings
    from stackyard.state.sql import SqlStateStore

__all__ = ["DEFAULT_HEARTBEAT_S", "DEFAULT_STALLED_AFTER_S", "Worker"]

log = logging.getLogger("stackyard.jobs")

#: How often a worker says it is alive, and after how long without a word it is dead.
DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_STALLED_AFTER_S = 30.0
#: The first retry's delay after a transient failure; each next one doubles, up to the cap.
DEFAULT_RETRY_BASE_S = 2.0
RETRY_CAP_S = 300.0
#: How often the embedded worker looks for jobs when nothing woke it (seconds).
EMBEDDED_POLL_S = 0.05


class Worker:
    """Runs jobs until ``run``'s ``stop`` event is set (running jobs are finished first)."""

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int = 2,
        name: str | None = None,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        stalled_after_s: float = DEFAULT_STALLED_AFTER_S,
        retry_base_s: float = DEFAULT_RETRY_BASE_S,
        ticker: bool | None = None,
    ) -> None:
        self.settings = settings
        #: run the periodic day 2 steps (``stackyard.ops.ticker``); STACKYARD_TICKER=0 turns
        #: them off
        self.ticker = os.environ.get("STACKYARD_TICKER", "1") != "0" if ticker is None else ticker
        self.concurrency = max(1, concurrency)
        host, pid = socket.gethostname(), os.getpid()
        #: how jobs and events name this worker: ``name@host (pid N)``, like a lock holder
        self.identity = f"{name or 'worker'}@{host} (pid {pid})"
        self.heartbeat_s = heartbeat_s
        self.stalled_after_s = stalled_after_s
        self.retry_base_s = retry_base_s
        self.max_attempts = max_attempts()
        self._running: set[str] = set()
        self._mutex = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        """Run jobs until ``stop`` is set; returns once the running ones have finished."""
        from stackyard.state import open_store

        store = open_store(self.settings)
        if self.ticker:
            from stackyard.ops.ticker import Ticker

            Ticker(self.settings).start(stop)
        try:
            if is_postgres(self.settings):
                self._serve_postgres(store, stop)
            else:
                self._serve_embedded(store, stop)
        finally:
            store.close()

    # -- one job ----------------------------------------------------------------------------

    def execute(self, rows: JobStore, job_id: str) -> float | None:
        """Run one job; the delay before it should run again (a transient failure), or None."""
        started = rows.start(job_id, worker=self.identity)
        if started is None:
            return None  # cancelled, or already finished by another worker
        job = started.job
        with self._mutex:
            self._running.add(job.id)
        try:
            if started.taken_over_from:
                self._free_dead_holder(rows.store, job, started.taken_over_from)
            delay: float | None = self._attempt(rows, job)
            return delay
        finally:
            with self._mutex:
                self._running.discard(job.id)

    def _attempt(self, rows: JobStore, job: Job) -> float | None:
        def emit(message: str) -> None:
            rows.append(job.id, message)

        outcome = handlers.run(self.settings, job, emit)
        if outcome.error is None:
            rows.succeed(job.id, outcome.result or {}, worker=self.identity)
            return None
        if outcome.transient and job.attempts < self.max_attempts:
            delay = float(min(RETRY_CAP_S, self.retry_base_s * 2 ** (job.attempts - 1)))
            rows.requeue(job.id, outcome.error, worker=self.identity, delay_s=delay)
            return delay
        error = {**outcome.error, "attempts": job.attempts} if outcome.transient else outcome.error
        rows.fail(job.id, error, worker=self.identity)
        return None

    def _free_dead_holder(self, store: SqlStateStore, job: Job, dead: str) -> None:
        """The worker ``dead`` was declared dead while running ``job``: when it ran on this
        machine and its process is gone, the environment lock its process held is freed now
        rather than when its lease runs out (nothing can still write under it). On another
        machine the lease expiry and the lock's fencing token do the same, later."""
        host, pid = _host_pid(dead)
        if job.env is None or host != socket.gethostname() or pid is None or _alive(pid):
            return
        info = store.lock_info(job.env)
        if info is None or _host_pid(info.holder) != (host, pid):
            return
        try:
            store.force_unlock(job.env, info.lock_id)
        except Exception:  # released or taken over meanwhile
            return
        JobStore(store).append(
            job.id,
            f"freed the lock on '{job.env}' held by {info.holder}: its process is gone",
            {"lock_id": info.lock_id},
        )

    # -- the embedded queue -----------------------------------------------------------------

    def _serve_embedded(self, store: SqlStateStore, stop: threading.Event) -> None:
        rows = JobStore(store)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="stackyard-job")
        busy: set[Future[float | None]] = set()
        last_beat = 0.0
        try:
            while not stop.is_set():
                busy = {f for f in busy if not f.done()}
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_s:
                    with self._mutex:
                        running = list(self._running)
                    rows.heartbeat(running)
                    last_beat = now
                claimed = None
                if len(busy) < self.concurrency:
                    claimed = rows.claim(worker=self.identity, stalled_after_s=self.stalled_after_s)
                if claimed is None:
                    # woken at once by a job queued in this process; others (another
                    # process's) are found at the next poll
                    SUBMITTED.wait(EMBEDDED_POLL_S)
                    SUBMITTED.clear()
                    continue
                with self._mutex:
                    self._running.add(claimed.job.id)
                busy.add(pool.submit(self._run_claimed, rows, claimed.job, claimed.taken_over_from))
        finally:
            pool.shutdown(wait=True)

    def _run_claimed(self, rows: JobStore, job: Job, dead: str | None) -> float | None:
        try:
            if dead:
                self._free_dead_holder(rows.store, job, dead)
            return self._attempt(rows, job)
        except Exception:
            log.exception("job %s could not be recorded", job.id)
            return None
        finally:
            with self._mutex:
                self._running.discard(job.id)

    # -- the PostgreSQL queue ---------------------------------------------------------------

    def _serve_postgres(self, store: SqlStateStore, stop: threading.Event) -> None:
        import asyncio

        from stackyard.jobs.pgqueue import retry_later, serve

        rows = JobStore(store)

        def run_job(job_id: str) -> None:
            delay = self.execute(rows, job_id)
            if delay is not None:
                raise retry_later(delay)

        asyncio.run(
            serve(
                self.settings.database_url,
                run_job,
                should_stop=stop.is_set,
                concurrency=self.concurrency,
                name=self.identity,
                heartbeat_s=self.heartbeat_s,
                stalled_after_s=self.stalled_after_s,
            )
        )


def _host_pid(holder: str) -> tuple[str | None, int | None]:
    """``(host, pid)`` of ``name@host (pid N)``."""
    at = holder.rfind("@")
    if at < 0 or not holder.endswith(")") or " (pid " not in holder[at:]:
        return None, None
    host, _, rest = holder[at + 1 :].partition(" (pid ")
    try:
        return host, int(rest[:-1])
    except ValueError:
        return host, None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another account's process
    return True
