"""The ``local`` provider: an embedded cloud on this machine (directories, PostgreSQL, Redis).

Kinds: ``local.directory`` (a bucket as a directory), ``local.postgres_server`` and
``local.redis_server`` (supervised servers with their data under the stackyard home). See
``docs/adr/0001-embedded-postgres-and-redis.md`` for where the binaries come from and how a
server runs when stackyard runs as root.
"""

from __future__ import annotations

from stackyard import __version__
from stackyard.providers.api import Provider
from stackyard.providers.local.directory import Directory
from stackyard.providers.local.postgres_server import PostgresServer
from stackyard.providers.local.redis_server import RedisServer

__all__ = ["PROVIDER", "Directory", "PostgresServer", "RedisServer"]

PROVIDER = Provider(
    name="local",
    version=__version__,
    kinds=(Directory(), PostgresServer(), RedisServer()),
    description="An embedded local cloud: directory buckets, PostgreSQL and Redis servers.",
    parallelism=4,
)
