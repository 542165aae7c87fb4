"""The REST API (FastAPI): ``create_app(settings)``; see docs/api.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from stackyard.api.context import ApiConfig
    from stackyard.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings, config: ApiConfig | None = None) -> FastAPI:
    """The API server for ``settings`` (imported here on first use: FastAPI is an extra)."""
    from stackyard.api.app import create_app as build

    return build(settings, config)
