"""Fixtures of the identity tests: a state store on SQLite or on the machine's PostgreSQL, and
an OIDC issuer made in the test (a key pair, a JWKS in a file and served over HTTP)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _idsupport import ADMIN, new_home
from _oidc_issuer import Issuer, JwksServer

from stackyard.environments.workspace import Workspace
from stackyard.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A new home on SQLite."""
    return new_home(tmp_path, monkeypatch, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """A new home on SQLite, then on a fresh database of the machine's PostgreSQL."""
    url = request.getfixturevalue("pg_databases")() if request.param == "postgresql" else None
    return new_home(tmp_path, monkeypatch, url)


@pytest.fixture
def open_as() -> Iterator[Callable[..., Workspace]]:
    """Open a workspace on some settings as an actor (with extra teams); closed at the end."""
    opened: list[Workspace] = []

    def open_(settings: Settings, actor: str = ADMIN, teams: tuple[str, ...] = ()) -> Workspace:
        ws = Workspace.open(dataclasses.replace(settings, actor=actor, teams=teams))
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    """An OIDC issuer: an RSA and an EC key pair made for this session."""
    return Issuer.make("https://idp.example.test/realms/acme", audience="stackyard")


@pytest.fixture
def jwks_server(issuer: Issuer) -> Iterator[JwksServer]:
    """The issuer's JWKS served over HTTP on 127.0.0.1 (a thread of this process)."""
    with JwksServer(issuer.jwks()) as server:
        yield server
