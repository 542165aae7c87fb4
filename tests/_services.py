"""Real services for tests: the machine's PostgreSQL and Redis when reachable.

When a service is unreachable the fixture skips with a reason, unless
``STACKYARD_REQUIRE_SERVICES=1`` (set by CI), which turns that skip into a failure.
"""

from __future__ import annotations

import os
import socket

import pytest

__all__ = ["postgres_admin_url", "redis_url", "require_or_skip"]


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


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """An admin URL for a real PostgreSQL server."""
    url = os.environ.get(
        "STACKYARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    if not _reachable("127.0.0.1", 5432) and "STACKYARD_TEST_POSTGRES_URL" not in os.environ:
        require_or_skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A URL for a real Redis server with admin rights."""
    url = os.environ.get("STACKYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not _reachable("127.0.0.1", 6379) and "STACKYARD_TEST_REDIS_URL" not in os.environ:
        require_or_skip("Redis is not reachable on 127.0.0.1:6379")
    return url
