"""Day 2: drift (scan, fix, history), adopt and forget, environment repair, removals, fleet
upgrades, SLOs (summaries and probes) and the Backstage export. Each route calls the function
the CLI calls; the long operations (drift fix, adopt, repair, a removal, an upgrade's apply)
are jobs."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stackyard.api.routes.jobs import ACCEPTED, submit
from stackyard.api.routing import Who, yard
from stackyard.api.schemas import Document
from stackyard.errors import InvalidInputError
from stackyard.jobs import admission

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

router = APIRouter(prefix="/api/v1", tags=["day 2"])

EnvName = Annotated[str, Path(max_length=63, description="The environment.")]
Envs = Annotated[
    list[str] | None,
    Query(description="An environment (repeatable; none: every environment you may view)."),
]
Parallelism = Annotated[int, Query(ge=1, le=64, description="Observations in flight per env.")]
#: The most environments one request names.
MAX_ENVS = 100
_CLOSED = ConfigDict(extra="forbid")


def _names(envs: list[str] | None) -> list[str] | None:
    """The named environments (duplicates dropped, order kept), or None for all of them."""
    if not envs:
        return None
    if len(envs) > MAX_ENVS or any(not e or len(e) > 63 for e in envs):
        raise InvalidInputError(
            f"Name at most {MAX_ENVS} environments of 1 to 63 characters each",
            hint="Leave the environments out to scan every one you may view.",
        )
    return list(dict.fromkeys(envs))


class DriftFix(BaseModel):
    """The environments to repair (none: every one you may view)."""

    model_config = _CLOSED
    envs: list[Annotated[str, Field(min_length=1, max_length=63)]] | None = Field(
        default=None, min_length=1, max_length=MAX_ENVS
    )
    parallelism: int = Field(default=8, ge=1, le=64)


class Adopt(BaseModel):
    """The address of a resource whose record was lost."""

    model_config = _CLOSED
    address: str = Field(min_length=1, max_length=300)


class Forget(BaseModel):
    """The addresses whose records to drop (the objects stay)."""

    model_config = _CLOSED
    addresses: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        min_length=1, max_length=500
    )


class Remove(BaseModel):
    """What to take out of the environment: a workload, or a resource no live workload uses."""

    model_config = _CLOSED
    workload: str | None = Field(default=None, min_length=1, max_length=63)
    resource: str | None = Field(default=None, min_length=1, max_length=300)


class UpgradeRequest(BaseModel):
    """A component, the version range to move it to, and where."""

    model_config = _CLOSED
    component: str = Field(min_length=1, max_length=100)
    to: str = Field(min_length=1, max_length=100, description="The version range.")
    envs: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list, max_length=MAX_ENVS
    )
    env_types: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list, max_length=MAX_ENVS
    )
    plan_only: bool = Field(default=False, description="Plan; apply nothing (synchronous).")


class Probe(BaseModel):
    """The environment to probe (none: every one you may view)."""

    model_config = _CLOSED
    env: str | None = Field(default=None, min_length=1, max_length=63)


class ExportFormat(enum.StrEnum):
    """The export formats."""

    BACKSTAGE = "backstage"


# -- drift -------------------------------------------------------------------------------------


@router.get("/drift", response_model=Document, summary="Scan for drift")
async def drift_scan(
    request: Request, who: Who, env: Envs = None, parallelism: Parallelism = 8
) -> dict[str, Any]:
    """Observe every recorded resource of the environments and report what drifted, grouped
    by root cause (``stackyard drift -o json``; ``view``). Sensitive values are masked."""
    from stackyard.environments import drift as service

    names = _names(env)
    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: service.scan(ws, names, parallelism=parallelism).to_json()
    )
    return out


@router.get("/drift/history", response_model=Document, summary="Past drift scans")
async def drift_history(
    request: Request,
    who: Who,
    env: Envs = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Scans per environment.")] = 20,
) -> dict[str, Any]:
    """Each environment's past scans, newest first (``stackyard drift --history -o json``):
    the named ones, or every live one you may view."""
    from stackyard.environments import drift as service
    from stackyard.environments.views import environments

    names = _names(env)

    def read(ws: Workspace) -> dict[str, Any]:
        wanted = names
        if wanted is None:
            wanted = [e.name for e in environments(ws).environments if e.status.is_live]
        found = {name: service.history(ws, name, limit=limit) for name in wanted}
        return {name: [s.to_json() for s in scans] for name, scans in found.items()}

    out: dict[str, Any] = await yard(request).call(who, read)
    return out


@router.post(
    "/drift/fix",
    status_code=202,
    responses=ACCEPTED,
    response_class=JSONResponse,
    summary="Repair drift through the governed road (a job)",
)
async def drift_fix(request: Request, who: Who, body: DriftFix) -> JSONResponse:
    """Scan, repair each drifted environment (plan, policies, approval, apply), scan again, as
    a job; its result is ``stackyard drift --fix -o json``."""
    from stackyard.jobs.handlers import env_of

    args: dict[str, Any] = {"envs": _names(body.envs), "parallelism": body.parallelism}
    return await submit(
        request,
        who,
        "drift.fix",
        env=env_of("drift.fix", args),
        args=args,
        precheck=lambda ws: admission.admit(ws, "drift.fix", args),
    )


# -- adopt, forget, repair ---------------------------------------------------------------------


@router.post(
    "/environments/{env}/adopt",
    status_code=202,
    responses=ACCEPTED,
    response_class=JSONResponse,
    summary="Adopt an object whose record was lost (a job)",
)
async def adopt(request: Request, who: Who, env: EnvName, body: Adopt) -> JSONResponse:
    """Record the object at the address's deterministic name when it carries this
    environment's label, as a job (``stackyard adopt -o json``; ``deploy``)."""
    args = {"env": env, "address": body.address}
    return await submit(
        request,
        who,
        "adopt",
        env=env,
        args=args,
        precheck=lambda ws: admission.admit(ws, "adopt", args),
    )


