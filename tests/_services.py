"""Real services for tests: the machine's PostgreSQL and Redis, or embedded ones.

Order of choice for each service:

1. ``STACKYARD_TEST_POSTGRES_URL`` / ``STACKYARD_TEST_REDIS_URL`` when set;
2. the machine's server on its default port (5432 / 6379) when reachable;
3. an embedded server started by the ``local`` provider in a temporary home (session-scoped,
   stopped and removed at the end of the session). ``STACKYARD_TEST_EMBEDDED=1`` skips
   straight to this step.

Only when none of these works does the fixture skip with a reason, unless
``STACKYARD_REQUIRE_SERVICES=1`` (set by CI), which turns that skip into a failure.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["pg_databases", "postgres_admin_url", "redis_url", "require_or_skip"]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_or_skip(reason: str) -> None:
    """Skip, or fail when CI requires every service."""
    if os.environ.get("STACKYARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


def _embedded(kind_name: str, home: Path) -> tuple[str, Any, Any]:
    """Start an embedded server of ``kind_name`` in ``home``; returns (admin_url, kind, meta).

    Raises ``ProviderError`` when the machine has no usable server binary.
    """
    from stackyard.providers.api import CreateRequest, ResourceMeta
    from stackyard.providers.local import PROVIDER

    kind = PROVIDER.kind(kind_name)
    meta = ResourceMeta(
        address="tests/embedded",
        kind=kind_name,
        env="tests",
        physical_name=f"tests-{kind_name.split('.')[1].replace('_', '-')}",
    )
    applied = kind.create(CreateRequest(meta=meta, config={"home": str(home)}))
    return str(applied.outputs["admin_url"]), kind, meta


def _service(
    kind_name: str,
    what: str,
    env_var: str,
    default_url: str,
    port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    embedded_only = os.environ.get("STACKYARD_TEST_EMBEDDED") == "1"
    if env_var in os.environ and not embedded_only:
        yield os.environ[env_var]
        return
    if _reachable("127.0.0.1", port) and not embedded_only:
        yield default_url
        return
    from stackyard.errors import ProviderError
    from stackyard.providers.api import DeleteRequest

    home = tmp_path_factory.mktemp(f"embedded-{what.lower()}")
    try:
        url, kind, meta = _embedded(kind_name, home)
    except ProviderError as exc:
        require_or_skip(f"{what} is not reachable on 127.0.0.1:{port}, and no embedded one: {exc}")
        return
    try:
        yield url
    finally:
        kind.delete(DeleteRequest(meta=meta, config={"home": str(home)}, outputs={}))


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin URL for a real PostgreSQL server."""
    yield from _service(
        "local.postgres_server",
        "PostgreSQL",
        "STACKYARD_TEST_POSTGRES_URL",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        5432,
        tmp_path_factory,
    )


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL for a real Redis server with admin rights."""
    yield from _service(
        "local.redis_server",
        "Redis",
        "STACKYARD_TEST_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        6379,
        tmp_path_factory,
    )


@pytest.fixture(scope="session")
def pg_databases(postgres_admin_url: str) -> Iterator[Callable[[], str]]:
    """A factory of throw-away PostgreSQL databases, all dropped at the end of the session."""
    import secrets

    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(postgres_admin_url).set(drivername="postgresql")
    admin_dsn = admin.render_as_string(hide_password=False)
    created: list[str] = []

    def create() -> str:
        name = f"stackyard_test_{secrets.token_hex(6)}"
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return admin.set(database=name).render_as_string(hide_password=False)

    yield create
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for name in created:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
