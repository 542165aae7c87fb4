"""PostgreSQL plumbing: the connection pool, the error boundary, names and ownership labels."""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NoReturn, TypeVar

import pydantic

from stackyard.errors import ForeignObjectError, ProviderPermanentError
from stackyard.lazy import lazy
from stackyard.providers import timeouts
from stackyard.providers.api import Labelled, NamingRule, ResourceMeta
from stackyard.providers.boundary import translate

if TYPE_CHECKING:
    import psycopg
    from psycopg import conninfo, sql
else:  # imported on first use: naming and planning never talk to the server
    psycopg = lazy("psycopg")
    conninfo = lazy("psycopg.conninfo")
    sql = lazy("psycopg.sql")

#: Physical names: lower-case letters, digits and '-'. No '_', so a physical name can never
#: start with ``pg_`` (reserved for predefined roles); '-' means SQL written by hand must
#: quote them, which stackyard always does anyway.
NAMING = NamingRule(max_length=63, allowed="a-z0-9", separator="-")
#: PostgreSQL silently truncates longer identifiers (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63
CONNECT_TIMEOUT_SECONDS = timeouts.DEFAULT_CONNECT  # STACKYARD_BACKEND_CONNECT_TIMEOUT
MAX_IDLE_PER_KEY = 4

_M = TypeVar("_M", bound=pydantic.BaseModel)
_URL_PASSWORD = re.compile(r"(?<=:)[^:@/]*(?=@)")


def url_secrets(url: str) -> list[str]:
    """The secret parts of a server URL: its password, and the URL itself."""
    out = [url]
    try:
        password = conninfo.conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    if isinstance(password, str) and password:
        out.append(password)
    out.extend(m.group(0) for m in _URL_PASSWORD.finditer(url) if m.group(0))
    return out


def _describe(exc: Exception) -> str:
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        primary = diag.message_primary or str(exc).strip()
        state = f" [{diag.sqlstate}]" if diag.sqlstate else ""
        return f"{primary}{state}"
    return str(exc)


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate or ""
    # Class 54 (program limit exceeded) and missing files (58P01/58P02, e.g. an extension that
    # is not installed) are OperationalErrors to psycopg, but retrying cannot help.
    return not (state.startswith("54") or state in {"58P01", "58P02"})


def provider_errors(address: str, *, secrets: Iterable[str] = ()) -> AbstractContextManager[None]:
    """The one boundary where psycopg exceptions become stackyard's (``boundary.translate``).

    Lost or refused connections and server-side resource and operator conditions
    (``OperationalError``, ``InterfaceError``) are transient; everything else is permanent.
    Messages are redacted of ``secrets``; when the original text held one, the cause is not
    chained either, so a traceback cannot leak it.
    """
    return translate(
        address,
        service="PostgreSQL",
        catch=psycopg.Error,
        transient=_is_transient,
        describe=_describe,
        secrets=secrets,
    )


def refuse(address: str, message: str, *, hint: str | None = None) -> NoReturn:
    """Raise the permanent error every refusal in this provider uses."""
    raise ProviderPermanentError(message, address=address, hint=hint)


def identifier_problem(name: str) -> str | None:
    """Why ``name`` cannot be a PostgreSQL identifier, or ``None`` when it can.

    Quoting (``sql.Identifier``) makes any text safe to send; these checks keep names that
    PostgreSQL would silently truncate, that libpq cannot carry (NUL), or that render
    deceptively (control and format characters such as U+202E) out of the catalogs.
    """
    if not name:
        return "is empty"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_IDENTIFIER_BYTES:
        return f"is longer than {MAX_IDENTIFIER_BYTES} bytes"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return "contains a control, format or unassigned character"
    return None


def checked_identifier(address: str, what: str, name: str) -> str:
    """``name``, or a ``ProviderPermanentError`` saying why it cannot be an identifier."""
    problem = identifier_problem(name)
    if problem:
        refuse(address, f"The {what} name {name!r} {problem}")
    return name


