"""SqlStateStore: the state store on SQLAlchemy Core, one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool

from stackyard.errors import StateError, StoreUnavailableError
from stackyard.state import locks
from stackyard.state import migrations as _migrations
from stackyard.state.api import Intent, Lease, LockInfo, ResourceRecord, Snapshot
from stackyard.state.compiled import SHARED as SHARED_COMPILED
from stackyard.state.groupcommit import GroupCommit
from stackyard.state.hotpath import HotPath, RawTxn, RawWriter
from stackyard.state.secrets import SecretBox
from stackyard.state.tables import (
    applied_plans,
    environments,
    environments_state,
    insert_for,
    installation,
    intents,
    resources,
)

__all__ = ["SqlStateStore"]

#: How long a SQLite writer waits for another writer before failing (``database is locked``).
SQLITE_BUSY_TIMEOUT_S = 5.0
_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")
#: How far behind the newest recorded time a SQLite store's (the machine's) clock may run.
CLOCK_TOLERANCE_S = 300.0
_CHUNK = 500  # bound on bound parameters per statement (SQLite's limit is far higher)

#: A PostgreSQL read's own transaction (its first round trip; see ``_begin_read``).
_PG_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
#: Tries to begin a PostgreSQL read, or to ping a write's connection, on a live connection.
_PG_READ_ATTEMPTS = 2
#: Pooled PostgreSQL connections older than this are replaced (idle links cut by a firewall).
_PG_RECYCLE_S = 600

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_NO_SECRETS: Mapping[str, Any] = MappingProxyType({})


class _Statements:
    """Statements used off the hot path, built once per store (the journal's per-resource
    writes are plain SQL in ``hotpath.py``)."""

    def __init__(self, dialect: str) -> None:
        insert = insert_for(dialect)  # imports that dialect's module only
        env = insert(environments_state)
        self.ensure_env = env.on_conflict_do_nothing()
        self.bump = env.on_conflict_do_update(
            index_elements=[environments_state.c.env],
            set_={"serial": environments_state.c.serial + 1},
        ).returning(environments_state.c.serial)
        self.mark_applied = insert(applied_plans).on_conflict_do_nothing()


class SqlStateStore:
    """The ``StateStore`` on SQLite (the default) or PostgreSQL.

    Every method is one short transaction on a pooled connection, so one store may be used
    from many threads. Opening the store checks the schema revision (one query) and migrates
    only a new or older store, telling ``notify`` when it upgrades one. Any failure to reach the
    database raises ``StoreUnavailableError`` (operations fail closed), with the URL's password
    masked.

    ``sqlite_synchronous`` is SQLite's ``PRAGMA synchronous``: ``FULL`` (the default) makes
    every commit durable against power loss, ``NORMAL`` only against process crashes.
    """

    def __init__(
        self,
        url: str,
        box: SecretBox,
        *,
        pool_size: int = 10,
        sqlite_synchronous: str = "FULL",
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self._box = box
        self._installation: str | None = None
        parsed = _parse_url(url)
        self._masked = parsed.render_as_string(hide_password=True)
        self._engine = self._create_engine(parsed, pool_size, sqlite_synchronous.upper())
        self._pg = self._engine.dialect.name == "postgresql"
        self._sql = _Statements(self._engine.dialect.name)
        self._writer_mutex: AbstractContextManager[Any] = (
            nullcontext() if self._pg else _WriterLock(parsed.database or "")
        )
        self._hot = HotPath(self._engine.dialect.name)
        self._raw = RawWriter(self._engine, pg=self._pg)
        self._group = GroupCommit(self._raw_transaction, self._raw_guard)
        self._local = threading.local()  # the thread's read session
        try:
            with self._guard():
                _migrations.upgrade(self._engine, notify=notify)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return self._masked

    # -- reads -------------------------------------------------------------------------------

    def snapshot(self, env: str) -> Snapshot:
        """The environment's state in one consistent read.

        The environment's row (its lineage) is created on the first snapshot or the first
        committed change, whichever comes first, so a plan made against empty state and the
        apply that follows see the same lineage. The serial never resets.
        """
        with self._read() as conn:
            head = conn.execute(
                sa.select(environments_state.c.lineage, environments_state.c.serial).where(
                    environments_state.c.env == env
                )
            ).one_or_none()
            rows = self._hot.resource_rows(conn, env) if head is not None else []
        if head is None:
            with self._write() as conn:
                self._ensure_env(conn, env)
            return self.snapshot(env)
        return Snapshot(
            env=env,
            lineage=head.lineage,
            serial=head.serial,
            resources=self._records(rows),
        )

    def lock_info(self, env: str) -> LockInfo | None:
        """The current lock, if any (expired or not)."""
        with self._read() as conn:
            return locks.lock_info(conn, env)

    def intents(self, env: str) -> Sequence[Intent]:
        """Pending intents, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(intents)
                .where(intents.c.env == env)
                .order_by(intents.c.created_at, intents.c.id)
            ).all()
        return [self._intent(row) for row in rows]

    def installation_id(self) -> str:
        """This store's installation id (made once by migration 0004; read once, then cached)."""
        if self._installation is None:
            with self._read() as conn:
                found = conn.execute(sa.select(installation.c.id)).scalar_one_or_none()
            if not found:
                raise StateError(
                    f"The state store {self._masked} has no installation id",
                    hint="Its 'installation' row was removed; restore it from a backup. A new "
                    "id would disown every object this installation made.",
                )
            self._installation = str(found)
        return self._installation

    def was_applied(self, env: str, plan_id: str) -> bool:
        """True when ``plan_id`` has been applied to ``env``."""
        with self._read() as conn:
            found = conn.execute(
                sa.select(applied_plans.c.plan_id).where(
                    applied_plans.c.env == env, applied_plans.c.plan_id == plan_id
                )
            ).first()
        return found is not None

    def environments(self) -> Sequence[str]:
        """Environments with committed changes or pending intents, sorted."""
        query = sa.union(
            sa.select(environments_state.c.env).where(environments_state.c.serial > 0),
            sa.select(intents.c.env),
        )
        with self._read() as conn:
            return sorted(conn.execute(query).scalars())

    def now(self) -> float:
        """The store's clock in epoch seconds: TTLs, expiry and reaper claims are measured by it.

        On PostgreSQL it is the server's ``clock_timestamp()``, so every client agrees on the
        time whatever its own clock says. A SQLite store is a file on this machine, so the
        machine's clock is the store's clock; it is checked against the newest time the store
        has recorded, and a clock running more than ``CLOCK_TOLERANCE_S`` behind that is
        refused (``StateError``) rather than trusted: it would make fresh environments look
        expired. A clock running ahead cannot be told apart from time passing.
        """
        if self._pg:
            with self._read() as conn:
                now = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())"))
                return float(now.scalar_one())
        clock = time.time()
        with self._read() as conn:
            newest = max(
                (
                    conn.execute(sa.select(sa.func.max(column))).scalar_one() or 0.0
                    for column in (
                        resources.c.updated_at,
                        environments_state.c.created_at,
                        applied_plans.c.applied_at,
                        environments.c.updated_at,
                    )
                ),
                default=0.0,
            )
        if clock < newest - CLOCK_TOLERANCE_S:
            raise StateError(
                f"This machine's clock is {newest - clock:.0f} s behind the newest time recorded "
                f"in the state store {self._masked}",
                hint="Fix the system clock (NTP), or keep the state in PostgreSQL "
                "(STACKYARD_DATABASE_URL), whose server clock is used instead.",
            )
        return clock

    # -- the lock ----------------------------------------------------------------------------

    def acquire(self, env: str, *, holder: str, ttl_s: float) -> Lease:
        """Take the lock, or raise ``LockHeldError`` naming the holder without waiting."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        # Fast path: a live lease is visible to a plain read, so a second writer fails
        # without queueing behind the writer lock.
        with self._read() as conn:
            current = locks.lock_info(conn, env)
            live = current is not None and current.expires_at > locks.clock(conn)
        if live:
            assert current is not None
            raise locks.held_error(current)
        with self._write() as conn:
            return locks.acquire(conn, env, holder=holder, ttl_s=ttl_s)

    def heartbeat(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend the lease; ``LockLostError`` if it was taken over or released."""
        with self._write() as conn:
            return locks.heartbeat(conn, lease, ttl_s=ttl_s)

    def release(self, lease: Lease) -> None:
        """Release the lease (a no-op if it is no longer ours)."""
        with self._write() as conn:
            locks.release(conn, lease)

    def force_unlock(self, env: str, lock_id: str) -> None:
        """Break a lock given its id; ``StateError`` if the id does not match."""
        with self._write() as conn:
            locks.force_unlock(conn, env, lock_id)

    # -- fenced writes -----------------------------------------------------------------------

    def check_fence(self, lease: Lease) -> None:
        """``LockLostError`` unless ``lease`` is still live: one plain read, no write lock.

        Made before each provider call, so a writer that was paused past its lease does not
        reach the backend once another writer holds the lock (the state writes that follow
        are fenced in their own transactions as well).
        """
        with self._read() as conn:
            current = locks.lock_info(conn, lease.env)
            now = locks.clock(conn)
        if current is None or (current.lock_id, current.token) != (lease.lock_id, lease.token):
            raise locks.lost_error(lease, current)
        if current.expires_at <= now:
            raise locks.expired_error(lease, current.expires_at)

    def begin(self, lease: Lease, intent: Intent) -> None:
        """Durably record an intent before a provider call."""
        self._before_write()
        secret = self._seal({"config": dict(intent.secret_config)} if intent.secret_config else {})
        created = intent.created_at or datetime.now(UTC).isoformat(timespec="microseconds")
        params = {
            "id": intent.id,
            "env": lease.env,
            "op": intent.op,
            "address": intent.address,
            "kind": intent.kind,
            "physical_name": intent.physical_name,
            "config": dict(intent.config),
            "secret_blob": secret,
            "depends_on": list(intent.depends_on),
            "uid": intent.uid,
            "component": intent.component,
            "deletion": intent.deletion,
            "token": lease.token,
            "created_at": created,
        }

        def write(conn: RawTxn) -> None:
            self._hot.fence(conn, lease)
            self._hot.add_intent(conn, params)

        self._group.run(write)

    def commit(
        self, lease: Lease, intent_id: str, record: ResourceRecord | None, *, address: str
    ) -> int:
        """Write or delete the row, clear the intent and bump the serial, in one transaction."""
        self._before_write()
        if record is not None and record.address != address:
            raise StateError(f"commit: record address {record.address!r} is not {address!r}")
        values = self._row_values(record) if record is not None else None

        def write(conn: RawTxn) -> int:
            self._hot.fence(conn, lease)
            serial = self._hot.bump(conn, lease.env, str(uuid.uuid4()))
            if values is None:
                self._hot.delete_resource(conn, lease.env, address)
            else:
                self._hot.put_resource(conn, {**values, "env": lease.env, "serial": serial})
            self._hot.delete_intent(conn, lease.env, intent_id)
            return serial

        return self._group.run(write)

    def abandon(self, lease: Lease, intent_id: str) -> None:
        """Clear an intent whose call failed with nothing to record."""
        self._before_write()

        def write(conn: RawTxn) -> None:
            self._hot.fence(conn, lease)
            self._hot.delete_intent(conn, lease.env, intent_id)

        self._group.run(write)

    def forget(self, lease: Lease, addresses: Sequence[str]) -> int:
        """Drop rows without touching reality; bumps and returns the serial."""
        with self._write() as conn:
            locks.check_fence(conn, lease)
            serial = self._bump(conn, lease.env)
            for i in range(0, len(addresses), _CHUNK):
                conn.execute(
                    sa.delete(resources).where(
                        resources.c.env == lease.env,
                        resources.c.address.in_(list(addresses[i : i + _CHUNK])),
                    )
                )
            return serial

    def mark_applied(self, lease: Lease, plan_id: str) -> None:
        """Record that a plan was applied (idempotent)."""
        with self._write() as conn:
            locks.check_fence(conn, lease)
            conn.execute(
                self._sql.mark_applied,
                {"env": lease.env, "plan_id": plan_id, "applied_at": time.time()},
            )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release every pooled connection."""
        self._raw.close()
        self._engine.dispose()
        if isinstance(self._writer_mutex, _WriterLock):
            self._writer_mutex.close()

    def __enter__(self) -> SqlStateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def box(self) -> SecretBox:
        """The secret box sealing secret values at rest."""
        return self._box

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction for records kept beside the state (environments, releases…)."""
        with self._write() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction on one consistent snapshot."""
        with self._read() as conn:
            yield conn

    # -- internals ---------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """The one boundary translating database failures into ``StateError``s."""
        try:
            yield
        except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as err:
            raise StoreUnavailableError(
                f"The state store {self._masked} is unavailable: {_reason(err)}",
                hint="Check that the database is running and reachable; nothing was changed.",
            ) from err
        except exc.SQLAlchemyError as err:
            raise StateError(f"The state store {self._masked} failed: {_reason(err)}") from err

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite).

        SQLite has one writer at a time, and its busy handler polls rather than queues, so
        threads of one process contending for the write lock can starve past the busy
        timeout. They queue on a mutex instead; other processes still meet the busy timeout.
        """
        with self._guard():
            self._before_write()
            with self._writer_mutex, self._write_connection() as conn, conn.begin():
                yield conn

    @contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        """A pooled connection for a write; on PostgreSQL pinged first (reads are not: see
        ``_begin_read``), and replaced once when it is found dead."""
        if not self._pg:
            with self._engine.connect() as conn:
                yield conn
            return
        dbapi = self._engine.dialect.loaded_dbapi
        conn = self._engine.connect()
        try:
            for attempt in range(_PG_READ_ATTEMPTS):
                driver = conn.connection.dbapi_connection  # a new one after ``invalidate``
                assert driver is not None
                try:
                    self._engine.dialect.do_ping(driver)
                    break
                except dbapi.Error as err:
                    if attempt + 1 == _PG_READ_ATTEMPTS:
                        raise StoreUnavailableError(
                            f"The state store {self._masked} is unavailable: {_first_line(err)}",
                            hint="Check that the database is running and reachable; nothing "
                            "was changed.",
                        ) from err
                    conn.invalidate()
        except BaseException:
            conn.close()
            raise
        with conn:
            yield conn

    @contextmanager
    def _raw_transaction(self) -> Iterator[RawTxn]:
        """A write transaction on the dedicated driver connection (the journal's hot path)."""
        with self._raw_guard(), self._writer_mutex, self._raw.transaction() as txn:
            yield txn

    @contextmanager
    def _raw_guard(self) -> Iterator[None]:
        """``_guard`` for driver exceptions raised on the hot path."""
        dbapi = self._engine.dialect.loaded_dbapi
        try:
            yield
        except dbapi.OperationalError as err:
            raise StoreUnavailableError(
                f"The state store {self._masked} is unavailable: {_first_line(err)}",
                hint="Check that the database is running and reachable; nothing was changed.",
            ) from err
        except dbapi.Error as err:
            raise StateError(f"The state store {self._masked} failed: {_first_line(err)}") from err

    @contextmanager
    def read_session(self) -> Iterator[None]:
        """Reads made by this thread within the block share one read transaction: one
        connection, one ``BEGIN``/``COMMIT`` and one consistent snapshot for a request's
        several reads, instead of one transaction each.

        A write made by this thread within the block (``snapshot`` creating an environment's
        row, a settled deployment) ends the shared transaction first, so the reads after it
        see it. An error inside a read ends it too (the next read begins afresh). Nested
        sessions join the outer one; other threads are not affected.
        """
        if getattr(self._local, "session", None) is not None:
            yield
            return
        session = _ReadSession()
        self._local.session = session
        try:
            yield
        except BaseException:
            self._local.session = None
            session.depth = 0
            self._end_session(session, ok=False)  # never raises: the block's error shows
            raise
        self._local.session = None
        session.depth = 0
        with self._guard():
            self._end_session(session, ok=True)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction seeing one consistent snapshot of the database (that of the
        thread's ``read_session`` when there is one)."""
        session: _ReadSession | None = getattr(self._local, "session", None)
        if session is not None:
            with self._guard():
                if session.conn is None:
                    session.conn = self._begin_read()
                session.depth += 1
                try:
                    yield session.conn
                except BaseException:
                    session.depth -= 1
                    self._end_session(session, ok=False)
                    raise
                session.depth -= 1
                if session.stale:
                    self._end_session(session, ok=True)
            return
        with self._guard():
            conn = self._begin_read()
            try:
                yield conn
            except BaseException:
                self._end_read(conn, ok=False)
                raise
            self._end_read(conn, ok=True)

    def _begin_read(self) -> Connection:
        """A pooled connection in a read-only transaction.

        On PostgreSQL the connection is not pinged first: its own ``BEGIN ISOLATION LEVEL
        REPEATABLE READ READ ONLY`` (sent on a driver connection switched to autocommit, so
        that it is ours and not the driver's implicit one) is the first round trip, and a
        connection found dead there (the server restarted, the backend was terminated) is
        discarded and the read begins again on a new one. Connections are also recycled
        after ``_PG_RECYCLE_S``. SQLite begins a deferred ``BEGIN`` (the ``begin`` event).
        """
        if not self._pg:
            conn = self._engine.connect()
            try:
                conn.execution_options(**{_migrations.READ_ONLY: True})
                conn.begin()
            except BaseException:
                conn.close()
                raise
            return conn
        conn = self._engine.connect()
        try:
            for attempt in range(_PG_READ_ATTEMPTS):
                last = attempt + 1 == _PG_READ_ATTEMPTS
                driver = conn.connection.dbapi_connection  # a new one after ``invalidate``
                assert driver is not None
                if driver.closed or driver.broken:  # lost in an earlier use
                    if last:
                        raise StoreUnavailableError(
                            f"The state store {self._masked} is unavailable: the connection "
                            "was lost",
                            hint="Check that the database is running and reachable; nothing "
                            "was changed.",
                        )
                    conn.invalidate()
                    continue
                try:
                    driver.autocommit = True
                    conn.exec_driver_sql(_PG_BEGIN_READ)
                    return conn
                except exc.DBAPIError as err:
                    if last or not _disconnected(err):
                        raise
                    if not conn.invalidated:
                        conn.invalidate()
                    conn.rollback()  # leaves the invalidated state: the next use reconnects
            raise AssertionError("unreachable")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.invalidate()
            conn.close()
            raise

    def _end_read(self, conn: Connection, *, ok: bool) -> None:
        """Commit (``ok``) or roll back a read transaction and return its connection.

        Rolling back never raises (the caller's error is the one to see); a PostgreSQL
        connection that cannot be put back out of autocommit is discarded, never pooled.
        """
        try:
            if not self._pg:
                if ok:
                    conn.commit()
                else:
                    with contextlib.suppress(Exception):
                        conn.rollback()
                return
            if conn.invalidated:
                return
            try:
                conn.exec_driver_sql("COMMIT" if ok else "ROLLBACK")
                driver = conn.connection.dbapi_connection
                assert driver is not None
                driver.autocommit = False
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.invalidate()
                if ok:
                    raise
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _end_session(self, session: _ReadSession, *, ok: bool) -> None:
        """End the session's transaction (if one is open and no read is using it)."""
        if session.conn is None:
            return
        if session.depth > 0:
            session.stale = True  # ended when the read using it ends
            return
        conn, session.conn, session.stale = session.conn, None, False
        self._end_read(conn, ok=ok)

    def _before_write(self) -> None:
        """A write by this thread ends its read session's transaction, so later reads of the
        session see the write."""
        session: _ReadSession | None = getattr(self._local, "session", None)
        if session is not None:
            with self._guard():
                self._end_session(session, ok=True)

    def _ensure_env(self, conn: Connection, env: str) -> None:
        conn.execute(self._sql.ensure_env, self._new_env(env, serial=0))

    def _bump(self, conn: Connection, env: str) -> int:
        serial: int = conn.execute(self._sql.bump, self._new_env(env, serial=1)).scalar_one()
        return serial

    @staticmethod
    def _new_env(env: str, *, serial: int) -> dict[str, Any]:
        return {
            "env": env,
            "lineage": str(uuid.uuid4()),
            "serial": serial,
            "created_at": time.time(),
        }

    def _seal(self, secret: Mapping[str, Any]) -> str | None:
        return self._box.encrypt_json(secret) if secret else None

    def _row_values(self, record: ResourceRecord) -> dict[str, Any]:
        secret: dict[str, Any] = {}
        if record.secret_config:
            secret["config"] = dict(record.secret_config)
        if record.secret_outputs:
            secret["outputs"] = dict(record.secret_outputs)
        return {
            "address": record.address,
            "kind": record.kind,
            "physical_name": record.physical_name,
            "physical_id": record.physical_id,
            "config": dict(record.config),
            "outputs": dict(record.outputs),
            "secret_blob": self._seal(secret),
            "depends_on": list(record.depends_on),
            "uid": record.uid,
            "component": record.component,
            "deletion": record.deletion,
            "updated_at": time.time(),
        }

    def _records(self, rows: Sequence[Any]) -> dict[str, ResourceRecord]:
        """Rows (``HotPath.resource_rows``) to records; the hot loop of ``snapshot``.

        Unpacking tuples positionally is markedly cheaper than attribute access on rows.
        """
        decrypt = self._box.decrypt_json
        out: dict[str, ResourceRecord] = {}
        for (
            address,
            kind,
            physical_name,
            physical_id,
            config,
            outputs,
            blob,
            depends_on,
            uid,
            component,
            deletion,
            serial,
        ) in rows:
            secret = decrypt(blob) if blob else _NO_SECRETS
            out[address] = ResourceRecord(
                address,
                kind,
                physical_name,
                physical_id,
                config,
                outputs,
                secret.get("config", _EMPTY),
                secret.get("outputs", _EMPTY),
                tuple(depends_on),
                uid,
                component,
                deletion,
                serial,
            )
        return out

    def _intent(self, row: sa.Row[Any]) -> Intent:
        secret = self._box.decrypt_json(row.secret_blob) if row.secret_blob else {}
        return Intent(
            id=row.id,
            env=row.env,
            op=row.op,
            address=row.address,
            kind=row.kind,
            physical_name=row.physical_name,
            config=row.config,
            secret_config=secret.get("config", {}),
            depends_on=tuple(row.depends_on),
            uid=row.uid,
            component=row.component,
            deletion=row.deletion,
            created_at=row.created_at,
        )

    def _create_engine(self, url: URL, pool_size: int, synchronous: str) -> Engine:
        backend = url.get_backend_name()
        if backend == "postgresql":
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in url.query:
                connect_args["connect_timeout"] = 5
            return sa.create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_recycle=_PG_RECYCLE_S,
                connect_args=connect_args,
            )
        if backend != "sqlite":
            raise StateError(
                f"Unsupported state database {self._masked}",
                hint="Use a sqlite:/// or postgresql:// URL in STACKYARD_DATABASE_URL.",
            )
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"sqlite_synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise StateError(
                f"Unsupported SQLite database {self._masked}: the state needs a file",
                hint="Use sqlite:///<path>.",
            )
        try:
            path = Path(url.database)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Private from the start (SQLite gives its -wal and -shm files the same mode).
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as err:
            raise StoreUnavailableError(
                f"The state store {self._masked} is unavailable: cannot open "
                f"{err.filename} ({err.strerror})",
                hint="Make the directory writable, or set STACKYARD_DATABASE_URL.",
            ) from err
        engine = sa.create_engine(
            url,
            poolclass=QueuePool,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            # Every SQLite store of the process shares its compiled statements (a command
            # opens a new engine; the command server compiles them ahead: state/compiled.py).
            execution_options={"compiled_cache": SHARED_COMPILED},
        )
        _configure_sqlite(engine, synchronous)
        return engine