@router.post("/environments/{env}/forget", response_model=Document, summary="Forget records")
async def forget(request: Request, who: Who, env: EnvName, body: Forget) -> dict[str, Any]:
    """Drop records without touching the objects (admin only, audited;
    ``stackyard forget -o json``)."""
    from stackyard.environments import drift as service

    serial = await yard(request).call(who, lambda ws: service.forget(ws, env, body.addresses))
    return {"env": env, "forgotten": sorted(set(body.addresses)), "serial": serial}


@router.post(
    "/environments/{env}/repair",
    status_code=202,
    responses=ACCEPTED,
    response_class=JSONResponse,
    summary="Repair an environment (a job)",
)
async def repair(request: Request, who: Who, env: EnvName) -> JSONResponse:
    """Restart stopped servers and workloads and re-make what they lost, as a job
    (``stackyard env repair -o json``; ``deploy``)."""
    args = {"name": env}
    return await submit(
        request,
        who,
        "env.repair",
        env=env,
        args=args,
        precheck=lambda ws: admission.admit(ws, "env.repair", args),
    )


# -- removals ----------------------------------------------------------------------------------


@router.get(
    "/environments/{env}/remove",
    response_model=Document,
    summary="The question to confirm before a removal",
)
async def removal(
    request: Request,
    who: Who,
    env: EnvName,
    workload: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
    resource: Annotated[str | None, Query(min_length=1, max_length=300)] = None,
) -> dict[str, Any]:
    """What ``stackyard remove`` asks before it submits the removal: ``{action, env, what,
    question}`` (``view``; an unknown environment is refused here)."""
    out: dict[str, Any] = await yard(request).call(
        who,
        lambda ws: admission.removal(ws, env, workload=workload, resource=resource).to_json(),
    )
    return out


