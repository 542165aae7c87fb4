"""The journal's hot path in plain SQL on the driver connection.

``begin`` and ``commit`` run once per resource change, so their cost bounds apply
throughput. Going through SQLAlchemy's statement machinery cost more CPU than the database
spent executing them; these few statements are written once per dialect and executed on
the DBAPI cursor of the same connection, inside the same (group-committed) transaction.
Reads and everything else still go through SQLAlchemy.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from stackyard.errors import LockLostError
from stackyard.state import locks
from stackyard.state.api import Lease

_RESOURCE_COLUMNS = (
    "env",
    "address",
    "kind",
    "physical_name",
    "physical_id",
    "config",
    "outputs",
    "secret_blob",
    "depends_on",
    "uid",
    "component",
    "deletion",
    "serial",
    "updated_at",
)
_INTENT_COLUMNS = (
    "id",
    "env",
    "op",
    "address",
    "kind",
    "physical_name",
    "config",
    "secret_blob",
    "depends_on",
    "uid",
    "component",
    "deletion",
    "token",
    "created_at",
)
_JSON = frozenset({"config", "outputs", "depends_on"})


def _insert(table: str, columns: tuple[str, ...], pg: bool) -> str:
    values = ", ".join(f":{c}" + ("::jsonb" if pg and c in _JSON else "") for c in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"  # noqa: S608 - constant names


class HotPath:
    """Prepared SQL for one dialect (``sqlite`` or ``postgresql``)."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        update = ", ".join(
            f"{c} = excluded.{c}" for c in _RESOURCE_COLUMNS if c not in ("env", "address")
        )
        sql = {
            "fence": "SELECT lock_id, token, expires_at FROM locks WHERE env = :env"  # noqa: S608
            + (" FOR SHARE" if self.pg else ""),
            "add_intent": _insert("intents", _INTENT_COLUMNS, self.pg),
            "delete_intent": "DELETE FROM intents WHERE env = :env AND id = :id",
            "bump": "INSERT INTO environments_state (env, lineage, serial, created_at) "
            "VALUES (:env, :lineage, 1, :created_at) ON CONFLICT (env) DO UPDATE "
            "SET serial = environments_state.serial + 1 RETURNING serial",
            "put_resource": _insert("resources", _RESOURCE_COLUMNS, self.pg)
            + f" ON CONFLICT (env, address) DO UPDATE SET {update}",
            "delete_resource": "DELETE FROM resources WHERE env = :env AND address = :address",
        }
        # sqlite3 takes :name; psycopg takes %(name)s (and needs literal % doubled: there are none).
        self.sql = {
            k: re.sub(r"(?<!:):(\w+)", r"%(\1)s", v) if self.pg else v for k, v in sql.items()
        }

    def _cursor(self, conn: Connection) -> Any:
        return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def fence(self, conn: Connection, lease: Lease) -> None:
        """``locks.check_fence`` on the raw cursor, sharing its per-transaction cache."""
        checked = conn.info.get(locks.FENCED)
        key = (lease.env, lease.lock_id, lease.token)
        if checked is not None and key in checked:
            return
        cur = self._cursor(conn)
        cur.execute(self.sql["fence"], {"env": lease.env})
        row = cur.fetchone()
        if (
            row is None
            or (row[0], int(row[1])) != (lease.lock_id, lease.token)
            or row[2] <= time.time()
        ):
            locks.check_fence(conn, lease)  # the slow path words the error exactly
            raise LockLostError(f"Lost the lock on environment '{lease.env}'")  # pragma: no cover
        if checked is not None:
            checked.add(key)

    def add_intent(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Insert one intent row."""
        self._cursor(conn).execute(self.sql["add_intent"], _encode(params))

    def delete_intent(self, conn: Connection, env: str, intent_id: str) -> None:
        """Delete one intent row."""
        self._cursor(conn).execute(self.sql["delete_intent"], {"env": env, "id": intent_id})

    def bump(self, conn: Connection, env: str, lineage: str) -> int:
        """Move the environment's serial forward by one (creating its row); returns it."""
        cur = self._cursor(conn)
        cur.execute(self.sql["bump"], {"env": env, "lineage": lineage, "created_at": time.time()})
        return int(cur.fetchone()[0])

    def put_resource(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Insert or replace one resource row."""
        self._cursor(conn).execute(self.sql["put_resource"], _encode(params))

    def delete_resource(self, conn: Connection, env: str, address: str) -> None:
        """Delete one resource row."""
        self._cursor(conn).execute(self.sql["delete_resource"], {"env": env, "address": address})


def _encode(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v) if k in _JSON else v) for k, v in params.items()}
