"""Environments and what happens in them: list, show, create, extend, destroy, reap; deploy,
explain, status, outputs, logs and deployments. Each route calls the function the CLI calls."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from stackyard.api.routes.jobs import ACCEPTED, submit
from stackyard.api.routing import Cursor, Limit, Who, page, score_files, yard
from stackyard.api.schemas import (
    Deployment,
    DeployOutcome,
    DeployRequest,
    Document,
    Environment,
    EnvironmentCreate,
    Extend,
    Logs,
    Page,
    ScoresRequest,
    Status,
)
from stackyard.errors import InvalidInputError
from stackyard.jobs import admission

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

router = APIRouter(prefix="/api/v1", tags=["environments"])

EnvName = Annotated[str, Path(max_length=63, description="The environment.")]
#: The most log lines one request returns.
MAX_LOG_LINES = 10_000


def _ttl(text: str | None) -> int | None:
    from stackyard.model.platform import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidInputError(f"Invalid ttl: {exc}", hint="Use forms like 30m, 4h, 2d.") from None


# -- environments ------------------------------------------------------------------------------


@router.get("/environments", response_model=Page, summary="List environments")
async def list_environments(
    request: Request, who: Who, limit: Limit = 50, cursor: Cursor = None
) -> Page:
    """Every environment (``stackyard env list -o json``, paginated)."""
    from stackyard.environments import views

    rows = await yard(request).call(who, lambda ws: views.environments(ws).to_json())
    return page(request, rows, limit, cursor)


@router.get("/environments/{env}", response_model=Environment, summary="Show an environment")
async def show_environment(request: Request, who: Who, env: EnvName) -> dict[str, Any]:
    """One environment with its children, workloads and resources (``stackyard env show``)."""
    from stackyard.environments import views

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: views.environment(ws, env).to_json()
    )
    return out


@router.post(
    "/environments",
    status_code=202,
    responses=ACCEPTED,
    response_class=JSONResponse,
    summary="Create an environment (a job)",
)
async def create_environment(request: Request, who: Who, body: EnvironmentCreate) -> JSONResponse:
    """Create an environment and deploy its type's core, as a job."""
    _ttl(body.ttl)  # an invalid ttl: 400 now, not a failed job

    args: dict[str, Any] = {
        "name": body.name,
        "type": body.type,
        "parent": body.parent,
        "ttl": body.ttl,
        "owner": body.owner,
    }
    return await submit(
        request,
        who,
        "env.create",
        env=body.name,
        args=args,
        precheck=lambda ws: admission.admit(ws, "env.create", args),
    )


@router.post(
    "/environments/{env}/extend", response_model=Environment, summary="Extend an environment"
)
async def extend_environment(
    request: Request, who: Who, env: EnvName, body: Extend
) -> dict[str, Any]:
    """Push the expiry out, within the type's maximum TTL (``stackyard env extend``)."""
    from stackyard.environments import lifecycle

    seconds = _ttl(body.ttl)
    assert seconds is not None
    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: lifecycle.extend(ws, env, ttl_s=seconds).to_json()
    )
    return out


@router.delete(
    "/environments/{env}",
    status_code=202,
    responses=ACCEPTED,
    response_class=JSONResponse,
    summary="Destroy an environment (a job)",
)
async def destroy_environment(request: Request, who: Who, env: EnvName) -> JSONResponse:
    """Stop the workloads and destroy what the environment owns, as a job."""
    args = {"name": env}
    return await submit(
        request,
        who,
        "env.destroy",
        env=env,
        args=args,
        precheck=lambda ws: admission.admit(ws, "env.destroy", args),
    )


@router.post(
    "/reap",
    status_code=202,
    responses=ACCEPTED,
    response_class=JSONResponse,
    summary="Destroy expired environments (a job)",
)
async def reap(request: Request, who: Who) -> JSONResponse:
    """Destroy every expired environment, as a job (``stackyard env reap``)."""
    return await submit(
        request, who, "reap", env=None, args={}, precheck=lambda ws: admission.admit(ws, "reap", {})
    )


# -- deploy and explain ------------------------------------------------------------------------


