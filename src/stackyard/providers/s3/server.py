"""``s3.local_server``: a supervised S3 server on 127.0.0.1 (moto, with IAM authentication on).

Run by the shared local-server life cycle (``providers/local/server.py``): the data dir
holds ``admin.json`` (the admin access key id and secret, 0600), which the server process
(``moto_main``) reads at start and again whenever it changes, so a changed admin password
needs no restart. moto keeps buckets and users in memory: a restarted server is empty but for
its admin, and the next deploy re-creates what the environment records (see
docs/adr/0005-s3-server.md).
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any, ClassVar

from stackyard.errors import ProviderTransientError
from stackyard.host.accounts import runnable_by_server_user
from stackyard.host.supervise import ServerUser
from stackyard.providers.api import KindConfig
from stackyard.providers.local.server import (
    HOST,
    ServerConfig,
    ServerPaths,
    ServerState,
    SupervisedServer,
    missing_binary,
)

__all__ = ["ADMIN_FILE", "REGION", "S3Server", "S3ServerConfig"]

ADMIN_FILE = "admin.json"
REGION = "us-east-1"
#: The modules the server process needs (``moto[server]``).
NEEDED = ("moto", "werkzeug", "flask")
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class S3ServerConfig(ServerConfig):
    """Config of ``s3.local_server``."""


def _package_paths() -> list[str] | None:
    """The folders holding the server's packages (moto, werkzeug, flask, stackyard), or
    ``None`` when one is missing or the server's account could not read it."""
    out: list[str] = []
    for module in (*NEEDED, "stackyard"):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        package = Path(next(iter(spec.submodule_search_locations)))
        if not runnable_by_server_user(package):
            return None
        if str(package.parent) not in out:
            out.append(str(package.parent))
    return out


def _interpreters() -> list[Path]:
    """Pythons of this version the server's account can run: this one, else the system's.

    Under root the server runs as an unprivileged account, which cannot run an interpreter
    inside a private folder (pyenv under /root, say); a system Python of the same version
    runs the same packages (compiled extensions included) through ``PYTHONPATH``.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        Path(sys.executable),
        Path(f"/usr/bin/python{version}"),
        Path(f"/usr/local/bin/python{version}"),
    ]
    found = [p for p in candidates if os.access(p, os.X_OK) and runnable_by_server_user(p)]
    return list(dict.fromkeys(found))


def _write_admin(data_dir: Path, key_id: str, secret: str) -> None:
    """Write the admin file (0600) atomically, owned like its data dir (the server's
    account, under root)."""
    tmp = data_dir / f"{ADMIN_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"access_key_id": key_id, "secret_key": secret}, f)
    if os.geteuid() == 0:
        owner = data_dir.stat()
        os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.replace(data_dir / ADMIN_FILE)


def _read_admin(data_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((data_dir / ADMIN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class S3Server(SupervisedServer):
    """``s3.local_server``: outputs endpoint, host, port, region, admin_access_key_id and
    admin_secret_key (secret)."""

    name: ClassVar[str] = "s3.local_server"
    config_model: ClassVar[type[KindConfig]] = S3ServerConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset({"admin_secret_key"})
    stop_signal: ClassVar[int] = signal.SIGTERM

    def find_binary(self, address: str) -> str:
        """A Python that runs ``moto[server]`` and that the server's account can run."""
        paths = _package_paths()
        if paths is not None:
            for python in _interpreters():
                return str(python)
        raise missing_binary(self.name, "S3 server (moto[server])", "moto[server]", address)

    def initialised(self, data_dir: Path) -> bool:
        """The admin file is there."""
        return bool(_read_admin(data_dir).get("access_key_id"))

    def initialise(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Write the admin file: a new access key id, and the password as its secret."""
        key_id = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        _write_admin(data_dir, key_id, password)

    def prepare_start(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Put the current admin password into the admin file (a stopped server may lag)."""
        admin = _read_admin(data_dir)
        if admin.get("secret_key") != password:
            _write_admin(data_dir, admin["access_key_id"], password)

    def command(self, data_dir: Path, state: ServerState, config: KindConfig) -> list[str]:
        """``python -m stackyard.providers.s3.moto_main --port N --admin <data>/admin.json``."""
        return [
            state.binary,
            "-m",
            "stackyard.providers.s3.moto_main",
            "--port",
            str(state.port),
            "--admin",
            str(data_dir / ADMIN_FILE),
        ]

    def environment(self) -> dict[str, str]:
        """Minimal and locale-neutral; ``PYTHONPATH`` names where moto and stackyard are
        (another interpreter than this one may run them), and no user site."""
        return {
            **super().environment(),
            "PYTHONPATH": os.pathsep.join(_package_paths() or []),
            "PYTHONNOUSERSITE": "1",
            "PYTHONWARNINGS": "ignore",
        }

    def answering(self, port: int, password: str) -> bool:
        """The server answers HTTP (an unsigned request is refused with 403: it is up)."""
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status == 403
        except OSError:
            return False
        finally:
            conn.close()

    def change_password(self, port: int, old: str, new: str, data_dir: Path) -> None:
        """Rewrite the admin file; the server picks it up at its next request."""
        admin = _read_admin(data_dir)
        if not admin.get("access_key_id"):
            raise ProviderTransientError(f"{self.name}: the admin file is missing")
        _write_admin(data_dir, admin["access_key_id"], new)

    def outputs(self, paths: ServerPaths, state: ServerState, password: str) -> dict[str, Any]:
        """endpoint, host, port, region, admin_access_key_id, admin_secret_key (secret)."""
        admin = _read_admin(Path(state.data_dir))
        return {
            "endpoint": f"http://{HOST}:{state.port}",
            "host": HOST,
            "port": state.port,
            "region": REGION,
            "admin_access_key_id": admin.get("access_key_id", ""),
            "admin_secret_key": password,
        }
