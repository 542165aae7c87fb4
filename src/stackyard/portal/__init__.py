"""The portal: server-rendered pages over the service layer, served by ``stackyard server``
at ``/`` beside the API (``mount(app)``). See docs/portal.md."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from stackyard.api.context import ApiConfig, Yard
from stackyard.settings import Settings

__all__ = ["STATIC", "mount", "site", "site_from_env"]

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Add the portal's pages and static files to the API ``app`` (its ``app.state.yard``)."""
    from stackyard.portal import actions, oidc_signin, pages
    from stackyard.portal.web import Portal

    yard = app.state.yard
    assert isinstance(yard, Yard)
    app.state.portal = Portal(yard)
    app.state.oidc_signin = oidc_signin.OidcSignIn.from_settings(yard.settings)
    if app.state.oidc_signin is not None:
        _close_on_shutdown(app, app.state.oidc_signin.close)
    app.include_router(actions.router)
    app.include_router(oidc_signin.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="portal-static")


def _close_on_shutdown(app: FastAPI, close: Callable[[], None]) -> None:
    """Run ``close`` when ``app``'s lifespan ends (after the API's own)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(the_app: FastAPI) -> AsyncIterator[Any]:
        try:
            async with inner(the_app) as state:
                yield state
        finally:
            close()

    app.router.lifespan_context = lifespan


def site(settings: Settings, config: ApiConfig | None = None) -> FastAPI:
    """What ``stackyard server`` serves: the API (``stackyard.api.create_app``) with the
    portal's pages at ``/``. The API itself knows nothing of the portal (the portal sits on
    it), so the two are put together here."""
    from stackyard.api import create_app

    app = create_app(settings, config)
    mount(app)
    return app


def site_from_env() -> FastAPI:
    """``site`` for one process of ``stackyard server --processes N`` (uvicorn's factory)."""
    from stackyard.api.app import create_app_from_env

    app = create_app_from_env()
    mount(app)
    return app