@router.post(
    "/environments/{env}/deploy",
    response_model=DeployOutcome,
    status_code=200,
    responses={
        **ACCEPTED,
        200: {"model": DeployOutcome, "description": "The plan (plan_only)."},
    },
    summary="Deploy Score files or a release (a job; plan_only answers at once)",
)
async def deploy(request: Request, who: Who, env: EnvName, body: DeployRequest) -> Any:
    """Deploy Score files (or a release) to ``env``: a job, or the plan at once with
    ``plan_only`` (``stackyard deploy -o json``)."""
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.promotion import deploy_release

    if bool(body.scores) == bool(body.release):
        raise InvalidInputError(
            "Give Score files or a release, not both or neither",
            hint='{"scores": {"score.yaml": "..."}} or {"release": "ID"}',
        )
    y = yard(request)
    if body.plan_only:

        def plan(ws: Workspace) -> dict[str, Any]:
            if body.release:
                return deploy_release(ws, body.release, env, plan_only=True).to_json()
            with score_files(body.scores) as paths:
                return deploy_files(ws, paths, env, plan_only=True).to_json()

        return await y.call(who, plan)

    def precheck(ws: Workspace) -> None:
        admission.admit(ws, "deploy", {"env": env})
        if body.scores:
            with score_files(body.scores) as paths:  # invalid Score files: 422 now
                from stackyard.environments.workloads import load_score

                for path in paths:
                    load_score(path)

    args: dict[str, Any] = {"env": env, "plan_only": False}
    if body.release:
        args["release"] = body.release
    else:
        args["scores"] = dict(body.scores)
    return await submit(request, who, "deploy", env=env, args=args, precheck=precheck)


@router.post("/environments/{env}/explain", response_model=Document, summary="Explain bindings")
async def explain(request: Request, who: Who, env: EnvName, body: ScoresRequest) -> dict[str, Any]:
    """Every candidate binding for each resource request, why it matched or not, the winner."""
    from stackyard.environments import inspect

    def run(ws: Workspace) -> dict[str, Any]:
        with score_files(body.scores) as paths:
            return inspect.explain(ws, paths, env)

    out: dict[str, Any] = await yard(request).call(who, run)
    return out


# -- reading an environment --------------------------------------------------------------------


@router.get("/environments/{env}/status", response_model=Status, summary="Status")
async def status(request: Request, who: Who, env: EnvName) -> dict[str, Any]:
    """Resources with observed health, workloads with readiness, last deployments."""
    from stackyard.environments import inspect

    out: dict[str, Any] = await yard(request).call(who, lambda ws: inspect.status(ws, env))
    return out


@router.get("/environments/{env}/drift", response_model=Document, summary="Drift")
async def drift(request: Request, who: Who, env: EnvName) -> dict[str, Any]:
    """Every recorded resource observed and compared with its record, grouped by root cause
    (``stackyard drift --env ENV``; ``view``). Sensitive values are masked."""
    from stackyard.environments import drift as service

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: service.scan(ws, [env]).to_json()
    )
    return out


@router.get("/environments/{env}/outputs", response_model=Document, summary="Outputs")
async def outputs(
    request: Request,
    who: Who,
    env: EnvName,
    workload: Annotated[str | None, Query(max_length=63)] = None,
    reveal: Annotated[
        bool, Query(description="Show secret values (needs outputs.reveal; audited).")
    ] = False,
) -> dict[str, Any]:
    """Resource outputs; secrets are masked unless ``reveal`` (``stackyard outputs``)."""
    from stackyard.environments import inspect

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: inspect.outputs(ws, env, workload, reveal=reveal)
    )
    return out


@router.get("/environments/{env}/logs/{workload}", response_model=Logs, summary="Logs")
async def logs(
    request: Request,
    who: Who,
    env: EnvName,
    workload: Annotated[str, Path(max_length=63)],
    container: Annotated[str | None, Query(max_length=63)] = None,
    lines: Annotated[int, Query(ge=1, le=MAX_LOG_LINES)] = 1000,
) -> Logs:
    """A workload's captured log lines (the last ``lines``)."""
    from stackyard.environments import views

    def read(ws: Workspace) -> list[str]:
        captured = views.logs(ws, env, workload, container=container, lines=lines)
        return [line.rstrip("\n") for line in itertools.islice(captured, MAX_LOG_LINES)]

    return Logs(lines=await yard(request).call(who, read))


@router.get("/environments/{env}/deployments", response_model=Page, summary="List deployments")
async def deployments(
    request: Request, who: Who, env: EnvName, limit: Limit = 50, cursor: Cursor = None
) -> Page:
    """The environment's deployments, newest first (``stackyard deployments ENV``)."""
    from stackyard.environments import views

    rows = await yard(request).call(
        who, lambda ws: [d.to_json() for d in views.deployments(ws, env)]
    )
    return page(request, rows, limit, cursor)


@router.get(
    "/environments/{env}/deployments/{deployment}",
    response_model=Deployment,
    summary="Show a deployment with its events",
)
async def deployment(
    request: Request, who: Who, env: EnvName, deployment: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    """One deployment with its plan and events (``stackyard deployments ENV ID``)."""
    from stackyard.environments import views

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: views.deployment(ws, env, deployment).to_json()
    )
    return out
