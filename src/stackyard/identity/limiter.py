"""The failed-authentication limit: so many failures per client address in a sliding window.

A client past the limit is refused before its credential is even looked at, until its oldest
counted failure leaves the window. Kept in memory per server process (each server of a
scale-out limits on its own); bounded, so a flood of addresses cannot grow it without end.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from stackyard.identity.errors import TooManyAttempts

__all__ = ["FailureLimiter"]

#: Failures allowed per client in ``DEFAULT_WINDOW_S``.
DEFAULT_LIMIT = 10
DEFAULT_WINDOW_S = 60.0
#: Clients remembered at once; the least recently failing are forgotten first.
MAX_CLIENTS = 10_000


class FailureLimiter:
    """Counts failures per client; ``check`` raises ``TooManyAttempts`` past ``limit``.

    Thread-safe. ``clock`` is monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._mutex = threading.Lock()

    def check(self, client: str) -> None:
        """Refuse (``TooManyAttempts``, with the seconds to wait) a client at the limit."""
        with self._mutex:
            now = self._clock()
            seen = self._recent(client, now)
            if seen is not None and len(seen) >= self.limit:
                wait = seen[0] + self.window_s - now
                raise TooManyAttempts(max(1, math.ceil(wait)))

    def fail(self, client: str) -> None:
        """Count one failure of ``client``."""
        with self._mutex:
            now = self._clock()
            seen = self._recent(client, now)
            if seen is None:
                seen = self._failures[client] = deque()
            seen.append(now)
            self._failures.move_to_end(client)
            while len(seen) > self.limit:
                seen.popleft()
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        """The client's failures still in the window (None when there are none)."""
        seen = self._failures.get(client)
        if seen is None:
            return None
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if not seen:
            del self._failures[client]
            return None
        return seen
