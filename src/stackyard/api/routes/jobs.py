"""Jobs: submitting a long operation (202 and a Location), reading a job, cancelling it, and
following its events as server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from stackyard.api import schemas
from stackyard.api.routing import Cursor, Limit, Who, next_link, yard
from stackyard.api.schemas import Page
from stackyard.errors import InvalidInputError
from stackyard.jobs import admission

if TYPE_CHECKING:
    from stackyard.api.context import Yard
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import Identity
    from stackyard.jobs import Job

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

FINAL = frozenset({"succeeded", "failed", "cancelled"})
#: The 202 answer of every route that submits a job.
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": schemas.Job,
        "description": "Accepted: the job, queued; `Location` is its URL.",
        "headers": {"Location": {"schema": {"type": "string"}, "description": "The job's URL."}},
    }
}


async def submit(
    request: Request,
    who: Identity,
    kind: str,
    *,
    env: str | None,
    args: dict[str, Any],
    precheck: Callable[[Workspace], object],
) -> JSONResponse:
    """Queue a ``kind`` job for ``who`` after ``precheck`` (the service layer's own checks of
    what the job will do: that the environment exists, that the caller may act) passed, so a
    request that would be refused is refused now (4xx), not after it was queued."""
    y = yard(request)
    await y.call(who, precheck)
    job = await y.bounded(
        lambda: y.jobs.submit(kind, env=env, actor=who.user, teams=tuple(who.teams), args=args)
    )
    return JSONResponse(
        job.to_json(), status_code=202, headers={"Location": f"/api/v1/jobs/{job.id}"}
    )


def _missing(job_id: str) -> InvalidInputError:
    return InvalidInputError(
        f"No job '{job_id[:64]}'", hint="GET /api/v1/jobs lists the jobs you may see."
    )


async def _job(y: Yard, who: Identity, job_id: str) -> Job:
    """The job ``job_id`` if the caller may see it (404 otherwise: its existence is not told)."""
    job = await y.bounded(lambda: y.jobs.get(job_id))
    if job is None or not await y.call(who, lambda ws: admission.visible(ws, job)):
        raise _missing(job_id)
    if str(job.status) in FINAL:
        y.changed()  # what the client reads next shows what the job did
    return job


@router.get("", response_model=Page, summary="List jobs, newest first")
async def list_jobs(
    request: Request,
    who: Who,
    limit: Limit = 50,
    cursor: Cursor = None,
    env: Annotated[str | None, Query(max_length=63)] = None,
) -> Page:
    """The jobs the caller may see (``cursor``: the id of the last job of the previous page)."""
    y = yard(request)
    jobs = await y.bounded(lambda: y.jobs.list(env=env, limit=limit + 1, before=cursor))
    more = len(jobs) > limit
    jobs = jobs[:limit]
    shown = await y.call(who, lambda ws: [j.to_json() for j in jobs if admission.visible(ws, j)])
    return Page(items=shown, next=next_link(request, jobs[-1].id) if more and jobs else None)


@router.get("/{job_id}", response_model=schemas.Job, summary="Show a job and its result")
async def get_job(request: Request, who: Who, job_id: str) -> dict[str, Any]:
    """The job, with its result (the CLI's JSON of the operation) once it ended."""
    job = await _job(yard(request), who, job_id)
    out: dict[str, Any] = job.to_json()
    return out


@router.post("/{job_id}/cancel", response_model=schemas.Job, summary="Cancel a queued job")
async def cancel_job(request: Request, who: Who, job_id: str) -> dict[str, Any]:
    """Cancel a job that has not started (409 once it runs)."""
    y = yard(request)
    job = await _job(y, who, job_id)
    await y.call(who, lambda ws: admission.check_cancel(ws, job))
    done = await y.bounded(lambda: y.jobs.cancel(job_id, actor=who.user))
    out: dict[str, Any] = done.to_json()
    return out


@router.get(
    "/{job_id}/events",
    summary="Follow a job's events (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: one `progress` event per job event (its `id` "
            "is the event's seq, for `Last-Event-ID`), then one `end` event with the job.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def job_events(
    request: Request,
    who: Who,
    job_id: str,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int, Query(ge=0, description="Resume after this event seq.")] = 0,
) -> StreamingResponse:
    """The job's events as they happen; the stream ends when the job has ended."""
    y = yard(request)
    await _job(y, who, job_id)
    start = after
    if last_event_id and last_event_id.strip().isdigit():
        start = max(start, int(last_event_id.strip()))
    return StreamingResponse(
        _stream(y, job_id, start),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )


async def _stream(y: Yard, job_id: str, after: int) -> AsyncIterator[str]:
    last = after
    beat = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        job = await run_in_threadpool(y.jobs.get, job_id)
        events = await run_in_threadpool(y.jobs.events, job_id, after=last)
        for e in events:
            last = e.seq
            yield f"id: {e.seq}\nevent: progress\ndata: {json.dumps(e.to_json())}\n\n"
        if job is None or (str(job.status) in FINAL and not events):
            y.changed()
            data = job.to_json() if job is not None else {"id": job_id, "status": "unknown"}
            yield f"event: end\ndata: {json.dumps(data)}\n\n"
            return
        if events:
            beat = time.monotonic()
        elif time.monotonic() - beat > y.config.heartbeat_s:
            beat = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(0 if events else y.config.poll_s)
