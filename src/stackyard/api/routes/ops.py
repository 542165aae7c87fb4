"""Day 2 operations over HTTP: the webhooks and their deliveries (what ``stackyard webhooks``
shows), redelivery, and a dispatch-and-deliver run now. Platform engineers and admins
(``platform.apply``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from stackyard.api.routing import Cursor, Limit, Who, page, yard
from stackyard.api.schemas import Document, Page

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

Status = Literal["pending", "delivering", "delivered", "failed"]


@router.get("/webhooks", response_model=Page, summary="List the webhooks")
async def webhooks(request: Request, who: Who, limit: Limit = 50, cursor: Cursor = None) -> Page:
    """The applied webhooks with their delivery counts and last delivery (never a secret)."""
    from stackyard.ops import webhooks as service

    rows: list[dict[str, Any]] = await yard(request).call(who, service.listing)
    return page(request, rows, limit, cursor)


@router.get("/webhooks/deliveries", response_model=Page, summary="List webhook deliveries")
async def deliveries(
    request: Request,
    who: Who,
    webhook: Annotated[
        str | None,
        Query(max_length=40, pattern=r"^[a-z][a-z0-9-]{0,39}$", description="Only its."),
    ] = None,
    status: Annotated[Status | None, Query(description="Only these.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page:
    """Deliveries, newest first (``stackyard webhooks deliveries -o json``, paginated)."""
    from stackyard.ops import webhooks as service

    rows: list[dict[str, Any]] = await yard(request).call(
        who,
        lambda ws: [
            d.to_json() for d in service.deliveries(ws, webhook=webhook, status=status, limit=1000)
        ],
    )
    return page(request, rows, limit, cursor)


@router.post(
    "/webhooks/deliveries/{delivery_id}/redeliver",
    response_model=Document,
    summary="Send a webhook delivery again",
)
async def redeliver(
    request: Request,
    who: Who,
    delivery_id: Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_-]+$")],
) -> dict[str, Any]:
    """Make a delivery pending again, with a fresh budget of attempts (audited)."""
    from stackyard.ops import webhooks as service

    out: dict[str, Any] = await yard(request).call(
        who, lambda ws: service.redeliver(ws, delivery_id).to_json(body=False)
    )
    return out


@router.post("/webhooks/deliver", response_model=Document, summary="Dispatch and deliver now")
async def deliver(request: Request, who: Who) -> dict[str, Any]:
    """Turn new platform events into deliveries and send the due ones now, as the workers'
    periodic steps do (``stackyard webhooks deliver -o json``): ``{dispatched, sent,
    deliveries}``, never a body or a secret."""
    from stackyard.ops import webhooks as service

    out: dict[str, Any] = await yard(request).call(who, service.run_now)
    return out
