"""The PostgreSQL transport: procrastinate carries the jobs (see docs/adr/0004-job-queue.md).

procrastinate's tables live in their own schema (``procrastinate``) of the state database,
created at the first open of a server or worker when missing (under an advisory lock, so
concurrent starts apply it once). Each stackyard job is one procrastinate job of the task
``stackyard.run_job`` whose only argument is the stackyard job id; its ``lock`` is
``env:<name>``, so procrastinate never runs two jobs of one environment at once (and keeps
their order). Transient failures are retried through procrastinate's retry (the same job,
so the order holds), with the delay the worker chose. A worker that stops sending
heartbeats is declared dead by ``recover_stalled``, which puts its jobs back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from stackyard.errors import InvalidInputError

__all__ = ["SCHEMA", "TASK", "PgQueue", "conninfo", "ensure_schema", "retry_later", "serve"]

log = logging.getLogger("stackyard.jobs")

#: The PostgreSQL schema holding procrastinate's tables and functions.
SCHEMA = "procrastinate"
#: The one task every stackyard job runs as.
TASK = "stackyard.run_job"
#: ``pg_advisory_xact_lock`` key serialising schema creation ("styjobs!").
_SCHEMA_LOCK_KEY = 0x7374796A6F627321


def _import() -> Any:
    try:
        import procrastinate
    except ImportError as exc:  # pragma: no cover - the server extra is not installed
        raise InvalidInputError(
            "The PostgreSQL job queue needs procrastinate",
            hint="Install the server extra: pip install 'stackyard[server]'.",
        ) from exc
    return procrastinate


def conninfo(database_url: str, *, schema: str | None = SCHEMA) -> str:
    """A libpq connection string for the state database (psycopg), its search path set to
    procrastinate's schema."""
    from psycopg.conninfo import make_conninfo
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql")
    base = url.render_as_string(hide_password=False)
    if schema is None:
        return make_conninfo(base)
    return make_conninfo(base, options=f"-c search_path={schema}")


def ensure_schema(database_url: str) -> bool:
    """Create procrastinate's schema when missing; True when it was created now."""
    import psycopg

    _import()
    from procrastinate.schema import SchemaManager

    with psycopg.connect(conninfo(database_url, schema=None)) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        found = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.procrastinate_jobs",)).fetchone()
        if found is not None and found[0] is not None:
            return False
        conn.execute(f"SET LOCAL search_path TO {SCHEMA}")
        conn.execute(SchemaManager.get_schema())
        return True


def retry_later(delay_s: float) -> BaseException:
    """What the task raises after a transient failure: procrastinate's own ``JobRetry``,
    run the same job again (keeping its place in its lock's order) in ``delay_s``."""
    procrastinate = _import()
    decision = procrastinate.RetryDecision(retry_in={"seconds": round(max(0.0, delay_s))})
    retry: BaseException = procrastinate.exceptions.JobRetry(retry_decision=decision)
    return retry


class _Retry:
    """procrastinate's retry strategy: retry exactly when the task raised ``retry_later``."""

    def get_retry_exception(self, exception: BaseException, job: Any) -> Any:
        procrastinate = _import()
        return exception if isinstance(exception, procrastinate.exceptions.JobRetry) else None


class PgQueue:
    """The submitting side: defer and cancel procrastinate jobs (synchronously)."""

    def __init__(self, database_url: str) -> None:
        procrastinate = _import()
        ensure_schema(database_url)
        self.app: Any = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(
                conninfo=conninfo(database_url), min_size=1, max_size=4
            )
        )
        self.app.open()

    def defer(self, job_id: str, *, lock: str | None) -> int:
        """Queue ``job_id``; returns procrastinate's id of it."""
        deferrer = self.app.configure_task(TASK, lock=lock)
        return int(deferrer.defer(job_id=job_id))

    def cancel(self, queue_id: int) -> bool:
        """Cancel a job that has not started; False when a worker already took it."""
        return bool(self.app.job_manager.cancel_job_by_id(queue_id, abort=False))

    def close(self) -> None:
        """Close the connection pool."""
        self.app.close()


async def serve(
    database_url: str,
    run_job: Callable[[str], None],
    *,
    should_stop: Callable[[], bool],
    concurrency: int,
    name: str,
    heartbeat_s: float,
    stalled_after_s: float,
) -> None:
    """Run a procrastinate worker until ``should_stop()``: ``run_job(job_id)`` runs in a
    thread per job (at most ``concurrency`` at once), and stalled jobs are recovered."""
    procrastinate = _import()
    ensure_schema(database_url)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo(database_url), min_size=1, max_size=concurrency + 4
        )
    )

    def task(job_id: str) -> None:
        run_job(job_id)

    app.task(name=TASK, retry=_Retry(), pass_context=False)(task)
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                concurrency=concurrency,
                name=name,
                install_signal_handlers=False,
                update_heartbeat_interval=heartbeat_s,
                stalled_worker_timeout=stalled_after_s,
                fetch_job_polling_interval=1.0,
                listen_notify=True,
            )
        )
        recovery = asyncio.create_task(_recover_forever(app, heartbeat_s, stalled_after_s))
        try:
            while not should_stop() and not worker.done():
                await asyncio.sleep(0.2)
        finally:
            recovery.cancel()
            worker.cancel()  # procrastinate stops fetching and waits for the running jobs
            for t in (recovery, worker):
                try:
                    await t
                except asyncio.CancelledError:
                    pass
                except Exception:  # the worker's own failure: logged, the process ends
                    log.exception("the job worker stopped with an error")


async def _recover_forever(app: Any, every_s: float, stalled_after_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await recover_stalled(app, stalled_after_s)
        except Exception:  # a lost connection: try again at the next beat
            log.warning("stalled-job recovery failed; trying again", exc_info=True)


async def recover_stalled(app: Any, stalled_after_s: float) -> list[int]:
    """Queue again the jobs of workers without a heartbeat for ``stalled_after_s``.

    Any number of workers may run this at once: a job already put back by another one is
    no longer ``doing``, and procrastinate refuses to retry it twice.
    """
    retried: list[int] = []
    for job in await app.job_manager.get_stalled_jobs(
        task_name=TASK, seconds_since_heartbeat=stalled_after_s
    ):
        try:
            await app.job_manager.retry_job(job)
        except Exception:  # another worker retried it first
            log.debug("job %s was queued again by another worker", job.id)
            continue
        log.warning("job %s of a stopped worker is queued again", job.id)
        retried.append(int(job.id))
    return retried