def resolve_name(meta: ResourceMeta, configured: str, what: str) -> str:
    """The object's name: the configured one, or the deterministic physical name."""
    return checked_identifier(meta.address, what, configured or meta.physical_name)


def ownership(
    meta: ResourceMeta, name: str, label: str | None, *, crash_window: bool = False
) -> tuple[bool, str]:
    """Whether an existing object is ours, and why not.

    Ours when it carries our label (which names this installation and environment). An
    object with no label at all is someone else's (another tool's, or a hand-made one), and
    is never adopted, changed or deleted. The one exception is a kind whose create cannot
    label atomically (``crash_window``: CREATE DATABASE, then COMMENT) when ``meta.resuming``:
    our own journal shows an interrupted create of this very name, so the unlabelled object
    at the deterministic name is the one it made.
    """
    if label == meta.label:
        return True, ""
    if label is None and crash_window and meta.resuming and name == meta.physical_name:
        return True, ""
    if label is None:
        return False, f"'{name}' exists without a stackyard label"
    return False, f"'{name}' is labelled {label!r}, not {meta.label!r}"


#: Roles and databases whose label (shared comment) starts with a prefix (``%(p)s``).
_LABELLED_ROLES = (
    "SELECT o.name, o.label FROM (SELECT rolname AS name,"
    " shobj_description(oid, 'pg_authid') AS label FROM pg_authid) o"
    " WHERE left(o.label, length(%(p)s)) = %(p)s ORDER BY 1 LIMIT %(n)s"
)
_LABELLED_DATABASES = (
    "SELECT o.name, o.label FROM (SELECT datname AS name,"
    " shobj_description(oid, 'pg_database') AS label FROM pg_database) o"
    " WHERE left(o.label, length(%(p)s)) = %(p)s ORDER BY 1 LIMIT %(n)s"
)


def labelled_names(
    conn: psycopg.Connection[Any], what: str, prefix: str, limit: int
) -> list[tuple[str, str]]:
    """``(name, label)`` of the roles (``what='role'``) or databases labelled ``prefix...``."""
    query = _LABELLED_ROLES if what == "role" else _LABELLED_DATABASES
    rows = conn.execute(query, {"p": prefix, "n": limit}).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


