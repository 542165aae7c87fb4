"""Releases, promotion and approvals: create, list and show releases; promote one (a job);
list what awaits approval, approve (a job) and reject."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from stackyard.api.routes.jobs import ACCEPTED, submit
from stackyard.api.routing import Cursor, Limit, Who, page, score_files, yard
from stackyard.api.schemas import (
    Deployment,
    DeployOutcome,
    Page,
    PromoteRequest,
    Release,
    ReleaseRequest,
    Verdict,
)
from stackyard.jobs import admission

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

router = APIRouter(prefix="/api/v1", tags=["delivery"])

ReleaseId = Annotated[str, Path(max_length=80, description="A release id or unique prefix.")]
DeploymentId = Annotated[str, Path(max_length=64, description="A deployment id.")]


# -- releases ----------------------------------------------------------------------------------


@router.get("/releases", response_model=Page, summary="List releases, newest first")
async def list_releases(
    request: Request, who: Who, limit: Limit = 50, cursor: Cursor = None
) -> Page:
    """Every release (``stackyard release list -o json``, paginated)."""
    from stackyard.environments import views

    rows = await yard(request).call(who, lambda ws: [r.to_json() for r in views.releases(ws)])
    return page(request, rows, limit, cursor)


@router.get("/releases/{release}", response_model=Release, summary="Show a release")
async def show_release(request: Request, who: Who, release: ReleaseId) -> dict[str, Any]:
    """A release and where it was deployed (``stackyard release show``)."""
    from stackyard.environments import views

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: views.release(ws, release).to_json()
    )
    return out


@router.post("/releases", response_model=Release, summary="Create a release")
async def create_release(request: Request, who: Who, body: ReleaseRequest) -> dict[str, Any]:
    """Pin Score files, app builds and the component lock (``stackyard release create``)."""
    from stackyard.environments import promotion

    def run(ws: Workspace) -> dict[str, Any]:
        with score_files(body.scores) as paths:
            rel, created = promotion.create_release(
                ws, paths, env=body.env, images=dict(body.images)
            )
        return {**rel.to_json(), "created": created}

    out: dict[str, Any] = await yard(request).call(who, run)
    return out


@router.post(
    "/promote",
    response_model=DeployOutcome,
    responses={**ACCEPTED, 200: {"model": DeployOutcome, "description": "The plan (plan_only)."}},
    summary="Promote a release to the next stage (a job; plan_only answers at once)",
)
async def promote(request: Request, who: Who, body: PromoteRequest) -> Any:
    """Deploy a release's pinned builds to the next stage (``stackyard promote``)."""
    from stackyard.environments import promotion

    y = yard(request)
    if body.plan_only:
        return await y.call(
            who,
            lambda ws: promotion.promote(ws, body.release, body.to, plan_only=True).to_json(),
        )

    args = {"release": body.release, "to": body.to}
    return await submit(
        request,
        who,
        "promote",
        env=body.to,
        args=args,
        precheck=lambda ws: admission.admit(ws, "promote", args),
    )


# -- approvals ---------------------------------------------------------------------------------


@router.get("/approvals", response_model=Page, summary="List deployments awaiting approval")
async def approvals(
    request: Request,
    who: Who,
    env: Annotated[str | None, Query(max_length=63)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page:
    """Parked deployments with the policies that asked for approval (``stackyard approvals``)."""
    from stackyard.environments.approvals import pending

    rows = await yard(request).call(who, lambda ws: pending(ws, env))
    return page(request, rows, limit, cursor)


@router.post(
    "/approvals/{deployment}/approve",
    status_code=202,
    responses=ACCEPTED,
    response_class=JSONResponse,
    summary="Approve a parked deployment (a job)",
)
async def approve(
    request: Request, who: Who, deployment: DeploymentId, body: Verdict | None = None
) -> JSONResponse:
    """Approve: the deployment is re-planned, re-evaluated and applied, as a job."""
    args = {"deployment": deployment, "reason": body.comment if body else ""}
    env = await yard(request).call(who, lambda ws: admission.parked_env(ws, deployment))
    return await submit(
        request,
        who,
        "approve",
        env=env,
        args=args,
        precheck=lambda ws: admission.admit(ws, "approve", args),
    )


@router.post(
    "/approvals/{deployment}/reject",
    response_model=Deployment,
    summary="Reject a parked deployment",
)
async def reject(
    request: Request, who: Who, deployment: DeploymentId, body: Verdict | None = None
) -> dict[str, Any]:
    """Reject: nothing is applied (``stackyard reject``)."""
    from stackyard.environments.approvals import reject as run

    comment = body.comment if body else ""
    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: run(ws, deployment, comment=comment).to_json()
    )
    return out


@router.get("/decisions", response_model=Page, summary="Read the decision log")
async def decisions(
    request: Request,
    who: Who,
    env: Annotated[str | None, Query(max_length=63)] = None,
    id: Annotated[str | None, Query(max_length=64, description="One decision.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page:
    """Policy evaluations with their results and policy revision, newest first."""
    from stackyard.environments import views

    start = int(cursor) if cursor and cursor.isdigit() and len(cursor) < 7 else 0
    rows = await yard(request).call(
        who, lambda ws: views.decisions(ws, env=env, limit=start + limit + 1, decision_id=id)
    )
    return page(request, rows, limit, cursor)
