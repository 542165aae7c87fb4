"""``mysql.local_server``: a supervised MariaDB server with its data dir under the home.

The binaries are the system's (Debian's ``mariadb-server``: ``mariadbd`` and
``mariadb-install-db``). ``mariadb-install-db`` runs once, with ``--no-defaults`` (the
machine's ``/etc/mysql`` never applies) and an extra SQL file that keeps only ``root``
at ``localhost`` and ``127.0.0.1`` and gives both the admin password as its
``mysql_native_password`` hash, so the plaintext never reaches the server, argv or a file.
The server listens on 127.0.0.1 only, with ``skip-name-resolve``, and its Unix socket lives
in its own data dir, so it never collides with the machine's server. Under root it runs as
an unprivileged account of its own (``stackyard.host``), like the PostgreSQL and Redis
servers. It is a development server: redo-log flushes are relaxed unless ``fsync`` is on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from stackyard.errors import ProviderPermanentError, ProviderTransientError
from stackyard.host import supervise
from stackyard.host.accounts import runnable_by_server_user
from stackyard.host.supervise import ServerUser
from stackyard.providers.api import KindConfig, config_field
from stackyard.providers.local.server import (
    HOST,
    ServerConfig,
    ServerPaths,
    ServerState,
    SupervisedServer,
)
from stackyard.providers.mysql.connection import native_hash

SUPERUSER = "root"
INITIALISED = ".stackyard-initialised"
#: Unix socket paths are limited to 107 bytes; a longer one is made relative to the datadir.
MAX_SOCKET_PATH = 100
_AUTH_FAILED = 1045


class MysqlServerConfig(ServerConfig):
    """Config of ``mysql.local_server``."""

    fsync: bool = config_field(
        False,
        description="Flush the redo log at every commit. Off by default: a development "
        "server favours speed.",
    )


@lru_cache(maxsize=8)
def _is_mariadb(binary: str) -> bool:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "mariadb" in out.lower()


def mariadbd_candidates() -> list[Path]:
    """Every usable ``mariadbd`` executable, best first: ``$STACKYARD_MARIADBD``, ``mariadbd``
    on ``PATH``, ``/usr/sbin/mariadbd``, then a ``mysqld`` that is MariaDB."""
    found: list[Path] = []
    if env := os.environ.get("STACKYARD_MARIADBD"):
        found.append(Path(env))
    if on_path := shutil.which("mariadbd"):
        found.append(Path(on_path))
    found.append(Path("/usr/sbin/mariadbd"))
    for mysqld in (shutil.which("mysqld"), "/usr/sbin/mysqld"):
        if mysqld and _is_mariadb(mysqld):
            found.append(Path(mysqld))
    unique = dict.fromkeys(p for p in found if os.access(p, os.X_OK) and runnable_by_server_user(p))
    return list(unique)


def install_db(mariadbd: Path) -> Path | None:
    """The ``mariadb-install-db`` that goes with ``mariadbd`` (or on ``PATH``), if any."""
    prefix = mariadbd.resolve().parent.parent
    names = ("mariadb-install-db", "mysql_install_db")
    candidates = [prefix / "bin" / n for n in names]
    candidates += [Path(p) for n in names if (p := shutil.which(n))]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _run_as(
    argv: list[str], user: ServerUser | None, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    extra: dict[str, Any] = {}
    if user is not None:
        extra = {"user": user.uid, "group": user.gid, "extra_groups": []}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False, **extra
    )


def bootstrap_sql(password: str) -> str:
    """The SQL run once at initialisation: only ``root`` at ``localhost`` and ``127.0.0.1``,
    both behind the password's hash (no anonymous users, no ``root@<hostname>``)."""
    digest = native_hash(password)  # [*0-9A-F]: safe inside a literal
    return "\n".join(
        [
            "DELETE FROM mysql.global_priv WHERE User <> 'mariadb.sys'"
            " AND NOT (User = 'root' AND Host IN ('localhost', '127.0.0.1'));",
            "DELETE FROM mysql.proxies_priv"
            " WHERE NOT (User = 'root' AND Host IN ('localhost', '127.0.0.1'));",
            "FLUSH PRIVILEGES;",
            f"ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING '{digest}';",
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';",
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;",
            f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING '{digest}';",
            "",
        ]
    )


def server_options(fsync: bool) -> list[str]:
    """The options both ``mariadb-install-db`` and the server get (after ``--no-defaults``)."""
    durable = (
        ["--innodb-flush-log-at-trx-commit=1"]
        if fsync
        else [
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-doublewrite=0",
        ]
    )
    return [
        "--skip-name-resolve",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        "--innodb-buffer-pool-size=64M",
        "--innodb-log-file-size=16M",
        *durable,
    ]


