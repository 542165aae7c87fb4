"""Caddy's admin API over its Unix socket: one request per call, errors translated once.

The socket lives in the proxy server's data dir (``0700``: only the server's account and
root can connect), so reaching it is the authentication. The admin URL is
``unix://<absolute socket path>``; a path longer than a ``sockaddr_un`` holds (107 bytes) is
reached through ``/proc/self/fd/<dir fd>/<name>``, which is short whatever the home's path.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from stackyard.errors import ProviderError, ProviderPermanentError
from stackyard.providers.boundary import translate

__all__ = ["ORIGIN", "AdminError", "admin_url", "locked", "provider_errors", "request", "socket_of"]

#: The ``Host`` the admin API is told to accept (``admin.origins``): Caddy refuses others.
ORIGIN = "stackyard"
TIMEOUT = 10.0
MAX_SOCKET_PATH = 100
SCHEME = "unix://"


class AdminError(ProviderError):
    """A reply of the admin API that is not a success: ``status`` and Caddy's message. It
    never leaves the provider: the boundary translates it into a transient or permanent error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def admin_url(sock: Path) -> str:
    """The admin URL of a socket path."""
    return f"{SCHEME}{sock}"


def socket_of(url: str, address: str) -> Path:
    """The socket path of an admin URL; permanent error when it is not ``unix:///abs/path``."""
    path = url.removeprefix(SCHEME) if url.startswith(SCHEME) else ""
    if not path.startswith("/") or "\0" in path:
        raise ProviderPermanentError(
            "proxy: the admin URL must be unix:///<absolute path of Caddy's admin socket>",
            address=address,
            hint="Use the 'admin_url' output of proxy.local_server.",
        )
    return Path(path)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, sock_path: Path) -> None:
        super().__init__(ORIGIN, timeout=TIMEOUT)
        self._path = sock_path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        target = str(self._path)
        try:
            if len(target.encode()) <= MAX_SOCKET_PATH:
                s.connect(target)
            else:
                fd = os.open(self._path.parent, os.O_PATH | os.O_DIRECTORY)
                try:
                    s.connect(f"/proc/self/fd/{fd}/{self._path.name}")
                finally:
                    os.close(fd)
        except BaseException:
            s.close()
            raise
        self.sock = s


def request(sock_path: Path, method: str, path: str, body: Any = None) -> Any:
    """One admin request; the decoded JSON reply (``None`` when empty).

    Raises ``AdminError`` for a non-2xx reply and ``OSError`` when the socket cannot be
    reached; translate both with ``provider_errors``.
    """
    conn = _UnixConnection(sock_path)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Host": ORIGIN}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        reply = conn.getresponse()
        raw = reply.read()
        if reply.status >= 300:
            try:
                message = str(json.loads(raw).get("error", ""))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise AdminError(reply.status, message[:300] or reply.reason)
        return json.loads(raw) if raw.strip() else None
    finally:
        conn.close()


def _transient(exc: Exception) -> bool:
    if isinstance(exc, AdminError):
        return exc.status >= 500 or exc.status in (408, 429)
    return isinstance(exc, OSError | TimeoutError | http.client.HTTPException)


def provider_errors(address: str) -> AbstractContextManager[None]:
    """The boundary: an unreachable socket, a timeout and a 5xx reply are transient (the
    server may be restarting), a refused config (4xx) permanent. No secrets cross it: the
    admin API takes none."""
    return translate(
        address,
        service="Caddy admin API",
        catch=(AdminError, OSError, TimeoutError, http.client.HTTPException, ValueError),
        transient=_transient,
    )


@contextmanager
def locked(sock_path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the route list (``routes.lock`` beside the socket):
    the engine applies several routes of one environment at once."""
    lock = sock_path.parent / "routes.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
