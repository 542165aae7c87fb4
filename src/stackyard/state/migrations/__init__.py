"""Schema migrations (Alembic), run in code when a store opens; safe for concurrent openers."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

__all__ = ["READ_ONLY", "head", "upgrade"]

#: Execution option marking a connection read-only: on SQLite it starts a deferred
#: transaction instead of ``BEGIN IMMEDIATE`` (see ``sql.py``).
READ_ONLY = "stackyard_read_only"

#: ``pg_advisory_xact_lock`` key serialising migrations across processes ("stackyrd").
_PG_LOCK_KEY = 0x737461636B797264


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent))
    return cfg


def head() -> str | None:
    """The newest revision shipped with this package."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(conn: Connection) -> str | None:
    """The revision the database is at (None when it has no schema yet)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there.

    Concurrent openers are serialised: on PostgreSQL by a transaction-scoped advisory lock,
    on SQLite by the ``BEGIN IMMEDIATE`` every write transaction starts with. The revision is
    re-read under the lock, so only the first opener migrates.
    """
    target = head()
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        if current(conn) == target:
            return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
