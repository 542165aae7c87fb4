"""A real MariaDB/MySQL server for tests, and a leak check for what the mysql provider labels.

Order of choice: ``STACKYARD_TEST_MYSQL_URL``; the machine's server at 127.0.0.1:3306 as
``root`` without a password when it answers; a ``mysql.local_server`` started in a temporary
home (session-scoped, removed at the end). Otherwise the fixture skips, or fails under
``STACKYARD_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from _services import require_or_skip

__all__ = ["admin_conn", "mysql_admin_url", "mysql_leaked", "mysql_sweep"]

DEFAULT_URL = "mysql://root@127.0.0.1:3306/"


def admin_conn(url: str) -> Any:
    from stackyard.providers.mysql.connection import ServerUrl

    s = ServerUrl.parse(url)
    return pymysql.connect(
        host=s.host, port=s.port, user=s.user, password=s.password, autocommit=True
    )


def _usable(url: str) -> bool:
    try:
        admin_conn(url).close()
    except pymysql.err.MySQLError:
        return False
    return True


@pytest.fixture(scope="session")
def mysql_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin URL for a real MariaDB/MySQL server."""
    if url := os.environ.get("STACKYARD_TEST_MYSQL_URL"):
        yield url
        return
    if os.environ.get("STACKYARD_TEST_EMBEDDED") != "1" and _usable(DEFAULT_URL):
        yield DEFAULT_URL
        return
    from stackyard.errors import ProviderError
    from stackyard.providers.api import CreateRequest, DeleteRequest, ResourceMeta
    from stackyard.providers.mysql import PROVIDER

    kind = PROVIDER.kind("mysql.local_server")
    home = tmp_path_factory.mktemp("embedded-mysql")
    meta = ResourceMeta("tests/embedded", kind.name, "tests", "tests-mysql-server")
    config = {"home": str(home)}
    try:
        url = str(kind.create(CreateRequest(meta, config)).outputs["admin_url"])
    except ProviderError as exc:
        require_or_skip(f"MariaDB is not reachable on 127.0.0.1:3306, and no local one: {exc}")
        return
    try:
        yield url
    finally:
        kind.delete(DeleteRequest(meta, config, {}))


def mysql_leaked(url: str, env: str) -> list[str]:
    """Users, databases and label rows of ``env`` still on the server."""
    conn = admin_conn(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT User, Host FROM mysql.user WHERE LEFT(User, %s) = %s", (len(env), env)
            )
            out = [f"mysql user {u}@{h}" for u, h in cur.fetchall()]
            cur.execute(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                (env + "%",),
            )
            out += [f"mysql database {d}" for (d,) in cur.fetchall() if d.startswith(env)]
            try:
                cur.execute(
                    "SELECT kind, name, host FROM stackyard_meta.labels WHERE label LIKE %s",
                    (f"stackyard:%:{env}:%",),
                )
                out += [f"mysql label {k} {n}@{h}" for k, n, h in cur.fetchall()]
            except pymysql.err.ProgrammingError:
                pass
    finally:
        conn.close()
    return out


def mysql_sweep(url: str, env: str) -> None:
    """Best-effort removal of what ``mysql_leaked`` finds."""
    conn = admin_conn(url)
    try:
        with conn.cursor() as cur:
            for what in mysql_leaked(url, env):
                _, kind, rest = what.split(" ", 2)
                if kind == "user":
                    user, host = rest.rsplit("@", 1)
                    cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
                elif kind == "database":
                    cur.execute("DROP DATABASE IF EXISTS `" + rest.replace("`", "``") + "`")
            # no label table: nothing was ever labelled on this server
            with contextlib.suppress(pymysql.err.ProgrammingError):
                cur.execute(
                    "DELETE FROM stackyard_meta.labels WHERE label LIKE %s",
                    (f"stackyard:%:{env}:%",),
                )
    finally:
        conn.close()
