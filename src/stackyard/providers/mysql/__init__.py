"""The ``mysql`` provider: databases, users and grants on MariaDB/MySQL (PyMySQL), and a local
MariaDB server.

Every database and user is labelled in the admin database's table ``stackyard_meta.labels``
(MariaDB has no comments on users, and a label there is out of reach of the workloads'
users); grants, which are not objects, are read from ``mysql.db``. Identifiers are quoted with
backticks (doubled inside), values are bound parameters, and PyMySQL's exceptions become
``ProviderError`` at one boundary (``connection.provider_errors``).
"""

from __future__ import annotations

import atexit

from stackyard import __version__
from stackyard.providers.api import Provider
from stackyard.providers.mysql.connection import Connections, native_hash, provider_errors
from stackyard.providers.mysql.database import DatabaseConfig, DatabaseKind
from stackyard.providers.mysql.grant import GrantConfig, GrantKind
from stackyard.providers.mysql.server import MysqlServer, MysqlServerConfig
from stackyard.providers.mysql.user import PASSWORD_DRIFTED, UserConfig, UserKind

__all__ = [
    "PASSWORD_DRIFTED",
    "PROVIDER",
    "Connections",
    "DatabaseConfig",
    "DatabaseKind",
    "GrantConfig",
    "GrantKind",
    "MysqlServer",
    "MysqlServerConfig",
    "UserConfig",
    "UserKind",
    "make_provider",
    "native_hash",
    "provider_errors",
]


def make_provider(connections: Connections | None = None) -> Provider:
    """A mysql provider whose kinds share one connection pool."""
    conns = connections if connections is not None else Connections()
    return Provider(
        name="mysql",
        version=__version__,
        kinds=(UserKind(conns), DatabaseKind(conns), GrantKind(conns), MysqlServer()),
        description="MariaDB/MySQL users, databases and grants (PyMySQL); a local MariaDB server.",
        parallelism=10,
    )


_CONNECTIONS = Connections()
atexit.register(_CONNECTIONS.close)

#: The entry point ``stackyard.providers: mysql``.
PROVIDER = make_provider(_CONNECTIONS)
