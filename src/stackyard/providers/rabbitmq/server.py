"""``rabbitmq.local_server``: a RabbitMQ node supervised on this machine (Debian's binaries).

The node is the system's ``rabbitmq-server`` package run with a private everything: its own
``RABBITMQ_BASE`` (config, mnesia, Erlang cookie, under the server's data dir), node name,
and loopback-only ports for AMQP, the management API (plugin enabled) and Erlang
distribution. The admin user is defined by a definitions file holding only a salted hash of
its password, imported at every boot (so a stopped node comes back with the current
password); no ``guest`` user is ever created. Nothing of the system's own RabbitMQ (its
config, node, cookie or data) is read or touched; the host's ``epmd`` is shared (it maps
node names to ports) and is started by the node if none runs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from stackyard.errors import ProviderPermanentError, ProviderTransientError
from stackyard.host import supervise
from stackyard.host.accounts import runnable_by_server_user
from stackyard.host.supervise import ServerUser
from stackyard.providers.api import KindConfig
from stackyard.providers.local.server import (
    HOST,
    ServerConfig,
    ServerPaths,
    ServerState,
    SupervisedServer,
)
from stackyard.providers.rabbitmq.client import HASHING_ALGORITHM, hash_password

ADMIN = "stackyard-admin"
INITIALISED = ".stackyard-initialised"
PORTS = "ports.json"
#: Where Debian's ``rabbitmq-server`` package puts the real start script and the plugins.
DEBIAN_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
PLUGINS_GLOB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbitmq_management-*"
BINARY_ENV = "STACKYARD_RABBITMQ_SERVER"


class RabbitmqServerConfig(ServerConfig):
    """Config of ``rabbitmq.local_server`` (``port`` is the AMQP port)."""


def find_server() -> Path | None:
    """The ``rabbitmq-server`` start script to run: ``$STACKYARD_RABBITMQ_SERVER``, else
    Debian's, when it exists with the management plugin beside it."""
    env = os.environ.get(BINARY_ENV)
    candidates = [Path(env)] if env else []
    if glob.glob(PLUGINS_GLOB):
        candidates.append(DEBIAN_SERVER)
    for candidate in candidates:
        if os.access(candidate, os.X_OK) and runnable_by_server_user(candidate):
            return candidate
    return None