class _ReadSession:
    """A thread's shared read transaction (``SqlStateStore.read_session``)."""

    __slots__ = ("conn", "depth", "stale")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.depth = 0  # reads using ``conn`` now
        self.stale = False  # end the transaction when the current read ends


class _WriterLock:
    """SQLite's writers queue here, across threads *and* processes, before ``BEGIN IMMEDIATE``.

    SQLite's busy handler polls instead of queueing, so under contention one writer can lose
    every retry until the busy timeout fails it (seen with 40 CLI processes on one home).
    Threads of one store queue on a mutex; processes queue on ``flock`` of a sidecar file
    (``<db>.lock``), which the kernel hands over as soon as it is released. The busy timeout
    stays as a backstop. Writes never nest, so the lock is never taken twice by one holder.
    """

    def __init__(self, database: str) -> None:
        self._mutex = threading.Lock()
        self._path = f"{database}.lock"
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._mutex.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None  # fall back to the busy timeout alone
        except BaseException:
            self._mutex.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def close(self) -> None:
        """Close the sidecar file."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    """WAL, a busy timeout, the chosen durability, and transactions we begin ourselves.

    pysqlite's own transaction handling is switched off (``isolation_level = None``) so that
    write transactions can start with ``BEGIN IMMEDIATE``: they take the write lock up front,
    which makes read-check-write sequences (lock acquisition, fencing) atomic across processes
    and avoids deadlocking upgrades from a read lock. Reads start a deferred ``BEGIN`` and see
    one consistent WAL snapshot without blocking writers.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_migrations.READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise StateError(
            "The state database URL is not valid",
            hint="Use sqlite:///<path> or postgresql://user:password@host:port/database.",
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _disconnected(err: exc.DBAPIError) -> bool:
    """Whether ``err`` says the connection was lost (the server closed it, restarted or
    terminated the backend) rather than that the statement failed."""
    if err.connection_invalidated:
        return True
    state = getattr(err.orig, "sqlstate", None) or ""
    return state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _reason(err: exc.SQLAlchemyError) -> str:
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]
