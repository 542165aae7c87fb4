"""The component catalog: list, show, versions and verify the published builds of the
server's registry (``stackyard component list|show|verify``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from stackyard.api.routing import Cursor, Limit, Who, page, yard
from stackyard.api.schemas import Document, Page

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

router = APIRouter(prefix="/api/v1/components", tags=["components"])

Name = Annotated[str, Path(max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
Version = Annotated[str, Path(max_length=64)]


@router.get("", response_model=Page, summary="List published components")
async def list_components(
    request: Request, who: Who, limit: Limit = 50, cursor: Cursor = None
) -> Page:
    """Name, latest version, owner, lifecycle, type and SLA of each published component."""
    from stackyard.components.catalog import entries

    rows = await yard(request).call(who, lambda ws: [e.to_json() for e in entries(ws.registry)])
    return page(request, rows, limit, cursor)


@router.get("/{name}", response_model=Document, summary="Show a component")
async def show_component(
    request: Request,
    who: Who,
    name: Name,
    version: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """README, inputs, outputs, versions, attestation status and cost (latest by default)."""
    from stackyard.components.catalog import details
    from stackyard.components.keys import Keyring

    def run(ws: Workspace) -> dict[str, Any]:
        return details(ws.registry, Keyring(ws.settings.home), name, version)

    out: dict[str, Any] = await yard(request).call(who, run)
    return out


@router.get("/{name}/versions", response_model=Document, summary="A component's versions")
async def component_versions(request: Request, who: Who, name: Name) -> dict[str, Any]:
    """The published version tags, lowest first."""
    from stackyard.components.catalog import versions

    found = await yard(request).call(who, lambda ws: versions(ws.registry, name))
    return {"name": name, "versions": found}


@router.post("/{name}/{version}/verify", response_model=Document, summary="Verify a build")
async def verify_component(
    request: Request, who: Who, name: Name, version: Version
) -> dict[str, Any]:
    """Check the build's signed attestation against the server's trusted keys."""
    from stackyard.components.catalog import verify
    from stackyard.components.keys import Keyring

    def run(ws: Workspace) -> dict[str, Any]:
        statement = verify(ws.registry, Keyring(ws.settings.home), name, version, fresh=True)
        return {
            "name": name,
            "version": version,
            "digest": statement.subject_digest,
            "verified": True,
            "stages": [s.name for s in statement.stages],
        }

    out: dict[str, Any] = await yard(request).call(who, run)
    return out


# ``GET /api/v1/catalog/adoption`` lives beside the component routes it reads the same catalog
# as; its own router has the ``/api/v1/catalog`` prefix, and its routes join ``router`` (whose
# routes the app includes as they are) so the app's list of routers stays one per module.
catalog = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])


@catalog.get("/adoption", response_model=Document, summary="Adoption of component versions")
async def adoption(
    request: Request,
    who: Who,
    name: Annotated[str | None, Query(max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")] = None,
) -> dict[str, Any]:
    """For each component version (of ``name``, or every component): the environments and
    workloads that run it, whether it is behind the latest compatible or latest major
    version, and the deprecated versions still in use with their owners
    (``stackyard catalog adoption``)."""
    from stackyard.environments.adoption import adoption as report
    from stackyard.ops.slo import flag_adoption

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: flag_adoption(ws, report(ws, name).to_json())
    )
    return out


router.routes.extend(catalog.routes)
