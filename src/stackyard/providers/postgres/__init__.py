"""The ``postgres`` provider: roles, databases, extensions and grants over libpq (psycopg 3).

Every object is labelled ``COMMENT ... IS 'stackyard:<installation>:<env>:<address>'``
(grants, which are not objects, excepted), every identifier is quoted with ``psycopg.sql``, and
psycopg's exceptions become ``ProviderError`` at one boundary (``connection.provider_errors``).
"""

from __future__ import annotations

import atexit

from stackyard.providers.api import Provider
from stackyard.providers.postgres.connection import Connections, provider_errors
from stackyard.providers.postgres.database import DatabaseConfig, DatabaseKind
from stackyard.providers.postgres.extension import ExtensionConfig, ExtensionKind
from stackyard.providers.postgres.grant import GrantConfig, GrantKind
from stackyard.providers.postgres.role import PASSWORD_DRIFTED, RoleConfig, RoleKind

__all__ = [
    "PASSWORD_DRIFTED",
    "PROVIDER",
    "Connections",
    "DatabaseConfig",
    "DatabaseKind",
    "ExtensionConfig",
    "ExtensionKind",
    "GrantConfig",
    "GrantKind",
    "RoleConfig",
    "RoleKind",
    "make_provider",
    "provider_errors",
]

VERSION = "0.1.0"


def make_provider(connections: Connections | None = None) -> Provider:
    """A postgres provider whose kinds share one connection pool."""
    conns = connections if connections is not None else Connections()
    return Provider(
        name="postgres",
        version=VERSION,
        kinds=(RoleKind(conns), DatabaseKind(conns), ExtensionKind(conns), GrantKind(conns)),
        description="PostgreSQL roles, databases, extensions and grants (psycopg 3).",
        parallelism=10,
    )


_CONNECTIONS = Connections()
atexit.register(_CONNECTIONS.close)

#: The entry point ``stackyard.providers: postgres``.
PROVIDER = make_provider(_CONNECTIONS)
