"""Fixtures of the portal tests: a real server (the API tests' ``_apisupport``) on a home with
the lite platform, users with roles, and helpers to read a page's CSRF token."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))

from _apisupport import ADMIN, Live, prepare, serving, teardown

#: An environment owner (creates, deploys, destroys), a viewer, an approver (org-wide grants).
USERS = {"dev-dana": "environment-owner", "view-vic": "viewer", "appr-alex": "approver"}


@pytest.fixture(scope="session")
def portal_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with only ``local-volume`` published (all the lite platform binds)."""
    from unittest import mock

    import stackyard.service as service
    from stackyard.settings import Settings

    home = tmp_path_factory.mktemp("portal-home") / "home"
    settings = Settings.load(home=home, actor="server-os-user", environ={})
    with mock.patch.object(service.library, "names", lambda: ["local-volume"]):
        service.init_home(settings)
    return home


def grant(live: Live, user: str, role: str) -> None:
    import dataclasses

    from stackyard.environments import grants
    from stackyard.environments.workspace import Workspace

    with Workspace.open(dataclasses.replace(live.settings, actor=ADMIN)) as ws:
        grants.grant(ws, grants.parse(role, user=user, team=None, env=None, env_type=None))


@pytest.fixture(scope="module")
def site(portal_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server with an in-process worker, shared by a module's tests; its users granted."""
    import os
    import secrets

    from stackyard.api.context import ApiConfig

    env = f"p{secrets.token_hex(5)}"
    home = tmp_path_factory.mktemp("portal") / "home"
    saved = os.environ.pop("STACKYARD_DATABASE_URL", None)
    settings = prepare(home, portal_template, env)
    try:
        with serving(settings, worker=True, config=ApiConfig(auth_failures=10_000)) as (
            url,
            logs,
        ):
            live = Live(url, home, settings, env, logs)
            for user, role in USERS.items():
                grant(live, user, role)
            yield live
    finally:
        teardown(settings)
        if saved is not None:
            os.environ["STACKYARD_DATABASE_URL"] = saved


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test's screenshots go."""
    out = tmp_path / "artifacts"
    out.mkdir()
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's headless Chromium driven by Playwright, shared by a module's tests."""
    from _browsing import launch

    yield from launch()
