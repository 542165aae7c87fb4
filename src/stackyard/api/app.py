"""The application factory: ``create_app(settings)`` builds the FastAPI app with its routers,
the problem-details error boundary and the edge (body limit, security headers, no CORS unless
configured). ``create_app_from_env`` is the factory of each process of ``stackyard server
--processes N``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from stackyard import __version__
from stackyard.api.context import ApiConfig, Yard
from stackyard.api.edge import BodyLimit, SecurityHeaders, guard_logs
from stackyard.api.problems import PROBLEM_JSON, Problem, problem, simple
from stackyard.errors import StackyardError
from stackyard.settings import Settings

log = logging.getLogger("stackyard.api")

#: How ``stackyard server --processes N`` hands its limits to its processes (``ApiConfig`` as
#: JSON; the settings come from the environment they inherit, as the parent's did).
CONFIG_ENV = "STACKYARD_API_CONFIG"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

#: Every route may answer with a problem; these are documented on all of them.
_PROBLEMS = {
    status: {
        "model": Problem,
        "description": text,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status, text in (
        (400, "Invalid input"),
        (401, "Not authenticated"),
        (403, "Not permitted, or denied by policy"),
        (404, "Not found"),
        (409, "Conflict: a stale plan, a lock, a failed verification"),
        (413, "Request too large"),
        (422, "Invalid input, with diagnostics"),
        (423, "The environment is locked"),
        (429, "Too many failed authentication attempts"),
        (502, "A backend failed"),
        (503, "Unavailable"),
        (504, "Timed out"),
    )
}


def create_app(settings: Settings, config: ApiConfig | None = None) -> FastAPI:
    """The API server for ``settings`` (the server's own home or shared store)."""
    from stackyard.api.routes import (
        components,
        day2,
        delivery,
        environments,
        governance,
        health,
        integrations,
        jobs,
        metrics,
        ops,
    )

    yard = Yard(settings, config or ApiConfig())
    guard_logs()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yard.start()
        try:
            yield
        finally:
            yard.stop()

    app = FastAPI(
        title="stackyard",
        version=__version__,
        summary="Self-service infrastructure: components, environments and Score workloads.",
        description="The REST API of stackyard: the operations of the CLI, with tokens or "
        "OIDC, RBAC, policies and audit. Long operations are jobs; follow their events at "
        "`/api/v1/jobs/{id}/events`. Errors are RFC 9457 problem details.",
        lifespan=lifespan,
        responses=_PROBLEMS,  # type: ignore[arg-type]
    )
    app.state.yard = yard
    for module in (
        health,
        governance,
        environments,
        delivery,
        components,
        jobs,
        metrics,
        integrations,
        day2,
        ops,
    ):
        app.include_router(module.router)

    @app.exception_handler(StackyardError)
    async def stackyard_error(_request: Request, exc: StackyardError) -> JSONResponse:
        status, body, headers = problem(exc)
        if status >= 500:
            log.warning("%s: %s", type(exc).__name__, exc.message if status != 500 else "")
        return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        body = simple(422, "Invalid input", "The request does not match the API's schema")
        body["diagnostics"] = [
            {
                "severity": "error",
                "summary": str(e.get("msg", "invalid")),
                "detail": "at " + ".".join(str(p) for p in e.get("loc", ())),
            }
            for e in exc.errors()[:50]
        ]
        return JSONResponse(body, status_code=422, media_type=PROBLEM_JSON)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 504: "Timed out"}.get(
            exc.status_code, "Error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else title
        return JSONResponse(
            simple(exc.status_code, title, detail, exit_code=1 if exc.status_code >= 500 else 2),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
            media_type=PROBLEM_JSON,
        )

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        # a bug: the type goes to the log (never its text, which may hold anything)
        log.error("internal error: %s", type(exc).__name__)
        return JSONResponse(
            simple(500, "Internal error", "Internal error", exit_code=1),
            status_code=500,
            media_type=PROBLEM_JSON,
        )

    if yard.config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(yard.config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.add_middleware(BodyLimit, limit=yard.config.body_limit)
    app.add_middleware(SecurityHeaders)
    if yard.config.read_cache:
        from prometheus_client import CollectorRegistry, Counter

        from stackyard.api.readcache import ReadCache

        counter = Counter(
            "stackyard_http_read_cache",
            "Reads answered by the read cache: hit, stale (the last status while it is "
            "observed again) or miss (computed).",
            ["result"],
            registry=CollectorRegistry(auto_describe=True),
        )
        app.state.read_cache_counter = counter
        app.add_middleware(
            ReadCache,
            generation=yard.generation,
            authenticator=lambda: yard.authenticator,
            status_max_age=yard.config.status_max_age_s,
            counter=counter,
        )
    metrics.instrument(app)  # outermost: times the whole request
    return app


#: The GIL's switch interval in a server process (seconds; Python's default is 0.005).
SWITCH_INTERVAL_S = 0.001


def latency_first() -> None:
    """Make a server process hand the GIL over more often: a request computed in a worker
    thread (a status observing its resources) otherwise holds the event loop off for 5 ms at
    a time, which the loop's other requests, cached answers of a few tens of microseconds,
    wait out. Called by ``stackyard server`` and each of its processes, never on import."""
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL_S)


def config_json(config: ApiConfig) -> str:
    """``config`` for ``CONFIG_ENV``."""
    return json.dumps(dataclasses.asdict(config))


def create_app_from_env() -> FastAPI:
    """The app of one process of ``stackyard server --processes N`` (uvicorn's factory): the
    settings of the environment, the limits of ``CONFIG_ENV``, the server's log format."""
    raw = json.loads(os.environ.get(CONFIG_ENV) or "{}")
    fields = {f.name for f in dataclasses.fields(ApiConfig)}
    values = {k: v for k, v in raw.items() if k in fields}
    if "cors_origins" in values:
        values["cors_origins"] = tuple(values["cors_origins"])
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    latency_first()
    return create_app(Settings.load(), ApiConfig(**values))
