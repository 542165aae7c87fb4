"""The read cache's own bookkeeping, on a stand-in ASGI app (the server tests in
``test_read_cache.py`` cover it in front of the real API): the bounds on what it keeps, that
only ``200`` JSON answers are kept, and that a generation change or another caller is a miss."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stackyard.api.readcache import ReadCache
from stackyard.identity import Identity

pytestmark = pytest.mark.unit


class Gen:
    def __init__(self) -> None:
        self.value: int | None = 1

    def current(self) -> int | None:
        return self.value

    def bump(self) -> None:
        if self.value is not None:
            self.value += 1

    def close(self) -> None:
        pass


class Auth:
    def remembered(self, authorization: str | None, *, client: str = "") -> Identity | None:
        if not authorization or not authorization.startswith("Bearer sy_"):
            return None
        return Identity(authorization.removeprefix("Bearer "), (), "token", "t1")


class App:
    """Answers ``status`` with a body of ``size`` bytes; counts its calls."""

    def __init__(self, size: int = 100, status: int = 200, kind: bytes = b"application/json"):
        self.size, self.status, self.kind, self.calls = size, status, kind, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        body = b"x" * self.size
        headers = [(b"content-type", self.kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def get(cache: ReadCache, path: str, query: bytes = b"", user: str = "sy_alice") -> list[Any]:
    sent: list[Any] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": [(b"authorization", f"Bearer {user}".encode())],
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(cache(scope, receive, send))
    return sent


def hit(sent: list[Any]) -> bool:
    return any(name == b"age" for name, _ in sent[0]["headers"])


def make(app: App, gen: Gen | None = None, **kwargs: Any) -> ReadCache:
    g = gen or Gen()
    return ReadCache(app, generation=lambda: g, authenticator=lambda: Auth(), **kwargs)  # type: ignore[arg-type,return-value]


def test_a_second_read_is_served_and_a_write_makes_it_stale() -> None:
    app, gen = App(), Gen()
    cache = make(app, gen)
    assert not hit(get(cache, "/api/v1/environments"))
    assert hit(get(cache, "/api/v1/environments"))
    assert app.calls == 1
    gen.bump()
    assert not hit(get(cache, "/api/v1/environments"))
    assert app.calls == 2
    # another caller never gets the first one's answer
    assert not hit(get(cache, "/api/v1/environments", user="sy_bob"))
    # an unknown generation (a lost change feed) serves nothing from memory
    gen.value = None
    assert not hit(get(cache, "/api/v1/environments"))
    assert not hit(get(cache, "/api/v1/environments"))


@pytest.mark.parametrize(
    "app",
    [App(status=403), App(status=500), App(kind=b"text/html")],
    ids=["refused", "failed", "not-json"],
)
def test_only_200_json_answers_are_kept(app: App) -> None:
    cache = make(app)
    for _ in range(3):
        assert not hit(get(cache, "/api/v1/environments"))
    assert app.calls == 3 and cache.size == (0, 0)


def test_routes_outside_the_cache_and_unknown_callers_pass_through() -> None:
    app = App()
    cache = make(app)
    for _ in range(2):
        get(cache, "/api/v1/jobs")
        get(cache, "/api/v1/environments", user="not-a-token")
    assert app.calls == 4 and cache.size == (0, 0)


def test_what_it_keeps_is_bounded_in_answers_and_bytes() -> None:
    app = App(size=1000)
    cache = make(app, max_entries=50, max_bytes=10_000)
    for i in range(200):  # a client varying its query
        get(cache, "/api/v1/environments", query=f"limit={i + 1}".encode())
        entries, size = cache.size
        assert entries <= 10 and size <= 10_000
    assert cache.size == (10, 10_000)
    # the most recent are the ones kept
    assert hit(get(cache, "/api/v1/environments", query=b"limit=200"))
    assert not hit(get(cache, "/api/v1/environments", query=b"limit=1"))
    # an answer larger than everything allowed is not kept at all
    big = make(App(size=20_000), max_bytes=10_000)
    get(big, "/api/v1/environments")
    assert big.size == (0, 0)