class MysqlServer(SupervisedServer):
    """``mysql.local_server``: outputs host, port, username, password and admin_url (secrets)."""

    name: ClassVar[str] = "mysql.local_server"
    config_model: ClassVar[type[KindConfig]] = MysqlServerConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset({"admin_url", "password"})
    stop_signal: ClassVar[int] = signal.SIGTERM

    def find_binary(self, address: str) -> str:
        """The preferred ``mariadbd`` that has a ``mariadb-install-db`` beside it."""
        for candidate in mariadbd_candidates():
            if install_db(candidate) is not None:
                return str(candidate)
        raise ProviderPermanentError(
            f"{self.name}: no MariaDB server (mariadbd, mariadb-install-db) found on this machine",
            address=address,
            hint="Install Debian's 'mariadb-server' package (its service need not run), or set "
            "STACKYARD_MARIADBD to a mariadbd executable.",
        )

    def initialised(self, data_dir: Path) -> bool:
        """A sentinel written after ``mariadb-install-db`` succeeded."""
        return (data_dir / INITIALISED).exists()

    def initialise(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Run ``mariadb-install-db`` with the bootstrap SQL (hash only), then drop the file."""
        tool = install_db(Path(state.binary))
        if tool is None:
            raise ProviderPermanentError(f"{self.name}: mariadb-install-db is gone")
        extra = data_dir / "bootstrap.sql"
        fd = os.open(extra, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(bootstrap_sql(password))
        supervise.give(extra, user, 0o600)
        argv = [
            str(tool),
            "--no-defaults",
            f"--datadir={data_dir / 'db'}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            f"--extra-file={extra}",
            *server_options(fsync=False),
        ]
        try:
            result = _run_as(argv, user, data_dir, self.environment())
        finally:
            extra.unlink(missing_ok=True)
        if result.returncode != 0:
            tail = (result.stderr.strip() or result.stdout.strip())[-500:]
            raise ProviderPermanentError(f"{self.name}: mariadb-install-db failed: {tail}")
        (data_dir / INITIALISED).write_text(state.binary + "\n")

    def prepare_start(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Refuse while a killed server's process still holds the data dir; remove its stale
        pid and socket files otherwise."""
        pidfile = data_dir / "mysqld.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid and supervise.alive(supervise.Process(pid, 0)) and _is_mariadbd(pid):
            raise ProviderTransientError(
                f"{self.name}: MariaDB process {pid} still uses {data_dir}; stop it first"
            )
        pidfile.unlink(missing_ok=True)
        (data_dir / "mysqld.sock").unlink(missing_ok=True)

    def command(self, data_dir: Path, state: ServerState, config: KindConfig) -> list[str]:
        """``mariadbd --no-defaults`` on 127.0.0.1, socket and pid file in the data dir."""
        assert isinstance(config, MysqlServerConfig)
        socket = data_dir / "mysqld.sock"
        socket_arg = str(socket) if len(str(socket)) <= MAX_SOCKET_PATH else "../mysqld.sock"
        return [
            state.binary,
            "--no-defaults",
            f"--datadir={data_dir / 'db'}",
            f"--port={state.port}",
            f"--bind-address={HOST}",
            f"--socket={socket_arg}",
            f"--pid-file={data_dir / 'mysqld.pid'}",
            *server_options(config.fsync),
        ]

    def answering(self, port: int, password: str) -> bool:
        """A session opens (or is refused for its password: the server is up)."""
        import pymysql

        try:
            conn = pymysql.connect(
                host=HOST, port=port, user=SUPERUSER, password=password, connect_timeout=2
            )
        except pymysql.err.OperationalError as exc:
            return bool(exc.args) and exc.args[0] == _AUTH_FAILED
        conn.close()
        return True

    def change_password(self, port: int, old: str, new: str, data_dir: Path) -> None:
        """``ALTER USER root@localhost, root@127.0.0.1`` to the new hash, logged in with the old
        password (or the new one, when a previous call got that far)."""
        import pymysql

        using = "IDENTIFIED VIA mysql_native_password USING %s"
        statement = f"ALTER USER 'root'@'localhost' {using}, 'root'@'127.0.0.1' {using}"
        digest = native_hash(new)
        for attempt in (old, new):
            try:
                conn = pymysql.connect(
                    host=HOST, port=port, user=SUPERUSER, password=attempt, connect_timeout=5
                )
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] == _AUTH_FAILED:
                    continue
                raise ProviderTransientError(
                    f"{self.name}: cannot connect to change the password"
                ) from None
            try:
                with conn.cursor() as cur:
                    cur.execute(statement, (digest, digest))
                conn.commit()
                return
            except pymysql.err.MySQLError:
                raise ProviderTransientError(f"{self.name}: the password change failed") from None
            finally:
                conn.close()
        raise ProviderPermanentError(f"{self.name}: neither the old nor the new password works")

    def outputs(self, paths: ServerPaths, state: ServerState, password: str) -> dict[str, Any]:
        """host, port, username, password (secret), admin_url (secret) and socket."""
        return {
            "host": HOST,
            "port": state.port,
            "username": SUPERUSER,
            "password": password,
            "admin_url": f"mysql://{SUPERUSER}:{quote(password, safe='')}@{HOST}:{state.port}/",
            "socket": str(Path(state.data_dir) / "mysqld.sock"),
        }


def _is_mariadbd(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell: assume the worst
    return b"mariadbd" in cmdline or b"mysqld" in cmdline
