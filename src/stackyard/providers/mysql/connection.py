"""MySQL/MariaDB plumbing: server URLs, the connection pool, the error boundary, quoting, names
and the ownership labels (a table in the admin database ``stackyard_meta``)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

import pydantic

from stackyard.errors import ForeignObjectError, ProviderPermanentError
from stackyard.lazy import lazy
from stackyard.providers import timeouts
from stackyard.providers.api import Labelled, NamingRule, ResourceMeta
from stackyard.providers.boundary import translate

if TYPE_CHECKING:
    import pymysql
    import pymysql.err
else:  # imported on first use: naming and planning never talk to the server
    pymysql = lazy("pymysql")

#: Physical names: lower-case letters, digits and '_', so they are valid unquoted identifiers
#: (hand-written SQL and client flags need no backticks). Users: 32 characters, MySQL's limit
#: (MariaDB allows 80); databases: 64, both servers' limit.
USER_NAMING = NamingRule(max_length=32, allowed="a-z0-9", separator="_")
DATABASE_NAMING = NamingRule(max_length=64, allowed="a-z0-9", separator="_")
MAX_USER_CHARS = 80
MAX_DATABASE_CHARS = 64
MAX_HOST_CHARS = 255
DEFAULT_PORT = 3306
MAX_IDLE_PER_KEY = 4

#: The admin database and table that hold the ownership labels (users and databases carry no
#: comment of their own on MariaDB). Workload users are never granted anything on it.
META_DATABASE = "stackyard_meta"
LABELS_TABLE = "labels"

#: Client error codes (CR_*) and server errors that retrying can cure.
TRANSIENT_CODES = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1205,  # lock wait timeout
        1213,  # deadlock
        1317,  # query execution was interrupted
        1927,  # connection was killed
        1969,  # statement timeout (MariaDB max_statement_time)
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection (system error)
    }
)
ER_NO_SUCH_TABLE = 1146
ER_BAD_DB = 1049

_M = TypeVar("_M", bound=pydantic.BaseModel)


@dataclass(frozen=True, slots=True)
class ServerUrl:
    """A parsed admin URL: ``mysql://user:password@host:port/`` (or ``mariadb://``)."""

    host: str
    port: int
    user: str
    password: str

    @classmethod
    def parse(cls, url: str) -> ServerUrl:
        """Parse ``url``; a ``ProviderPermanentError`` that never quotes it when it is bad."""
        try:
            parts = urlsplit(url)
            port = parts.port or DEFAULT_PORT
        except ValueError:
            parts, port = None, 0
        if parts is None or parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
            raise ProviderPermanentError(
                "The server is not a valid MySQL URL",
                hint="Use mysql://USER:PASSWORD@HOST:PORT/ (percent-encode special characters).",
            )
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
        )


def url_secrets(url: str) -> list[str]:
    """The secret parts of a server URL: the URL itself and its password (raw and decoded)."""
    out = [url]
    try:
        raw = urlsplit(url).password
    except ValueError:
        raw = None
    if raw:
        out += [raw, unquote(raw)]
    return out


def native_hash(password: str) -> str:
    """The ``mysql_native_password`` hash of ``password``: ``*`` + SHA1(SHA1(pw)), upper hex.

    Users get this hash (``IDENTIFIED VIA mysql_native_password USING '<hash>'``), so the
    plaintext never reaches the server or its logs; observe compares hashes.
    """
    inner = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def _code(exc: Exception) -> int:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def _describe(exc: Exception) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[1]} [{args[0]}]"
    return str(exc) or type(exc).__name__


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, pymysql.err.InterfaceError | TimeoutError | ConnectionError):
        return True
    return _code(exc) in TRANSIENT_CODES


def _note(exc: Exception) -> str:
    if _code(exc) in (2013, 1205) or isinstance(exc, TimeoutError):
        return f" (limit: {timeouts.OPERATION_ENV})"
    return ""


def provider_errors(address: str, *, secrets: Iterable[str] = ()) -> AbstractContextManager[None]:
    """The one boundary where PyMySQL exceptions become stackyard's (``boundary.translate``).

    Lost or refused connections, timeouts, deadlocks, lock waits and a server shutting down are
    transient; refused credentials, syntax and privilege errors and the rest are permanent.
    Messages are redacted of ``secrets``; when the original text held one, the cause is not
    chained either.
    """
    return translate(
        address,
        service="MySQL",
        catch=(pymysql.err.MySQLError, OSError),
        transient=_is_transient,
        describe=_describe,
        note=_note,
        secrets=secrets,
    )


def refuse(address: str, message: str, *, hint: str | None = None) -> NoReturn:
    """Raise the permanent error every refusal in this provider uses."""
    raise ProviderPermanentError(message, address=address, hint=hint)