def _ports(data_dir: Path) -> dict[str, int]:
    try:
        data = json.loads((data_dir / PORTS).read_text())
        return {"management": int(data["management"]), "dist": int(data["dist"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _node(data_dir: Path) -> str:
    """A node name of this server's own: stable, and never the system's ``rabbit``."""
    return f"stackyard-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]}@localhost"


class RabbitmqServer(SupervisedServer):
    """``rabbitmq.local_server``: outputs host, port (AMQP), management_port, username,
    password (secret) and admin_url (secret: the management URL with the admin's
    credentials, what ``rabbitmq.*`` kinds take as ``server``)."""

    name: ClassVar[str] = "rabbitmq.local_server"
    config_model: ClassVar[type[KindConfig]] = RabbitmqServerConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset({"admin_url", "password"})
    stop_signal: ClassVar[int] = signal.SIGTERM

    def __init__(self) -> None:
        # answering() gets only the AMQP port; the management port is known per data dir
        self._management: dict[int, int] = {}
        self._lock = threading.Lock()

    def find_binary(self, address: str) -> str:
        """Debian's ``rabbitmq-server`` (with its management plugin)."""
        found = find_server()
        if found is None:
            raise ProviderPermanentError(
                f"{self.name}: no RabbitMQ server found on this machine",
                address=address,
                hint="Install Debian's 'rabbitmq-server' package (apt-get install "
                f"rabbitmq-server), or set {BINARY_ENV} to a rabbitmq-server start script. "
                "Its own service need not run.",
            )
        return str(found)

    def initialised(self, data_dir: Path) -> bool:
        """A sentinel written after the config files."""
        return (data_dir / INITIALISED).exists() and bool(_ports(data_dir))

    def initialise(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Pick the management and distribution ports, write the config files."""
        ports = {"management": supervise.free_port(HOST), "dist": supervise.free_port(HOST)}
        _write(data_dir / PORTS, json.dumps(ports), user)
        self._write_files(data_dir, state, password, user)
        _write(data_dir / INITIALISED, state.binary + "\n", user)

    def _write_files(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        ports = _ports(data_dir)
        definitions = data_dir / "definitions.json"
        conf = "\n".join(
            [
                f"listeners.tcp.1 = {HOST}:{state.port}",
                f"management.tcp.ip = {HOST}",
                f"management.tcp.port = {ports['management']}",
                "definitions.import_backend = local_filesystem",
                f"definitions.local.path = {definitions}",
                "log.console = true",
                "log.file = false",
                "",
            ]
        )
        _write(data_dir / "rabbitmq.conf", conf, user)
        _write(data_dir / "enabled_plugins", "[rabbitmq_management].\n", user)
        _write(data_dir / "rabbitmq-env.conf", "", user)
        _write(definitions, json.dumps(_definitions(password)), user)
        (data_dir / "conf.d").mkdir(mode=0o700, exist_ok=True)
        supervise.give(data_dir / "conf.d", user, 0o700)
        with self._lock:
            self._management[state.port] = ports["management"]

    def prepare_start(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Rewrite the config and the admin's definition (a stopped node may lag)."""
        self._write_files(data_dir, state, password, user)

    def command(self, data_dir: Path, state: ServerState, config: KindConfig) -> list[str]:
        """``env RABBITMQ_...=... rabbitmq-server``: the node's private paths and ports (no
        secrets: argv is world-readable)."""
        ports = _ports(data_dir)
        env = {
            "HOME": str(data_dir),  # the Erlang cookie
            "RABBITMQ_BASE": str(data_dir),
            "RABBITMQ_CONF_ENV_FILE": str(data_dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(data_dir / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(data_dir / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(data_dir / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(data_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(data_dir / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(data_dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(data_dir / "rabbitmq.pid"),
            "RABBITMQ_NODENAME": _node(data_dir),
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(state.port),
            "RABBITMQ_DIST_PORT": str(ports["dist"]),
            "ERL_EPMD_ADDRESS": HOST,
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        return ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), state.binary]

    def environment(self) -> dict[str, str]:
        """Minimal, with a UTF-8 locale (Erlang warns under plain C)."""
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def answering(self, port: int, password: str) -> bool:
        """The management API answers (a refused password still counts): it starts last."""
        import httpx

        with self._lock:
            management = self._management.get(port)
        if management is None or not supervise.port_open(port, HOST):
            return False
        try:
            response = httpx.get(
                f"http://{HOST}:{management}/api/overview",
                auth=(ADMIN, password),
                timeout=2.0,
                trust_env=False,
            )
        except httpx.HTTPError:
            return False
        return response.status_code in (200, 401)

    def change_password(self, port: int, old: str, new: str, data_dir: Path) -> None:
        """Set the admin's password through the API (old or new credentials), and in the
        definitions file the next boot imports."""
        import httpx

        management = _ports(data_dir).get("management")
        body = {
            "password_hash": hash_password(new),
            "hashing_algorithm": HASHING_ALGORITHM,
            "tags": "administrator",
        }
        for attempt in (old, new):
            try:
                response = httpx.put(
                    f"http://{HOST}:{management}/api/users/{ADMIN}",
                    json=body,
                    auth=(ADMIN, attempt),
                    timeout=10.0,
                    trust_env=False,
                )
            except httpx.HTTPError as exc:
                raise ProviderTransientError(
                    f"{self.name}: the management API did not answer ({type(exc).__name__})"
                ) from None
            if response.status_code == 401:
                continue
            if response.status_code not in (200, 201, 204):
                raise ProviderTransientError(
                    f"{self.name}: setting the admin password failed (HTTP {response.status_code})"
                )
            data = json.loads((data_dir / "definitions.json").read_text())
            data["users"][0]["password_hash"] = body["password_hash"]
            _replace(data_dir / "definitions.json", json.dumps(data))
            return
        raise ProviderPermanentError(f"{self.name}: neither the old nor the new password works")

    def outputs(self, paths: ServerPaths, state: ServerState, password: str) -> dict[str, Any]:
        """host, port, management_port, username, password and admin_url (secrets)."""
        management = _ports(Path(state.data_dir)).get("management", 0)
        return {
            "host": HOST,
            "port": state.port,
            "management_port": management,
            "username": ADMIN,
            "password": password,
            "admin_url": f"http://{ADMIN}:{quote(password, safe='')}@{HOST}:{management}",
        }


def _definitions(password: str) -> dict[str, Any]:
    """The admin user, the default vhost and the admin's rights on it: a salted hash only."""
    return {
        "users": [
            {
                "name": ADMIN,
                "password_hash": hash_password(password),
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": ["administrator"],
                "limits": {},
            }
        ],
        "vhosts": [{"name": "/"}],
        "permissions": [
            {"user": ADMIN, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
        ],
    }


def _write(path: Path, text: str, user: ServerUser | None) -> None:
    """Write ``path`` atomically, 0600, owned by the server's account."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    supervise.give(tmp, user, 0o600)
    tmp.replace(path)


def _replace(path: Path, text: str) -> None:
    """Rewrite ``path`` in place, keeping its owner and mode."""
    stat = path.stat()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, stat.st_mode & 0o777)
    if os.geteuid() == 0:
        os.chown(tmp, stat.st_uid, stat.st_gid)
    tmp.replace(path)
