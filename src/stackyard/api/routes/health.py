"""Health checks, the only routes that answer without a credential: ``/healthz`` (the process
answers) and ``/readyz`` (the state store and the job queue answer)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from stackyard.api.routing import yard
from stackyard.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    """Always ``ok`` while the server answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The store or the queue does not answer."}},
    summary="The store and the queue are reachable",
)
async def readyz(request: Request) -> JSONResponse:
    """``ok`` when the state store and the job queue answer; 503 naming which does not (and
    never why: the reason stays in the server's log)."""
    import logging

    y = yard(request)
    checks: dict[str, str] = {}

    def store() -> None:
        from stackyard.state import open_store

        with open_store(y.settings) as opened:
            opened.now()

    def queue() -> None:
        y.jobs.list(limit=1)

    for name, probe in (("store", store), ("queue", queue)):
        try:
            await y.bounded(probe)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; its text is logged only
            logging.getLogger("stackyard.api").warning(
                "readiness: the %s does not answer: %s", name, type(exc).__name__
            )
            checks[name] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
