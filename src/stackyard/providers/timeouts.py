"""Time limits on every backend connection (PostgreSQL, Redis), with environment overrides.

A backend that stops answering (a hung server, a black-holed network path) must fail the
provider call with a transient error in bounded time, never block a deploy that holds an
environment's lock. Two settings, read when a connection is opened:

- ``STACKYARD_BACKEND_CONNECT_TIMEOUT`` (seconds, default 5): establishing a connection;
- ``STACKYARD_BACKEND_TIMEOUT`` (seconds, default 30): one operation. PostgreSQL gets it as
  ``statement_timeout`` (the server cancels a slow statement) and, a few seconds later, as a
  client-side deadline on the borrowed connection (the socket is shut down, for a server
  that does not answer at all); Redis gets it as the socket timeout of every command.

TCP keepalives are on everywhere, so a peer that vanished is noticed on idle connections too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from stackyard.errors import ProviderPermanentError

CONNECT_ENV = "STACKYARD_BACKEND_CONNECT_TIMEOUT"
OPERATION_ENV = "STACKYARD_BACKEND_TIMEOUT"
DEFAULT_CONNECT = 5.0
DEFAULT_OPERATION = 30.0
#: Keepalive probes: first after this many idle seconds, then every interval, this many times.
KEEPALIVE_IDLE = 10
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
#: How much longer than the statement timeout the client waits before dropping the socket.
CLIENT_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The time limits of one connection, in seconds."""

    connect: float
    operation: float

    @property
    def client_deadline(self) -> float:
        """Seconds after which a borrowed connection that still waits is dropped."""
        return self.operation + CLIENT_GRACE


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value > 86400:
        raise ProviderPermanentError(
            f"{name} must be a number of seconds between 0 and 86400",
            hint=f"Unset {name} to use the default ({default:g} s).",
        )
    return value


def current() -> Timeouts:
    """The time limits in force now (the environment overrides the defaults)."""
    return Timeouts(
        connect=_seconds(CONNECT_ENV, DEFAULT_CONNECT),
        operation=_seconds(OPERATION_ENV, DEFAULT_OPERATION),
    )
