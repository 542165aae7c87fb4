"""The state store's change feed: a *generation* that moves with every committed write, for
caches in front of the store (``stackyard.api.readcache``).

- **PostgreSQL**: migration 0008's statement triggers ``NOTIFY`` ``CHANNEL`` when a change to a
  watched table commits; ``PostgresGeneration`` listens on a connection of its own (psycopg
  directly: SQLAlchemy does not wrap ``LISTEN``) and counts the notifications.
- **SQLite**: ``PRAGMA data_version`` moves with every commit of any other connection.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

__all__ = ["CHANNEL", "Generation", "PostgresGeneration", "SqliteGeneration", "generation_for"]

log = logging.getLogger("stackyard.state")

#: The channel migration 0008's triggers notify.
CHANNEL = "stackyard_state"


class Generation(Protocol):
    """Where the store's generation comes from: a number that changes with every committed
    write (None while it cannot be known: nothing is then served from the cache)."""

    def current(self) -> int | None:
        """The generation now."""

    def bump(self) -> None:
        """Move the generation (a write through this process)."""

    def close(self) -> None:
        """Stop watching."""


class SqliteGeneration:
    """A SQLite store's generation: ``PRAGMA data_version`` on a read-only connection of its
    own (it changes whenever another connection commits) plus this process's own bumps."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        self._mutex = threading.Lock()
        self._local = 0

    def current(self) -> int | None:
        """The data version and this process's bumps, as one number."""
        with self._mutex:
            try:
                row = self._conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                return None
            return (int(row[0]) << 32) + self._local

    def bump(self) -> None:
        """Count a write of this process."""
        with self._mutex:
            self._local += 1

    def close(self) -> None:
        """Close the connection."""
        with self._mutex:
            self._conn.close()


class PostgresGeneration:
    """A PostgreSQL store's generation: a thread ``LISTEN``s on ``CHANNEL`` and counts the
    notifications; unknown (None) until it listens and whenever its connection is lost (it
    reconnects, backing off up to 5 s, and counts the reconnection as a change)."""

    def __init__(self, conninfo: str, *, poll_s: float = 0.5) -> None:
        self._conninfo = conninfo
        self._poll_s = poll_s
        self._value = 0
        self._live = False
        self._last_ok = 0.0  # when the connection last answered (monotonic)
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="read-cache-listen", daemon=True)
        self._thread.start()

    def current(self) -> int | None:
        """The notifications counted so far; None while not listening, and when the
        connection has not answered for ``4 × poll_s`` (a silent network failure loses
        notifications without an error)."""
        with self._mutex:
            if not self._live or time.monotonic() - self._last_ok > 4 * self._poll_s:
                return None
            return self._value

    def bump(self) -> None:
        """Count a write of this process."""
        with self._mutex:
            self._value += 1

    def wait_live(self, timeout: float) -> bool:
        """Whether it listens within ``timeout`` seconds (tests and start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.current() is not None:
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        """Stop listening (within ``poll_s``)."""
        self._stop.set()
        self._thread.join(timeout=self._poll_s + 5)

    def _set(self, *, live: bool) -> None:
        with self._mutex:
            self._live = live
            self._value += 1
            self._last_ok = time.monotonic()

    def _answered(self) -> None:
        with self._mutex:
            self._last_ok = time.monotonic()

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    # a peer gone silent fails the connection in seconds, not hours
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=2,
                    tcp_user_timeout=5000,
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._set(live=True)
                    backoff = 0.1
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=self._poll_s):
                            self.bump()
                        conn.execute("SELECT 1")  # a dead connection fails here
                        self._answered()
            except Exception as exc:  # any failure: stop serving, then listen again
                if not self._stop.is_set():
                    log.warning("the change feed was lost (%s); reconnecting", type(exc).__name__)
            self._set(live=False)
            self._stop.wait(backoff)
            backoff = min(5.0, backoff * 2)


def generation_for(database_url: str) -> Generation | None:
    """The generation source of the store at ``database_url`` (None: an unknown kind of
    store, which is then never cached)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or not Path(url.database).is_file():
            return None
        return SqliteGeneration(url.database)
    if url.get_backend_name() == "postgresql":
        from psycopg.conninfo import make_conninfo

        base = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresGeneration(make_conninfo(base, application_name="stackyard-read-cache"))
    return None