@router.post(
    "/environments/{env}/remove",
    status_code=202,
    responses=ACCEPTED,
    response_class=JSONResponse,
    summary="Remove a workload, or an unused resource (a job)",
)
async def remove(request: Request, who: Who, env: EnvName, body: Remove) -> JSONResponse:
    """Stop a workload and destroy what only it used, or destroy one resource no live
    workload uses, as a job (``stackyard remove -o json``; ``deploy``)."""
    args: dict[str, Any] = {"env": env}
    if body.workload:
        args["workload"] = body.workload
    if body.resource:
        args["resource"] = body.resource
    return await submit(
        request,
        who,
        "remove",
        env=env,
        args=args,
        precheck=lambda ws: admission.admit(ws, "remove", args),
    )


# -- upgrades ----------------------------------------------------------------------------------


@router.post(
    "/upgrade",
    response_model=Document,
    status_code=200,
    responses={**ACCEPTED, 200: {"model": Document, "description": "The campaign (plan_only)."}},
    summary="Upgrade a component across the fleet (a job; plan_only answers at once)",
)
async def upgrade(request: Request, who: Who, body: UpgradeRequest) -> Any:
    """Move every instance of a component to the newest build in a range, environment by
    environment in promotion order: a job, or the planned campaign at once with ``plan_only``
    (``stackyard upgrade -o json``, with ``exit_code``: the stopped step's, else 0)."""
    from stackyard.environments import upgrade as service

    if body.plan_only:

        def plan(ws: Workspace) -> dict[str, Any]:
            campaign = service.upgrade(
                ws,
                body.component,
                body.to,
                envs=body.envs,
                env_types=body.env_types,
                plan_only=True,
            )
            return {**campaign.to_json(), "exit_code": 0}

        return await yard(request).call(who, plan)
    args: dict[str, Any] = {
        "component": body.component,
        "to": body.to,
        "envs": list(body.envs),
        "env_types": list(body.env_types),
    }
    return await submit(
        request,
        who,
        "upgrade",
        env=None,
        args=args,
        precheck=lambda ws: admission.admit(ws, "upgrade", args),
    )


# -- SLOs --------------------------------------------------------------------------------------


@router.get("/slo", response_model=Document, summary="Service level objectives")
async def slo(
    request: Request,
    who: Who,
    env: Annotated[str | None, Query(max_length=63)] = None,
    component: Annotated[str | None, Query(max_length=100)] = None,
    window: Annotated[str, Query(max_length=20, description="12h, 7d, 30d.")] = "30d",
) -> dict[str, Any]:
    """Each workload's and component instance's availability over the window against its
    objective, with the error budget left (``stackyard slo -o json``)."""
    from stackyard.ops.slo import summaries
    from stackyard.settings import parse_ttl

    window_s = parse_ttl(window, "--window")
    found = await yard(request).call(
        who, lambda ws: summaries(ws, env=env, component=component, window_s=window_s)
    )
    return {"window": window, "window_s": window_s, "slos": [s.to_json() for s in found]}


@router.post("/slo/probe", response_model=Document, summary="Probe now")
async def slo_probe(request: Request, who: Who, body: Probe) -> dict[str, Any]:
    """Probe every workload and component instance (of ``env``, or of every environment you
    may view) and record one observation each (``stackyard slo probe -o json``)."""
    from stackyard.ops.slo import observe

    count = await yard(request).call(who, lambda ws: observe(ws, body.env))
    return {"recorded": count}


# -- the catalog's export ----------------------------------------------------------------------


@router.get("/catalog/export", response_model=Document, summary="Export the catalog")
async def catalog_export(
    request: Request,
    who: Who,
    format: Annotated[ExportFormat, Query(description="The catalog's format.")],
    env: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    """The catalog as Backstage entities (``stackyard catalog export --format backstage -o
    json``): never an output or a parameter of an instance."""
    from stackyard.integrations import backstage

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: backstage.export(ws, env=env).to_json()
    )
    return out


__all__ = ["router"]
