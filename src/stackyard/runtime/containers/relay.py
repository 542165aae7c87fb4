"""The relay process: containers reach the loopback servers their resources name.

Every server a workload gets (the local cloud's ``*-server`` components, and the machine's own
services bound through ``*-external``) listens on 127.0.0.1, which a container on the
environment's bridge network cannot reach. One relay process per environment listens on the
network's gateway address only (never ``0.0.0.0``), one port per loopback endpoint, accepts
connections only from the network's subnet, and copies bytes to the endpoint. It binds with
``IP_FREEBIND``: the bridge gets its address only when its first container starts.

Run as ``python -m stackyard.runtime.containers.relay FOLDER [UID GID]``: it makes its control
socket ``FOLDER/control.sock`` (private to the caller), drops to ``UID``/``GID`` when given,
and takes its routes over that socket, one JSON line per request::

    {"gateway": "10.89.0.1", "subnet": "10.89.0.0/24",
     "routes": [{"target": "127.0.0.1:5432", "port": 40123}]}

answered by ``{"ports": {"127.0.0.1:5432": 40123}, "errors": {}}``. A request replaces the
routes: new targets get a listener (on the port asked for, or a free one when that is taken),
targets no longer named lose theirs; connections already open are kept. The client side is
``containers.reach``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import sys
from functools import partial
from typing import Any

__all__ = ["CONTROL", "listen", "main", "split_target"]

#: The control socket's name in the relay's folder.
CONTROL = "control.sock"
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
_CHUNK = 65536
_CONNECT_TIMEOUT = 10.0
_MAX_REQUEST = 1 << 20


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as (host, port)."""
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def listen(address: str, port: int) -> socket.socket:
    """A listening TCP socket on ``address:port`` (0: a free port), bound even when the address
    is not (yet) on an interface."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        level = socket.IPPROTO_IPV6 if family == socket.AF_INET6 else socket.SOL_IP
        sock.setsockopt(level, _IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Relay:
    """The listeners, by target, and the subnet allowed to connect."""

    def __init__(self) -> None:
        self.gateway = ""
        self.subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        self.listeners: dict[str, tuple[int, asyncio.Server]] = {}

    def _close(self, target: str) -> None:
        _port, server = self.listeners.pop(target)
        server.close()  # stops listening; connections already open go on

    async def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        gateway = str(request["gateway"])
        self.subnet = ipaddress.ip_network(str(request["subnet"]), strict=False)
        wanted = {str(r["target"]): int(r.get("port") or 0) for r in request["routes"]}
        if gateway != self.gateway:
            for target in list(self.listeners):
                self._close(target)
            self.gateway = gateway
        for target in [t for t in self.listeners if t not in wanted]:
            self._close(target)
        ports: dict[str, int] = {}
        errors: dict[str, str] = {}
        for target, port in wanted.items():
            current = self.listeners.get(target)
            if current is not None and port in (0, current[0]):
                ports[target] = current[0]
                continue
            if current is not None:
                self._close(target)
            try:
                split_target(target)
                try:
                    sock = listen(gateway, port)
                except OSError:
                    if not port:
                        raise
                    sock = listen(gateway, 0)  # the old port is taken: a new one
            except (OSError, ValueError) as exc:
                errors[target] = getattr(exc, "strerror", None) or str(exc)
                continue
            server = await asyncio.start_server(partial(self._pipe, target), sock=sock)
            bound = int(sock.getsockname()[1])
            self.listeners[target] = (bound, server)
            ports[target] = bound
        return {"ports": ports, "errors": errors}

    def _allowed(self, peer: Any) -> bool:
        if self.subnet is None or not isinstance(peer, tuple) or not peer:
            return False
        try:
            return ipaddress.ip_address(str(peer[0]).split("%")[0]) in self.subnet
        except ValueError:
            return False

    async def _pipe(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not self._allowed(writer.get_extra_info("peername")):
            writer.close()
            return
        host, port = split_target(target)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), _CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line.strip():
                return  # a liveness check: connected, said nothing
            try:
                reply = await self.apply(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"ports": {}, "errors": {"request": f"bad request: {exc}"}}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, ValueError):
            pass
        finally:
            writer.close()


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Bytes from ``src`` to ``dst`` until EOF, then half-close ``dst``."""
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        dst.close()


async def _serve(control: socket.socket) -> None:
    relay = _Relay()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_unix_server(relay.control, sock=control, limit=_MAX_REQUEST)
    async with server:
        await stop.wait()
    for target in list(relay.listeners):
        relay._close(target)


def main(argv: list[str]) -> int:
    """Make the control socket, drop privileges, serve until SIGTERM."""
    if len(argv) not in (2, 4):
        sys.stderr.write("usage: python -m stackyard.runtime.containers.relay FOLDER [UID GID]\n")
        return 2
    # Bound by a relative name from inside the folder: a home's path may be longer than a
    # socket address can be (108 bytes).
    os.chdir(argv[1])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(CONTROL)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        control.bind(CONTROL)
    finally:
        os.umask(old)
    control.listen(16)
    control.setblocking(False)
    if len(argv) == 4:  # root: relay as an unprivileged account from here on
        os.setgroups([])
        os.setgid(int(argv[3]))
        os.setuid(int(argv[2]))
    asyncio.run(_serve(control))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
