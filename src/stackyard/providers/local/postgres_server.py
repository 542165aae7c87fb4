"""``local.postgres_server``: a supervised PostgreSQL server with its data dir under the home.

initdb runs once with ``-A scram-sha-256`` and the superuser ``postgres`` whose password comes
from a pwfile (never argv). The server listens on 127.0.0.1 only, with no Unix socket, so it
never collides with the machine's own server. It is a development server: ``fsync`` is off
unless the config turns it on, which is safe against a crashed server but not against a
crashed machine (ADR 0001).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from stackyard.errors import ProviderPermanentError, ProviderTransientError
from stackyard.host import supervise
from stackyard.host.supervise import ServerUser
from stackyard.providers.api import KindConfig, config_field
from stackyard.providers.local import binaries
from stackyard.providers.local.server import (
    HOST,
    ServerConfig,
    ServerPaths,
    ServerState,
    SupervisedServer,
    missing_binary,
)

if TYPE_CHECKING:
    # The methods that talk to the server import psycopg themselves: loading the ``local``
    # kinds (for a directory, say) does not load the driver.
    import psycopg

SUPERUSER = "postgres"
INITIALISED = ".stackyard-initialised"
_AUTH_FAILED = "28P01"


class PostgresServerConfig(ServerConfig):
    """Config of ``local.postgres_server``."""

    fsync: bool = config_field(
        False,
        description="Flush writes to disk. Off by default: a development server favours speed.",
    )


def _run_as(
    argv: list[str], user: ServerUser | None, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    if user is None:
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        user=user.uid,
        group=user.gid,
        extra_groups=[],
    )


class PostgresServer(SupervisedServer):
    """``local.postgres_server``: outputs host, port, username, admin_url (secret), data_dir."""

    name: ClassVar[str] = "local.postgres_server"
    config_model: ClassVar[type[KindConfig]] = PostgresServerConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset({"admin_url"})
    stop_signal: ClassVar[int] = signal.SIGINT  # "fast" shutdown: do not wait for clients

    def find_binary(self, address: str) -> str:
        """The preferred PostgreSQL ``bin`` directory."""
        found = binaries.find_postgres()
        if found is None:
            raise missing_binary(self.name, "PostgreSQL (initdb, postgres)", "embedded", address)
        return str(found.bin_dir)

    def _bin_dir(self, state: ServerState, data_dir: Path) -> Path:
        """The recorded bin dir, or another installation of the data dir's major version."""
        recorded = Path(state.binary)
        if (recorded / "postgres").exists():
            return recorded
        try:
            major = (data_dir / "pgdata" / "PG_VERSION").read_text().strip()
        except OSError:
            major = ""
        for candidate in binaries.postgres_candidates():
            if binaries.postgres_major(candidate) == major:
                return candidate.bin_dir
        raise ProviderPermanentError(
            f"{self.name}: the PostgreSQL {major} binaries this server was created with are gone",
            hint=f"Reinstall PostgreSQL {major}, or delete and re-create the server.",
        )

    def initialised(self, data_dir: Path) -> bool:
        """A sentinel written after initdb succeeded."""
        return (data_dir / INITIALISED).exists()

    def initialise(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Run initdb (scram-sha-256, superuser password from a pwfile, no fsync)."""
        pwfile = data_dir / "pwfile"
        pwfile.write_text(password + "\n")
        supervise.give(pwfile, user, 0o600)
        bin_dir = Path(state.binary)
        argv = [
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir / "pgdata"),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]
        try:
            result = _run_as(argv, user, data_dir, self.environment())
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ProviderPermanentError(
                f"{self.name}: initdb failed: {result.stderr.strip()[-500:]}"
            )
        (data_dir / INITIALISED).write_text(state.binary + "\n")

    def prepare_start(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Remove a killed server's ``postmaster.pid`` once its process is surely gone."""
        lock = data_dir / "pgdata" / "postmaster.pid"
        try:
            pid = int(lock.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if supervise.alive(supervise.Process(pid, 0)) and _is_postgres(pid):
            raise ProviderTransientError(
                f"{self.name}: PostgreSQL process {pid} still uses {data_dir}; stop it first"
            )
        lock.unlink(missing_ok=True)

    def command(self, data_dir: Path, state: ServerState, config: KindConfig) -> list[str]:
        """``postgres -D ... -p PORT`` with loopback-only, socket-less settings."""
        assert isinstance(config, PostgresServerConfig)
        durable = "on" if config.fsync else "off"
        settings = {
            "listen_addresses": HOST,
            "unix_socket_directories": "",
            "fsync": durable,
            "synchronous_commit": durable,
            "full_page_writes": durable,
        }
        argv = [str(self._bin_dir(state, data_dir) / "postgres"), "-D", str(data_dir / "pgdata")]
        argv += ["-p", str(state.port)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def answering(self, port: int, password: str) -> bool:
        """A session opens (or is refused for its password: the server is up)."""
        import psycopg

        try:
            with psycopg.connect(**_conninfo(port, password), connect_timeout=2):
                return True
        except psycopg.OperationalError as exc:
            return _auth_failed(exc)

    def change_password(self, port: int, old: str, new: str, data_dir: Path) -> None:
        """``ALTER ROLE postgres PASSWORD``, logged in with the old password (or the new one)."""
        import psycopg
        from psycopg import sql

        stmt = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(SUPERUSER), sql.Literal(new)
        )
        for attempt in (old, new):
            try:
                with psycopg.connect(**_conninfo(port, attempt), autocommit=True) as conn:
                    conn.execute(stmt)
                    return
            except psycopg.OperationalError as exc:
                if not _auth_failed(exc):
                    raise ProviderTransientError(f"{self.name}: {exc}") from None
        raise ProviderPermanentError(f"{self.name}: neither the old nor the new password works")

    def outputs(self, paths: ServerPaths, state: ServerState, password: str) -> dict[str, Any]:
        """host, port, username, admin_url (secret) and data_dir."""
        return {
            "host": HOST,
            "port": state.port,
            "username": SUPERUSER,
            "admin_url": f"postgresql://{SUPERUSER}:{quote(password, safe='')}@{HOST}:"
            f"{state.port}/postgres",
            "data_dir": str(Path(state.data_dir) / "pgdata"),
        }


def _conninfo(port: int, password: str) -> dict[str, Any]:
    return {
        "host": HOST,
        "port": port,
        "user": SUPERUSER,
        "password": password,
        "dbname": "postgres",
    }


def _auth_failed(exc: psycopg.OperationalError) -> bool:
    return exc.sqlstate == _AUTH_FAILED or "password authentication failed" in str(exc)


def _is_postgres(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell: assume the worst
    return b"postgres" in cmdline
