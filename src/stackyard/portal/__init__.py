"""The portal: server-rendered pages over the service layer, served by ``stackyard server``
at ``/`` beside the API (``mount(app)``). See docs/portal.md."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from stackyard.api.context import Yard

__all__ = ["STATIC", "mount"]

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Add the portal's pages and static files to the API ``app`` (its ``app.state.yard``)."""
    from stackyard.portal import actions, pages
    from stackyard.portal.web import Portal

    yard = app.state.yard
    assert isinstance(yard, Yard)
    app.state.portal = Portal(yard)
    app.include_router(actions.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="portal-static")