def refuse_foreign(meta: ResourceMeta, what: str, name: str, why: str) -> NoReturn:
    """Refuse to touch an object another owner holds (nothing was written)."""
    raise ForeignObjectError(
        f"The {what} '{name}' exists and is not managed by this environment ({why})",
        address=meta.address,
        hint=f"It is not this installation's {what}: remove or rename it, or choose another "
        "name. Taking over an existing object ('stackyard adopt') is not available yet.",
    )


def name_problem(name: str, *, limit: int) -> str | None:
    """Why ``name`` cannot be a MySQL user or database name, or ``None`` when it can.

    Quoting makes any text safe to send; these checks keep out what the server would refuse
    or truncate, and names that render deceptively (control and format characters).
    """
    if not name:
        return "is empty"
    if len(name) > limit:
        return f"is longer than {limit} characters"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return "contains a control, format or unassigned character"
    if name != name.rstrip(" "):
        return "ends with a space"
    if any(ord(ch) > 0xFFFF for ch in name):
        return "contains a character outside the Basic Multilingual Plane"
    return None


def checked_name(address: str, what: str, name: str, *, limit: int) -> str:
    """``name``, or a ``ProviderPermanentError`` saying why it cannot be used."""
    problem = name_problem(name, limit=limit)
    if problem:
        refuse(address, f"The {what} name {name!r} {problem}")
    return name


def identifier(name: str) -> str:
    """``name`` as a backtick-quoted identifier (backticks doubled); checked names only."""
    return "`" + name.replace("`", "``") + "`"


def grant_target(database: str) -> str:
    r"""``database`` as the quoted, wildcard-escaped target of ``GRANT ... ON <db>.*``.

    In a grant's database name ``_`` and ``%`` are wildcards: ``GRANT ... ON my_db.*`` would
    also reach ``myXdb``. Escaping them (and ``\\``) makes the grant match one database only.
    """
    escaped = database.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    return identifier(escaped)


def ownership(meta: ResourceMeta, name: str, label: str | None) -> tuple[bool, str]:
    """Whether an existing object is ours (it carries exactly our label), and why not."""
    if label == meta.label:
        return True, ""
    if label is None:
        return False, f"'{name}' exists without a stackyard label"
    return False, f"'{name}' is labelled {label!r}, not {meta.label!r}"


def parse_config(model: type[_M], config: Mapping[str, Any], address: str) -> _M:
    """Validate ``config`` with ``model``; errors name fields, never values (they may be secret)."""
    try:
        return model.model_validate(dict(config))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ProviderPermanentError(f"Invalid config: {problems}", address=address) from None


Connection = Any  # a pymysql.connections.Connection (typed loosely: PyMySQL has no stubs)


class Connections:
    """A small thread-safe pool of autocommit connections, one list per server URL.

    A connection that failed is closed, never returned to the pool. Every connection has the
    timeouts of ``stackyard.providers.timeouts``: connect, read and write on the socket, and
    ``lock_wait_timeout`` for statements that wait on a metadata lock (DROP DATABASE).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[Connection]] = {}
        self._meta_ready: set[str] = set()

    @contextmanager
    def connect(self, url: str) -> Iterator[Connection]:
        """Borrow a connection to the server at ``url``."""
        with self._lock:
            idle = self._idle.get(url, [])
            conn = idle.pop() if idle else None
        if conn is None or not conn.open:
            conn = self._open(url)
        ok = False
        try:
            yield conn
            ok = True
        finally:
            self._give_back(url, conn, ok)

    def _open(self, url: str) -> Connection:
        server = ServerUrl.parse(url)
        limits = timeouts.current()
        operation = max(1, int(limits.operation))
        return pymysql.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            connect_timeout=limits.connect,
            read_timeout=limits.operation,
            write_timeout=limits.operation,
            autocommit=True,
            charset="utf8mb4",
            init_command=f"SET SESSION lock_wait_timeout = {operation}",
        )

    def _give_back(self, url: str, conn: Connection, ok: bool) -> None:
        if ok and conn.open:
            with self._lock:
                idle = self._idle.setdefault(url, [])
                if len(idle) < MAX_IDLE_PER_KEY:
                    idle.append(conn)
                    return
        _close(conn)

    def ensure_meta(self, url: str, conn: Connection) -> None:
        """Create the label table if this process has not seen it on ``url`` yet (idempotent)."""
        if url in self._meta_ready:
            return
        execute(
            conn,
            f"CREATE DATABASE IF NOT EXISTS {identifier(META_DATABASE)}"
            " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        )
        execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {identifier(META_DATABASE)}.{identifier(LABELS_TABLE)} ("
            " kind VARCHAR(16) NOT NULL,"
            " name VARCHAR(128) NOT NULL,"
            " host VARCHAR(255) NOT NULL DEFAULT '',"
            " label TEXT NOT NULL,"
            " PRIMARY KEY (kind, name, host)"
            ") ENGINE=InnoDB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        )
        with self._lock:
            self._meta_ready.add(url)

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            groups = list(self._idle.values())
            self._idle.clear()
        for conns in groups:
            for conn in conns:
                _close(conn)


def _close(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # already closed or broken: nothing to release
        conn.close()


def execute(conn: Connection, statement: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement (values only through ``args``) and return its rows."""
    with conn.cursor() as cur:
        cur.execute(statement, tuple(args) if args else None)
        return list(cur.fetchall() or ())


