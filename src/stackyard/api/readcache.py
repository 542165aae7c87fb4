"""The read cache: the API's hot reads answered from memory while the store has not changed.

Dashboards, pipelines and the portal poll the same few reads (the environment list, one
environment, its status) far more often than anything changes. Like the Kubernetes API
server's watch cache, each server process keeps the last answer of those reads and serves it
again until a write makes it stale, so a read costs microseconds instead of a dozen queries.

- **What is cached.** ``GET /api/v1/environments`` (every query), ``GET
  /api/v1/environments/{env}`` and ``GET /api/v1/environments/{env}/status``: only ``200``
  JSON answers, per caller (user, teams and how they signed in: RBAC decided the answer, so
  one caller's answer never reaches another), at most ``MAX_ENTRIES`` of at most
  ``MAX_BODY`` bytes each and ``MAX_BYTES`` in all (the least recently used go first).
- **When it is stale.** Each answer is kept with the store's *generation* read before it was
  computed, and served only while the generation is the same:

  - on PostgreSQL a trigger on every table those reads depend on announces each committed
    change on the ``stackyard_state`` channel (migration 0008), which a thread of each server
    process listens to; while it is not listening (connecting, or its connection dropped)
    nothing is served from the cache;
  - on SQLite, ``PRAGMA data_version`` changes with every commit of any other connection (the
    server's own writers included: they use other connections).

  Writes through this process (any request that is not a ``GET``) also move the generation
  at once, so a client reads its own writes. A change made on another server is seen as soon
  as its notification arrives (well under a millisecond on one network).
- **Observations age.** A status also reports what was *observed* (resource health,
  workload readiness), which changes without a write: a cached status is served for at most
  ``status_max_age`` seconds (1 by default; the answer's ``Age`` header says how old it is).
  Every other answer is recomputed after ``LIST_MAX_AGE`` seconds at most, whatever happens.
- **Fresh on request.** A request with ``Cache-Control: no-cache`` (or ``max-age=0``) is
  answered by computing it; so are requests whose token this process has not verified in the
  last seconds (the authenticator's own cache), OIDC tokens, and clients at their
  failed-authentication limit: they take the ordinary road, which authenticates them.
- **One computation at a time.** Concurrent misses of one key wait for the first one's
  answer instead of all computing it (unless the generation moved meanwhile).
- **Stale while it revalidates.** A status that is only too old (nothing changed since) is
  observed again in the background, and every request meanwhile, the one that noticed
  included, gets the last observation (``Age`` says how old; at most ``STALE_FOR_S`` past
  its maximum age). Nothing is served stale when anything changed.

Hits still pass through the outer edge (request timing, the error boundary); the security
headers were added to the answer when it was computed and are sent again as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackyard.state.changes import CHANNEL, Generation, generation_for

if TYPE_CHECKING:
    from prometheus_client import Counter

    from stackyard.identity import Authenticator

__all__ = ["CHANNEL", "LIST_MAX_AGE", "Generation", "ReadCache", "generation_for"]

log = logging.getLogger("stackyard.api")

#: The longest any cached answer is served (seconds), even with no change seen.
LIST_MAX_AGE = 60.0
#: Answers kept per process, the largest one kept and all of them together (bytes): a client
#: that varies its query cannot make the cache grow past these.
MAX_ENTRIES = 4096
MAX_BODY = 1024 * 1024
MAX_BYTES = 64 * 1024 * 1024
#: How much older than its maximum age a status may be served while it is observed again in
#: the background (seconds): longer only when observing takes that long.
STALE_FOR_S = 10.0
#: How long a waiting request waits for the computation it joined (seconds).
_JOIN_WAIT_S = 30.0
_STATUS = "status"
#: The cached routes: a path pattern and its kind.
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/api/v1/environments"), "list"),
    (re.compile(r"/api/v1/environments/[^/]{1,63}"), "show"),
    (re.compile(r"/api/v1/environments/[^/]{1,63}/status"), _STATUS),
)


@dataclass(frozen=True, slots=True)
class _Entry:
    generation: int
    at: float
    headers: list[tuple[bytes, bytes]]
    body: bytes
    route: Any


def _kind(path: str) -> str | None:
    for pattern, kind in _ROUTES:
        if pattern.fullmatch(path):
            return kind
    return None


def _no_cache(value: bytes) -> bool:
    text = value.decode("latin-1").lower()
    return "no-cache" in text or "no-store" in text or "max-age=0" in text


class ReadCache:
    """The cache as plain ASGI middleware (see the module's text). ``generation`` and
    ``authenticator`` are callables, read per request: the server opens them at start-up."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        generation: Callable[[], Generation | None],
        authenticator: Callable[[], Authenticator],
        status_max_age: float = 1.0,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        counter: Counter | None = None,
    ) -> None:
        self.app = app
        self._generation = generation
        self._authenticator = authenticator
        self._status_max_age = status_max_age
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0  # the bodies kept, together
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._flights: dict[tuple[Any, ...], asyncio.Event] = {}
        self._refreshing: set[asyncio.Task[None]] = set()
        # answers by result: hit (from memory), stale (the last status while it is observed
        # again), miss (computed)
        self._counted = (
            {r: counter.labels(r) for r in ("hit", "stale", "miss")} if counter is not None else {}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A cached read from memory, anything else passed on (a write moves the
        generation when it is done)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method")
        if method != "GET":
            try:
                await self.app(scope, receive, send)
            finally:
                if method not in ("HEAD", "OPTIONS"):
                    gen = self._generation()
                    if gen is not None:
                        gen.bump()
            return
        kind = _kind(scope.get("path", ""))
        if kind == _STATUS and self._status_max_age <= 0:
            kind = None  # statuses are always observed anew
        gen = self._generation() if kind is not None else None
        if kind is None or gen is None:
            await self.app(scope, receive, send)
            return
        authorization, fresh = None, False
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"cache-control":
                fresh = _no_cache(value)
        client = scope.get("client")
        who = self._authenticator().remembered(authorization, client=client[0] if client else "")
        if who is None:
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope.get("query_string", b""), who.user, who.teams, who.via)
        max_age = self._status_max_age if kind == _STATUS else LIST_MAX_AGE
        generation = gen.current()
        if generation is None:
            await self.app(scope, receive, send)
            return
        if not fresh:
            if await self._serve(key, generation, max_age, scope, send):
                return
            flight = self._flights.get(key)
            if kind == _STATUS and flight is None and self._entry_of(key, generation):
                # Only too old, nothing changed since: observe again in the background and
                # answer with the last observation meanwhile (stale while it revalidates).
                self._flights[key] = asyncio.Event()
                task = asyncio.create_task(self._refresh(key, generation, scope))
                self._refreshing.add(task)
                task.add_done_callback(self._refreshing.discard)
                flight = self._flights[key]
            if flight is not None:
                if await self._serve(
                    key, generation, max_age + STALE_FOR_S, scope, send, result="stale"
                ):
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(flight.wait(), _JOIN_WAIT_S)
                now_gen = gen.current()
                if now_gen is not None and await self._serve(key, now_gen, max_age, scope, send):
                    return
        self._count("miss")
        mine = key not in self._flights
        if mine:
            self._flights[key] = asyncio.Event()
        try:
            await self._compute(key, generation, scope, receive, send)
        finally:
            if mine:
                self._flights.pop(key).set()

    def _entry_of(self, key: tuple[Any, ...], generation: int) -> bool:
        """Whether ``key`` has an answer of ``generation`` (of any age)."""
        entry = self._entries.get(key)
        return entry is not None and entry.generation == generation

    async def _refresh(self, key: tuple[Any, ...], generation: int, scope: Scope) -> None:
        """Compute ``key`` again as the request of ``scope`` would, keeping the answer
        (sent nowhere): the background half of stale-while-revalidate."""
        self._count("miss")

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def nowhere(_message: Message) -> None:
            return None

        try:
            await self._compute(key, generation, dict(scope), receive, nowhere)
        except Exception as exc:  # the last observation stays, for at most STALE_FOR_S
            log.warning("read cache: a background refresh failed (%s)", type(exc).__name__)
        finally:
            self._flights.pop(key).set()

    def _count(self, result: str) -> None:
        counted = self._counted.get(result)
        if counted is not None:
            counted.inc()

    async def _serve(
        self,
        key: tuple[Any, ...],
        generation: int,
        max_age: float,
        scope: Scope,
        send: Send,
        *,
        result: str = "hit",
    ) -> bool:
        """Send the cached answer of ``key`` if it is of ``generation`` and young enough."""
        entry = self._entries.get(key)
        if entry is None or entry.generation != generation:
            return False
        age = time.monotonic() - entry.at
        if age >= max_age:
            return False
        self._entries.move_to_end(key)
        self._count(result)
        scope["route"] = entry.route  # the request's route template, for its timing
        headers = [*entry.headers, (b"age", str(int(age)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": entry.body})
        return True

    async def _compute(
        self, key: tuple[Any, ...], generation: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Answer the request the ordinary way, keeping a copy of a ``200`` JSON answer."""
        seen: dict[str, Any] = {"status": 0, "headers": [], "size": 0, "json": False}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = int(message["status"])
                seen["headers"] = list(message.get("headers", []))
                seen["json"] = any(
                    n.lower() == b"content-type" and v.startswith(b"application/json")
                    for n, v in seen["headers"]
                )
            elif message["type"] == "http.response.body" and seen["status"] == 200:
                body = message.get("body", b"")
                seen["size"] += len(body)
                if seen["size"] <= MAX_BODY:
                    chunks.append(body)
            await send(message)

        await self.app(scope, receive, capture)
        if seen["status"] != 200 or not seen["json"] or seen["size"] > MAX_BODY:
            return
        body = b"".join(chunks)
        if len(body) > self._max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[key] = _Entry(
            generation, time.monotonic(), seen["headers"], body, scope.get("route")
        )
        self._bytes += len(body)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    @property
    def size(self) -> tuple[int, int]:
        """The answers kept and their bytes."""
        return len(self._entries), self._bytes
