"""``proxy.local_server``: a supervised Caddy reverse proxy for one environment, on 127.0.0.1.

Run by the shared local-server life cycle (``providers/local/server.py``). Caddy listens for
HTTP on a loopback port and takes its configuration through its admin API on a Unix socket in
the data dir (``0700``: only the server's account and root connect; Caddy's admin API has no
password of its own, so the kind's ``password`` is kept but unused). Routes added through the
API are saved by Caddy itself (``autosave.json``, read back with ``--resume``), so a restarted
proxy keeps them. Why Caddy: docs/adr/0007-proxy.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any, ClassVar

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
from stackyard.providers.proxy import admin

__all__ = ["CONFIG_FILE", "FALLBACK_ID", "SERVER_NAME", "SOCKET", "ProxyServer", "base_config"]

CONFIG_FILE = "caddy.json"
SOCKET = "admin.sock"
#: The one HTTP server in the config; routes are its ``routes``.
SERVER_NAME = "stackyard"
#: The last route: a 404 for any host and path no route matches (Caddy answers an empty 200).
FALLBACK_ID = "stackyard-fallback"


class ProxyServerConfig(ServerConfig):
    """Config of ``proxy.local_server``."""


def fallback_route() -> dict[str, Any]:
    """The catch-all route kept last."""
    return {
        "@id": FALLBACK_ID,
        "handle": [{"handler": "static_response", "status_code": 404, "body": "no route\n"}],
        "terminal": True,
    }


def base_config(port: int) -> dict[str, Any]:
    """Caddy's JSON config: admin on ``unix/admin.sock`` (relative to the data dir, Caddy's
    cwd, so no socket path is ever too long), one HTTP server on 127.0.0.1:``port`` without
    automatic HTTPS, and only the fallback route."""
    return {
        "admin": {"listen": f"unix/{SOCKET}", "origins": [admin.ORIGIN]},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "apps": {
            "http": {
                "servers": {
                    SERVER_NAME: {
                        "listen": [f"{HOST}:{port}"],
                        "automatic_https": {"disable": True},
                        "routes": [fallback_route()],
                    }
                }
            }
        },
    }


def _caddy_binary() -> str | None:
    override = os.environ.get("STACKYARD_CADDY")
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("caddy") or (
        "/usr/bin/caddy" if os.access("/usr/bin/caddy", os.X_OK) else None
    )


class ProxyServer(SupervisedServer):
    """``proxy.local_server``: outputs host, port, url and admin_url (the socket)."""

    name: ClassVar[str] = "proxy.local_server"
    config_model: ClassVar[type[KindConfig]] = ProxyServerConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    stop_signal: ClassVar[int] = signal.SIGTERM

    def find_binary(self, address: str) -> str:
        """``$STACKYARD_CADDY``, else ``caddy`` on ``PATH`` (Debian's ``caddy`` package)."""
        found = _caddy_binary()
        if found is None:
            raise missing_binary(self.name, "Caddy", "or apt-get install caddy", address)
        return found

    def initialised(self, data_dir: Path) -> bool:
        """The config file is there."""
        return (data_dir / CONFIG_FILE).is_file()

    def initialise(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Write ``caddy.json``."""
        self._write(data_dir / CONFIG_FILE, base_config(state.port), user)

    def prepare_start(
        self, data_dir: Path, state: ServerState, password: str, user: ServerUser | None
    ) -> None:
        """Rewrite ``caddy.json``; in Caddy's autosave (the routes of the last run) put back
        the admin socket and the listen address, which are ours to say."""
        self._write(data_dir / CONFIG_FILE, base_config(state.port), user)
        saved = _autosave(data_dir)
        try:
            current = json.loads(saved.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(current, dict):
            saved.unlink()
            return
        base = base_config(state.port)
        current["admin"] = base["admin"]
        try:
            current["apps"]["http"]["servers"][SERVER_NAME]["listen"] = [f"{HOST}:{state.port}"]
        except (KeyError, TypeError):
            saved.unlink()  # not a config of ours: start from the base one
            return
        self._write(saved, current, user)

    def _write(self, path: Path, data: dict[str, Any], user: ServerUser | None) -> None:
        from stackyard.host import supervise

        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        supervise.give(tmp, user, 0o600)
        tmp.replace(path)

    def command(self, data_dir: Path, state: ServerState, config: KindConfig) -> list[str]:
        """``caddy run --config <data>/caddy.json --resume`` (the autosave wins when present),
        through ``env`` so that Caddy's config and data folders are the data dir's, never the
        invoking user's (the environment hook does not know the data dir)."""
        return [
            "/usr/bin/env",
            f"XDG_CONFIG_HOME={data_dir / 'config'}",
            f"XDG_DATA_HOME={data_dir / 'data'}",
            f"HOME={data_dir}",
            state.binary,
            "run",
            "--config",
            str(data_dir / CONFIG_FILE),
            "--resume",
        ]

    def answering(self, port: int, password: str) -> bool:
        """The HTTP port accepts connections (the admin socket is checked by the kinds)."""
        from stackyard.host import supervise

        return supervise.port_open(port, HOST)

    def change_password(self, port: int, old: str, new: str, data_dir: Path) -> None:
        """Nothing to change: the admin API is guarded by the socket's folder, not a password."""

    def outputs(self, paths: ServerPaths, state: ServerState, password: str) -> dict[str, Any]:
        """host, port, url and admin_url (``unix://<data dir>/admin.sock``)."""
        return {
            "host": HOST,
            "port": state.port,
            "url": f"http://{HOST}:{state.port}",
            "admin_url": admin.admin_url(Path(state.data_dir) / SOCKET),
        }


def _autosave(data_dir: Path) -> Path:
    return data_dir / "config" / "caddy" / "autosave.json"
