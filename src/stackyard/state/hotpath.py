"""The journal's hot path in plain SQL on the driver connection.

``begin`` and ``commit`` run once per resource change, so their cost bounds apply
throughput. Going through SQLAlchemy's statement machinery cost more CPU than the database
spent executing them; these few statements are written once per dialect and executed on
the DBAPI cursor of the same connection, inside the same (group-committed) transaction.
Reads and everything else still go through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine

from stackyard.state import locks
from stackyard.state.api import Lease, LockInfo

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
            # the store's clock comes with the row: leases run out by it (``locks.clock``)
            "fence": (
                "SELECT lock_id, token, expires_at, extract(epoch FROM clock_timestamp()) "
                "FROM locks WHERE env = :env FOR SHARE"
                if self.pg
                else "SELECT lock_id, token, expires_at FROM locks WHERE env = :env"
            ),
            "add_intent": _insert("intents", _INTENT_COLUMNS, self.pg),
            "delete_intent": "DELETE FROM intents WHERE env = :env AND id = :id",
            "bump": "INSERT INTO environments_state (env, lineage, serial, created_at) "
            "VALUES (:env, :lineage, 1, :created_at) ON CONFLICT (env) DO UPDATE "
            "SET serial = environments_state.serial + 1 RETURNING serial",
            "put_resource": _insert("resources", _RESOURCE_COLUMNS, self.pg)
            + f" ON CONFLICT (env, address) DO UPDATE SET {update}",
            "delete_resource": "DELETE FROM resources WHERE env = :env AND address = :address",
            "resource_rows": "SELECT address, kind, physical_name, physical_id, config, outputs, "
            "secret_blob, depends_on, uid, component, deletion, serial FROM resources WHERE env = :env",
            "lock_info": "SELECT lock_id, holder, token, acquired_at, expires_at FROM locks "
            "WHERE env = :env",
        }
        # sqlite3 takes :name; psycopg takes %(name)s (and needs literal % doubled: there are none).
        self.sql = {
            k: re.sub(r"(?<!:):(\w+)", r"%(\1)s", v) if self.pg else v for k, v in sql.items()
        }

    def fence(self, txn: RawTxn, lease: Lease) -> None:
        """``locks.check_fence`` on the raw cursor, sharing its per-transaction cache."""
        checked = txn.info.get(locks.FENCED)
        key = (lease.env, lease.lock_id, lease.token)
        if checked is not None and key in checked:
            return
        cur = txn.cursor()
        cur.execute(self.sql["fence"], {"env": lease.env})
        row = cur.fetchone()
        if row is None or (row[0], int(row[1])) != (lease.lock_id, lease.token):
            cur.execute(self.sql["lock_info"], {"env": lease.env})
            held = cur.fetchone()
            raise locks.lost_error(lease, LockInfo(lease.env, *held) if held else None)
        now = float(row[3]) if self.pg else time.time()
        if row[2] <= now:
            raise locks.expired_error(lease, row[2])
        if checked is not None:
            checked.add(key)

    def resource_rows(self, conn: Connection, env: str) -> list[tuple[Any, ...]]:
        """Every resource row of ``env`` (``snapshot``'s columns, JSON decoded), read on the
        driver cursor of ``conn``'s open transaction: ten times cheaper than typed rows."""
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cur.execute(self.sql["resource_rows"], {"env": env})
        rows = cur.fetchall()
        if self.pg:  # psycopg decodes JSONB itself
            return [tuple(r) for r in rows]
        loads = json.loads
        return [
            (a, k, pn, pid, loads(c), loads(o), b, loads(d), u, cp, dl, sr)
            for (a, k, pn, pid, c, o, b, d, u, cp, dl, sr) in rows
        ]

    def add_intent(self, txn: RawTxn, params: Mapping[str, Any]) -> None:
        """Insert one intent row."""
        txn.cursor().execute(self.sql["add_intent"], _encode(params))

    def delete_intent(self, txn: RawTxn, env: str, intent_id: str) -> None:
        """Delete one intent row."""
        txn.cursor().execute(self.sql["delete_intent"], {"env": env, "id": intent_id})

    def bump(self, txn: RawTxn, env: str, lineage: str) -> int:
        """Move the environment's serial forward by one (creating its row); returns it."""
        cur = txn.cursor()
        cur.execute(self.sql["bump"], {"env": env, "lineage": lineage, "created_at": time.time()})
        return int(cur.fetchone()[0])

    def put_resource(self, txn: RawTxn, params: Mapping[str, Any]) -> None:
        """Insert or replace one resource row."""
        txn.cursor().execute(self.sql["put_resource"], _encode(params))

    def delete_resource(self, txn: RawTxn, env: str, address: str) -> None:
        """Delete one resource row."""
        txn.cursor().execute(self.sql["delete_resource"], {"env": env, "address": address})


def _encode(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v) if k in _JSON else v) for k, v in params.items()}


class RawTxn:
    """One open transaction on the dedicated writer connection."""

    def __init__(self, dbapi_conn: Any) -> None:
        self._conn = dbapi_conn
        self.info: dict[str, Any] = {}

    def cursor(self) -> Any:
        """A DB-API cursor in this transaction."""
        return self._conn.cursor()


class RawWriter:
    """A dedicated driver connection for group-committed journal writes.

    Borrowed from the store's pool once and kept: opening a transaction through SQLAlchemy
    for every small write cost about a millisecond of CPU, ten times what SQLite spends.
    A broken connection is invalidated and replaced on the next use.
    """

    def __init__(self, engine: Engine, *, pg: bool) -> None:
        self._engine = engine
        self._pg = pg
        self._proxy: Any = None
        self._mutex = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[RawTxn]:
        """Open a write transaction (``BEGIN IMMEDIATE`` on SQLite) and commit it at the end."""
        with self._mutex:
            if self._proxy is None:
                self._proxy = self._engine.raw_connection()
            conn = self._proxy.driver_connection
            try:
                if not self._pg:
                    conn.execute("BEGIN IMMEDIATE")
                yield RawTxn(conn)
                conn.commit() if self._pg else conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise

    def _rollback(self, conn: Any) -> None:
        try:
            conn.rollback() if self._pg else conn.execute("ROLLBACK")
        except Exception:  # the connection is gone: drop it, a new one comes next time
            proxy, self._proxy = self._proxy, None
            with contextlib.suppress(Exception):
                proxy.invalidate()

    def close(self) -> None:
        """Give the connection back to the pool."""
        with self._mutex:
            proxy, self._proxy = self._proxy, None
            if proxy is not None:
                with contextlib.suppress(Exception):
                    proxy.close()