# The label table, spelled out (META_DATABASE, LABELS_TABLE): statements are constant text.
_LABEL_OF = (
    "(SELECT l.label FROM `stackyard_meta`.`labels` l"
    " WHERE l.kind = %s AND l.name = %s AND l.host = %s)"
)


def read_with_label(
    conn: Connection, query: str, args: Sequence[Any], label_key: tuple[str, str, str]
) -> list[tuple[Any, ...]]:
    """Rows of ``query``, whose ``{label}`` column is the object's label (``None`` when it has
    none, or when no label was ever written on this server). One round trip."""
    try:
        return execute(conn, query.format(label=_LABEL_OF), [*label_key, *args])
    except pymysql.err.ProgrammingError as exc:
        if _code(exc) not in (ER_NO_SUCH_TABLE, ER_BAD_DB):
            raise
    return execute(conn, query.format(label="NULL"), list(args))


def write_label(conn: Connection, key: tuple[str, str, str], label: str) -> None:
    """Record ``label`` for the object ``key`` (kind, name, host); replaces an older one."""
    execute(
        conn,
        "INSERT INTO `stackyard_meta`.`labels` (kind, name, host, label) VALUES (%s, %s, %s, %s)"
        " ON DUPLICATE KEY UPDATE label = VALUES(label)",
        [*key, label],
    )


def remove_label(conn: Connection, key: tuple[str, str, str], label: str) -> None:
    """Forget the label of ``key`` if it is still ``label`` (never another owner's)."""
    try:
        execute(
            conn,
            "DELETE FROM `stackyard_meta`.`labels`"
            " WHERE kind = %s AND name = %s AND host = %s AND label = %s",
            [*key, label],
        )
    except pymysql.err.ProgrammingError as exc:
        if _code(exc) not in (ER_NO_SUCH_TABLE, ER_BAD_DB):
            raise


def label_of(conn: Connection, key: tuple[str, str, str]) -> str | None:
    """The label recorded for ``key``, or ``None``."""
    try:
        rows = execute(
            conn,
            "SELECT label FROM `stackyard_meta`.`labels` WHERE kind = %s AND name = %s AND host = %s",
            list(key),
        )
    except pymysql.err.ProgrammingError as exc:
        if _code(exc) not in (ER_NO_SUCH_TABLE, ER_BAD_DB):
            raise
        return None
    return str(rows[0][0]) if rows else None


def labelled_rows(
    conn: Connection, kind: str, prefix: str, limit: int
) -> list[tuple[str, str, str]]:
    """``(name, host, label)`` of the objects of ``kind`` labelled ``prefix...`` (one query)."""
    try:
        rows = execute(
            conn,
            "SELECT name, host, label FROM `stackyard_meta`.`labels` WHERE kind = %s"
            " AND LEFT(label, CHAR_LENGTH(%s)) = %s ORDER BY name, host LIMIT %s",
            [kind, prefix, prefix, limit],
        )
    except pymysql.err.ProgrammingError as exc:
        if _code(exc) not in (ER_NO_SUCH_TABLE, ER_BAD_DB):
            raise
        return []
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def is_error(exc: BaseException, *codes: int) -> bool:
    """Whether ``exc`` is a MySQL error with one of ``codes``."""
    return isinstance(exc, pymysql.err.MySQLError) and _code(exc) in codes


class ServerSwept:
    """The sweep capability of the kinds that live on one server (``Sweepable``): objects are
    listed once per server URL, by their label, with one query on the label table.

    A kind sets ``swept`` (``user`` or ``database``), keeps its pool in ``_conns`` and turns a
    label row into a delete config with ``_sweep_config``.
    """

    swept: ClassVar[str]
    _conns: Connections

    def _sweep_config(self, server: str, host: str) -> dict[str, Any]:
        return {"server": server}

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The server URL: objects are listed once per server."""
        return str(config.get("server", ""))

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """The objects whose label starts with ``prefix`` (one query); no writes."""
        server = str(config.get("server", ""))
        with (
            provider_errors("sweep", secrets=url_secrets(server)),
            self._conns.connect(server) as c,
        ):
            found = labelled_rows(c, self.swept, prefix, limit)
        return [
            Labelled(name, label, self._sweep_config(server, host)) for name, host, label in found
        ]