class ServerSwept:
    """The sweep capability shared by the kinds that live on one server (``Sweepable``):
    objects are listed once per server URL, by their label, with one catalog query.

    A kind sets ``swept`` (``role`` or ``database``) and keeps its pool in ``_conns``.
    """

    swept: ClassVar[str]
    _conns: Connections

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The server URL: objects are listed once per server."""
        return str(config.get("server", ""))

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """The objects whose label starts with ``prefix`` (one catalog query); no writes."""
        server = str(config.get("server", ""))
        with (
            provider_errors("sweep", secrets=url_secrets(server)),
            self._conns.connect(server) as conn,
        ):
            found = labelled_names(conn, self.swept, prefix, limit)
        return [Labelled(name, label, {"server": server}) for name, label in found]


def refuse_foreign(meta: ResourceMeta, what: str, name: str, why: str) -> NoReturn:
    """Refuse to touch an object another owner holds."""
    raise ForeignObjectError(
        f"The {what} '{name}' exists and is not managed by this environment ({why})",
        address=meta.address,
        hint=f"It is not this installation's {what}: remove or rename it, or choose another "
        "name. Taking over an existing object ('stackyard adopt') is not available yet.",
    )


class Connections:
    """A small thread-safe pool of autocommit connections, keyed by (server URL, database).

    Autocommit, because CREATE/DROP DATABASE cannot run in a transaction block. A connection
    that failed is discarded, never returned to the pool.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str | None], list[psycopg.Connection[Any]]] = {}

    @contextmanager
    def connect(self, url: str, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection to ``url`` (or to ``dbname`` on the same server)."""
        key = (url, dbname)
        with self._lock:
            idle = self._idle.get(key, [])
            conn = idle.pop() if idle else None
        limits = timeouts.current()
        if conn is None or conn.closed or conn.broken:
            conn = self._open(url, dbname, limits)
        ok = False
        watchdog = _Watchdog(conn, limits.client_deadline)
        try:
            yield conn
            ok = True
        except psycopg.Error:
            if watchdog.fired:
                raise psycopg.OperationalError(
                    f"the server did not answer within {limits.client_deadline:g} s, so the "
                    f"connection was dropped (limit: {timeouts.OPERATION_ENV})"
                ) from None
            raise
        finally:
            watchdog.stop()
            self._give_back(key, conn, ok and not watchdog.fired)

    def _open(
        self, url: str, dbname: str | None, limits: timeouts.Timeouts
    ) -> psycopg.Connection[Any]:
        statement_ms = int(limits.operation * 1000)
        extra: dict[str, Any] = {
            "connect_timeout": max(1, math.ceil(limits.connect)),
            "keepalives": 1,
            "keepalives_idle": timeouts.KEEPALIVE_IDLE,
            "keepalives_interval": timeouts.KEEPALIVE_INTERVAL,
            "keepalives_count": timeouts.KEEPALIVE_COUNT,
            "options": f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}",
        }
        if psycopg.pq.version() >= 120000:  # libpq 12+ knows it (older ones refuse the key)
            # Unacknowledged data for this long drops the connection (Linux; others ignore it).
            extra["tcp_user_timeout"] = statement_ms
        if dbname is not None:
            extra["dbname"] = dbname
        try:
            info = conninfo.make_conninfo(url, **extra)
        except psycopg.ProgrammingError:
            # libpq's parse errors can quote the URL, which may hold a password.
            raise psycopg.ProgrammingError("the server URL is not a valid libpq URL") from None
        return psycopg.connect(info, autocommit=True)

    def _give_back(
        self, key: tuple[str, str | None], conn: psycopg.Connection[Any], ok: bool
    ) -> None:
        healthy = ok and not conn.closed and not conn.broken
        if healthy and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            healthy = False
        if healthy:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < MAX_IDLE_PER_KEY:
                    idle.append(conn)
                    return
        conn.close()

    def evict(self, url: str, dbname: str) -> None:
        """Close idle connections to one database (before it is dropped)."""
        with self._lock:
            conns = self._idle.pop((url, dbname), [])
        for conn in conns:
            conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            groups = list(self._idle.values())
            self._idle.clear()
        for conns in groups:
            for conn in conns:
                conn.close()


class _Watchdog:
    """Drops a borrowed connection whose holder still waits after ``deadline`` seconds.

    A server that stops answering (or a black-holed path through a proxy that keeps the TCP
    connection open) is caught neither by ``statement_timeout`` (the server never sees the
    statement) nor by keepalives (the local peer answers them). Shutting the socket down
    wakes libpq's wait with an error, which the pool turns into a clear, transient one.
    """

    def __init__(self, conn: psycopg.Connection[Any], deadline: float) -> None:
        self.fired = False
        self._conn = conn
        self._lock = threading.Lock()
        self._stopped = False
        self._timer = threading.Timer(deadline, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:  # never touch a connection already given back
            if self._stopped:
                return
            self.fired = True
            try:
                fd = os.dup(self._conn.pgconn.socket)
            except (OSError, psycopg.Error):
                return
            try:
                with socket.socket(fileno=fd) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        """The holder is done: disarm (waits for a firing in progress)."""
        self._timer.cancel()
        with self._lock:
            self._stopped = True


def quoted(name: str) -> sql.Identifier:
    """``name`` as a quoted identifier (the only way names reach SQL text)."""
    return sql.Identifier(name)


def parse_config(model: type[_M], config: Mapping[str, Any], address: str) -> _M:
    """Validate ``config`` with ``model``; errors name fields, never values (they may be secret)."""
    try:
        return model.model_validate(dict(config))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ProviderPermanentError(f"Invalid config: {problems}", address=address) from None


def name_validator(value: str) -> str:
    """A pydantic ``AfterValidator`` for optional identifier fields ('' passes)."""
    if value:
        problem = identifier_problem(value)
        if problem:
            raise ValueError(f"the name {problem}")
    return value


Identifier = Annotated[str, pydantic.AfterValidator(name_validator)]
