"""The read cache (``stackyard.api.readcache``) on a real server, on SQLite and on the machine's
PostgreSQL: hot reads are answered from memory while the store has not changed, and never
once it has; one caller's answer never reaches another; a status is observed again after its
maximum age; ``Cache-Control: no-cache`` computes; and a lost change feed stops the cache
rather than letting it serve what may be stale."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from _apisupport import ADMIN, Live, prepare, serving, teardown

pytestmark = pytest.mark.integration

#: How long a change made elsewhere may take to reach the cache (its notification): the
#: tests poll up to this; without invalidation an answer would stay for 60 s (the servers
#: here remember a verified token for 120 s, so no read falls back to the ordinary road).
SEEN_WITHIN_S = 1.5


@contextmanager
def cached_server(
    volume_template: Path,
    tmp_path: Path,
    env: str,
    *,
    database_url: str | None = None,
    status_max_age_s: float = 1.0,
) -> Iterator[Live]:
    from stackyard.api.context import ApiConfig

    settings = prepare(tmp_path / "home", volume_template, env, database_url=database_url)
    config = ApiConfig(status_max_age_s=status_max_age_s, auth_failures=10_000, token_cache_s=120.0)
    try:
        with serving(settings, worker=False, config=config) as (url, logs):
            live = Live(url, tmp_path / "home", settings, env, logs)
            if database_url is not None:
                wait_listening(live)
            yield live
    finally:
        teardown(settings)


def wait_listening(live: Live) -> None:
    """Until a read is served from memory (the PostgreSQL listener is up)."""
    with live.client(ADMIN) as c:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            c.get("/api/v1/environments")
            if "age" in c.get("/api/v1/environments").headers:
                return
            time.sleep(0.05)
    raise AssertionError("the read cache never served a read")


def cache_counts(c: httpx.Client) -> dict[str, float]:
    text = c.get("/metrics").text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^stackyard_http_read_cache_total\{result="(\w+)"\} (\S+)$', text, re.M
        )
    }


def env_names(c: httpx.Client) -> list[str]:
    r = c.get("/api/v1/environments")
    assert r.status_code == 200, r.text
    return sorted(e["name"] for e in r.json()["items"])


def eventually(read: Callable[[], Any], want: Callable[[Any], bool]) -> tuple[Any, float]:
    """``read()`` until ``want`` holds (up to ``SEEN_WITHIN_S``); the last value and the
    seconds it took."""
    t0 = time.monotonic()
    while True:
        value = read()
        if want(value) or time.monotonic() - t0 > SEEN_WITHIN_S:
            return value, time.monotonic() - t0
        time.sleep(0.01)


def create_env_elsewhere(live: Live, name: str) -> None:
    """A write the server does not see pass: the service layer in this process, on its own
    connection, as the admin."""
    from stackyard.environments import lifecycle
    from stackyard.environments.workspace import Workspace

    with Workspace.open(dataclasses.replace(live.settings, actor=ADMIN)) as ws:
        lifecycle.create(ws, name, type_name="lite", owner="team-checkout")


def set_grant(live: Live, user: str, scope: str, *, on: bool) -> None:
    """Grant (or revoke) ``viewer`` at ``scope`` to ``user``, on a connection of its own."""
    from stackyard.policy.rbac import Grant, Role
    from stackyard.state import open_store
    from stackyard.state.governance import Governance

    with open_store(live.settings) as store:
        grant = Grant(f"user:{user}", Role.VIEWER, scope)
        if on:
            Governance(store).grant(grant, by="test")
        else:
            Governance(store).revoke(grant)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_live(
    request: pytest.FixtureRequest,
    volume_template: Path,
    tmp_path: Path,
    sweeper: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Live]:
    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    url = request.getfixturevalue("pg_databases")() if request.param == "postgresql" else None
    with cached_server(volume_template, tmp_path, sweeper.env, database_url=url) as live:
        yield live


def test_reads_are_served_from_memory_until_the_store_changes(store_live: Live) -> None:
    live = store_live
    with live.client(ADMIN) as c:
        # the token's first use is verified against the store (and its use recorded: a
        # write), then it is remembered: the read after that computes and keeps the answer
        for _ in range(2):
            c.get("/api/v1/environments")
        first = c.get("/api/v1/environments", headers={"Cache-Control": "no-cache"})
        again = c.get("/api/v1/environments")
        assert first.status_code == again.status_code == 200
        assert "age" not in first.headers
        assert "age" in again.headers, "the read was not served from memory"
        assert again.json() == first.json()
        # the security headers come with a cached answer too
        assert again.headers["x-content-type-options"] == "nosniff"
        assert again.headers["cache-control"] == "no-store"
        before = cache_counts(c)
        assert before.get("hit", 0) >= 1 and before.get("miss", 0) >= 1

        other = f"{live.env[:40]}-more"
        create_env_elsewhere(live, other)
        names, took = eventually(lambda: env_names(c), lambda n: other in n)
        assert names == sorted([live.env, other]), f"still stale after {took:.2f} s: {names}"
        if live.settings.database_url.startswith("sqlite"):
            assert took < 0.05, f"SQLite's data version is read on every request: {took:.3f} s"
        # and it is cached again
        assert "age" in c.get("/api/v1/environments").headers


def test_one_callers_answer_never_reaches_another(store_live: Live) -> None:
    live = store_live
    show = f"/api/v1/environments/{live.env}"
    with live.client(ADMIN) as admin, live.client("outsider") as outsider:
        for _ in range(3):
            assert env_names(admin) == [live.env]
        assert "age" in admin.get("/api/v1/environments").headers  # cached for the admin
        for _ in range(3):  # never the admin's answer
            assert outsider.get("/api/v1/environments").status_code == 403
            assert outsider.get(show).status_code == 403
        # a grant is a write: the outsider's next read shows what it allows, and is cached
        set_grant(live, "outsider", "type:lite", on=True)
        seen, took = eventually(lambda: outsider.get(show), lambda r: r.status_code == 200)
        assert seen.status_code == 200, f"still refused after {took:.2f} s"
        cached, _ = eventually(lambda: outsider.get(show), lambda r: "age" in r.headers)
        assert "age" in cached.headers and cached.status_code == 200
        # a revocation is a write too: the cached answer is not served any more
        set_grant(live, "outsider", "type:lite", on=False)
        seen, took = eventually(lambda: outsider.get(show), lambda r: r.status_code == 403)
        assert seen.status_code == 403, f"still served after {took:.2f} s"
        assert env_names(admin) == [live.env]


def test_a_status_is_observed_again_after_its_maximum_age(
    volume_template: Path, tmp_path: Path, sweeper: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    with cached_server(volume_template, tmp_path, sweeper.env, status_max_age_s=0.5) as live:
        path = f"/api/v1/environments/{live.env}/status"
        with live.client(ADMIN) as c:
            for _ in range(2):  # the token verified, then remembered
                c.get("/api/v1/environments")
            assert "age" not in c.get(path).headers
            hit = c.get(path)
            assert hit.status_code == 200 and "age" in hit.headers
            assert int(hit.headers["age"]) == 0
            fresh = c.get(path, headers={"Cache-Control": "no-cache"})
            assert fresh.status_code == 200 and "age" not in fresh.headers
            counts = cache_counts(c)
            time.sleep(0.6)
            # too old, nothing changed: the last observation now, a new one in the background
            stale = c.get(path)
            assert stale.status_code == 200 and "age" in stale.headers
            after, _ = eventually(
                lambda: cache_counts(c), lambda n: n["miss"] == counts["miss"] + 1
            )
            assert after["miss"] == counts["miss"] + 1, "no observation in the background"
            assert after["stale"] == counts.get("stale", 0) + 1
            assert "age" in c.get(path).headers  # the new observation, from memory
            # too old and something changed: never the last observation
            time.sleep(0.6)
            set_grant(live, "someone", "type:lite", on=True)
            assert "age" not in c.get(path).headers
            # an unknown environment is a 404 every time, never cached
            for _ in range(2):
                missing = c.get("/api/v1/environments/nope/status")
                assert missing.status_code == 404 and "age" not in missing.headers


def test_no_cache_without_a_remembered_token_or_with_the_cache_off(
    volume_template: Path, tmp_path: Path, sweeper: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackyard.api.context import ApiConfig

    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    settings = prepare(tmp_path / "home", volume_template, sweeper.env)
    try:
        with serving(settings, worker=False, config=ApiConfig(read_cache=False)) as (url, logs):
            live = Live(url, tmp_path / "home", settings, sweeper.env, logs)
            with live.client(ADMIN) as c:
                for _ in range(3):
                    r = c.get("/api/v1/environments")
                    assert r.status_code == 200 and "age" not in r.headers
                assert "stackyard_http_read_cache" not in c.get("/metrics").text
            with httpx.Client(base_url=url) as anonymous:
                for _ in range(2):
                    assert anonymous.get("/api/v1/environments").status_code == 401
    finally:
        teardown(settings)


@pytest.mark.parametrize("pg", ["postgresql"])
def test_a_lost_change_feed_stops_the_cache_until_it_listens_again(
    pg: str,
    volume_template: Path,
    tmp_path: Path,
    sweeper: Any,
    pg_databases: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    from stackyard.jobs.pgqueue import conninfo

    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    url = pg_databases()
    with (
        cached_server(volume_template, tmp_path, sweeper.env, database_url=url) as live,
        live.client(ADMIN) as c,
        psycopg.connect(conninfo(url, schema=None)) as admin,
    ):
        admin.autocommit = True
        assert "age" in c.get("/api/v1/environments").headers
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'stackyard-read-cache' AND datname = current_database()"
        ).fetchone()
        assert killed is not None and killed[0] >= 1
        # every read is right while the listener is down, and a write made meanwhile
        # is seen
        other = f"{live.env[:40]}-late"
        create_env_elsewhere(live, other)
        names, took = eventually(lambda: env_names(c), lambda n: other in n)
        assert other in names, f"still stale after {took:.2f} s"
        wait_listening(live)
        assert env_names(c) == sorted([live.env, other])
