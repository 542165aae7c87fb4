"""Schema migrations: one query tells a current store apart; Alembic runs only to upgrade one.

Opening a store reads ``alembic_version`` once and compares it with ``HEAD``, the newest
revision this package ships (``REVISIONS`` is kept in step with ``versions/`` by
``tests/integration/test_store_revision.py``). A current store costs that one query and never
imports Alembic; a new store is created, and a store behind is upgraded under a lock, saying
so first; a store at a revision this package does not know was written by a newer stackyard
and is refused rather than used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, exc, text

from stackyard import __version__
from stackyard.errors import InvalidInputError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "READ_ONLY", "REVISIONS", "current", "head", "upgrade"]

#: Every revision in ``versions/``, oldest first; the last is the head.
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008")
HEAD = REVISIONS[-1]

#: Execution option marking a connection read-only: on SQLite it starts a deferred
#: transaction instead of ``BEGIN IMMEDIATE`` (see ``sql.py``).
READ_ONLY = "stackyard_read_only"

#: ``pg_advisory_xact_lock`` key serialising migrations across processes ("stackyrd").
_PG_LOCK_KEY = 0x737461636B797264
_UNDEFINED_TABLE = "42P01"  # PostgreSQL's SQLSTATE for a missing table


def head() -> str:
    """The newest revision shipped with this package."""
    return HEAD


def current(conn: Connection) -> str | None:
    """The revision the database is at (None when it has no schema yet): one query.

    On a new database the query fails for want of the table; its transaction is rolled back,
    so call this on a connection of its own.
    """
    try:
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except exc.DBAPIError as err:
        if not _no_such_table(err):
            raise
        conn.rollback()
        return None
    # Our history is linear: more than one row means a branch some other version made.
    return ",".join(sorted(found)) if found else None


def upgrade(engine: Engine, *, notify: Callable[[str], None] | None = None) -> None:
    """Bring the schema to ``HEAD``: one query when it is already there.

    A new database is migrated silently; a database behind is upgraded after ``notify`` is
    told ``upgrading the state store from X to Y``. A revision this package does not know
    (a newer stackyard's) raises ``InvalidInputError`` and changes nothing. Concurrent
    openers are serialised: on PostgreSQL by a transaction-scoped advisory lock, on SQLite by
    the ``BEGIN IMMEDIATE`` every write transaction starts with. The revision is re-read under
    the lock, so only the first opener migrates (and says so).
    """
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        found = current(conn)
    if found == HEAD:
        return
    _refuse_unknown(found)
    _migrate(engine, notify)


#: Alembic keeps its running context in module globals (``alembic.context``): two threads of
#: one process migrating two stores at once (``init`` tests the library side by side) would
#: tear each other's down. One migration at a time per process, then the database's lock.
_ALEMBIC = threading.Lock()


def _migrate(engine: Engine, notify: Callable[[str], None] | None) -> None:
    """Run Alembic under the locks (the only place it is imported)."""
    with _ALEMBIC:
        _migrate_locked(engine, notify)


def _migrate_locked(engine: Engine, notify: Callable[[str], None] | None) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        # Alembic's own read: it checks for the table first, so no failed statement aborts
        # this transaction (PostgreSQL would) before the migrations run in it.
        found = MigrationContext.configure(conn).get_current_revision()
        if found == HEAD:
            return  # another opener migrated while we waited for the lock
        _refuse_unknown(found)
        if found is not None and notify is not None:
            notify(f"upgrading the state store from {found} to {HEAD}")
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent))
    return cfg


def _refuse_unknown(found: str | None) -> None:
    if found is None or found in REVISIONS:
        return
    raise InvalidInputError(
        f"The state store is at schema revision {found}, which stackyard {__version__} does "
        f"not know (its newest is {HEAD}): a newer stackyard has upgraded it",
        hint=(
            "Run the stackyard version that upgraded this store (or a newer one), or point "
            "STACKYARD_DATABASE_URL at another store; nothing was changed."
        ),
    )


def _no_such_table(err: exc.DBAPIError) -> bool:
    orig = err.orig
    if getattr(orig, "sqlstate", None) == _UNDEFINED_TABLE:
        return True
    return "no such table" in str(orig)  # sqlite3 has no error codes for this
