"""Scale-out (issue 14, "Must show"): 2 servers and 3 workers on the machine's PostgreSQL.

30 deploys over 6 environments, submitted at once through the API (alternating between the
servers), all succeed, and the runs of one environment never overlap (from the job events'
timestamps and from the jobs' started/finished times). Then a worker is ``kill -9``ed in the
middle of an apply: its job finishes on another worker, and afterwards every role and
database in PostgreSQL and every ACL user in Redis labelled for these environments is
recorded in the state exactly once, and the state records nothing that does not exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _scale import (
    PATIENCE_S,
    Fleet,
    fleet,
    instant,
    labelled,
    make_template,
    overlaps,
    recorded,
    score,
    sse_events,
    workload_kinds,
)

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

ENVS = 6
DEPLOYS = 30
SERVERS = ("s1", "s2")
WORKERS = ("w1", "w2", "w3")


@pytest.fixture(scope="session")
def scale_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the components the site binds published (once per session)."""
    root = tmp_path_factory.mktemp("scale-template")
    return make_template(root / "home", root / "components")


@pytest.fixture
def site(
    scale_template: Path,
    tmp_path: Path,
    sweeper: Any,
    pg_databases: Callable[[], str],
    postgres_admin_url: str,
    redis_url: str,
) -> Iterator[Fleet]:
    """The site with its servers and workers running; everything stopped and destroyed after
    (the sweeper then fails the test if anything labelled with its prefix is left)."""
    database_url = pg_databases()  # fresh for this test; dropped after it
    try:
        with fleet(
            scale_template,
            tmp_path,
            database_url=database_url,
            prefix=sweeper.env,
            count=ENVS,
            pg_url=postgres_admin_url,
            redis_url=redis_url,
        ) as f:
            for name in SERVERS:
                f.start_server(name)
            for name in WORKERS:
                f.start_worker(name)
            f.wait_ready()
            yield f
    finally:
        _drop(postgres_admin_url, database_url)


def _drop(admin_url: str, database_url: str) -> None:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = make_url(database_url).database
    assert name is not None
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


FINAL = ("succeeded", "failed", "cancelled")


def _submit(f: Fleet, deploys: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """POST ``(server, env, score)`` deploys all at once, one thread each; the 202 answers."""

    def post(item: tuple[str, str, str]) -> dict[str, Any]:
        server, env, text = item
        with f.client(server) as c:
            answer = c.post(f"/api/v1/environments/{env}/deploy", json={"scores": {"s.yaml": text}})
        assert answer.status_code == 202, answer.text
        job: dict[str, Any] = answer.json()
        return job

    with ThreadPoolExecutor(len(deploys)) as pool:
        return list(pool.map(post, deploys))


def _tails(f: Fleet) -> str:
    return "\n".join(f"--- {n}\n{f.log(n)[-2500:]}" for n in (*SERVERS, *WORKERS))


def _wait(f: Fleet, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The jobs once all of them ended, read through the two servers in turn."""
    deadline = time.monotonic() + PATIENCE_S
    clients = [f.client(s) for s in SERVERS]
    try:
        while True:
            found = {}
            for i, job_id in enumerate(ids):
                answer = clients[i % len(clients)].get(f"/api/v1/jobs/{job_id}")
                assert answer.status_code == 200, answer.text
                found[job_id] = answer.json()
            if all(j["status"] in FINAL for j in found.values()):
                return found
            assert time.monotonic() < deadline, (
                "jobs did not end: "
                + ", ".join(f"{j['id']} {j['status']}" for j in found.values())
                + "\n"
                + _tails(f)
            )
            time.sleep(0.25)
    finally:
        for c in clients:
            c.close()


def _succeeded(f: Fleet, done: dict[str, dict[str, Any]]) -> None:
    failed = {i: (j["error"], j["attempts"]) for i, j in done.items() if j["status"] != "succeeded"}
    assert not failed, f"{failed}\n{_tails(f)}"


def _mid_apply(f: Fleet, ids: list[str]) -> tuple[str, str]:
    """A worker and a job it runs whose apply has made its database and its Redis user but
    not yet its slow ``thing`` (read from the jobs table and the job's events)."""
    from stackyard.jobs.store import JobStore
    from stackyard.state import open_store

    deadline = time.monotonic() + PATIENCE_S
    with open_store(f.settings()) as store:
        rows = JobStore(store)
        while True:
            for job_id in ids:
                job = rows.get(job_id)
                assert job is not None
                said = [e.message for e in rows.events(job_id)]
                made = [m for m in said if m.startswith("finished ")]
                if (
                    str(job.status) == "running"
                    and job.worker
                    and any(m.startswith("applying ") for m in said)
                    and any(m.endswith("late.db/database") for m in made)
                    and any(m.endswith("late.cache/user") for m in made)
                    and not any(m.endswith("late.thing/thing") for m in made)
                ):
                    return job.worker.split("@", 1)[0], job_id
            jobs = [rows.get(i) for i in ids]
            assert not all(j is not None and j.status.is_final for j in jobs), (
                "every apply ended before one could be caught in the middle"
            )
            assert time.monotonic() < deadline, jobs
            time.sleep(0.05)


def _accounts_balance(f: Fleet, pg_url: str, redis_url: str, prefix: str) -> None:
    """No duplicate and no orphan: each real object labelled for the environments is in the
    state once, the state records nothing else, and no intent is left pending."""
    world = labelled(pg_url, redis_url, prefix, f.envs)
    state, pending = recorded(f.settings(), f.envs)
    assert not pending, pending
    assert {k: n for k, n in state.items() if n != 1} == {}, "recorded more than once"
    assert {k: n for k, n in world.items() if n != 1} == {}, "labelled more than once"
    assert sorted(world - state) == [], "in PostgreSQL or Redis, not in the state (orphans)"
    assert sorted(state - world) == [], "in the state, gone from PostgreSQL or Redis"
    kinds = {k.split(" ", 1)[0] for k in world}
    assert kinds == {"postgres.role", "postgres.database", "redis.acl_user"}, kinds


def test_two_servers_three_workers_thirty_deploys_and_a_killed_worker(
    site: Fleet, postgres_admin_url: str, redis_url: str, sweeper: Any
) -> None:
    from stackyard.providers.noop import Ledger
    from stackyard.state import open_store

    f = site
    # -- round 1: 30 deploys over 6 environments, at once, through both servers ---------
    plan = [(SERVERS[i % 2], f.envs[i % ENVS], score(f"w{i // ENVS}")) for i in range(DEPLOYS)]
    accepted = _submit(f, plan)
    assert [a["status"] for a in accepted] == ["queued"] * DEPLOYS
    assert len({a["id"] for a in accepted}) == DEPLOYS
    done = _wait(f, [a["id"] for a in accepted])
    _succeeded(f, done)
    # The events, from each job's event stream on the server it was not submitted to.
    streams = {}
    for i, a in enumerate(accepted):
        with f.client(SERVERS[(i + 1) % 2]) as c:
            streams[a["id"]] = sse_events(c, a["id"])
    by_env: dict[str, list[str]] = {}
    for a in accepted:
        by_env.setdefault(a["env"], []).append(a["id"])
    assert sorted(by_env) == sorted(f.envs) and all(
        len(v) == DEPLOYS // ENVS for v in by_env.values()
    )
    for env, ids in by_env.items():
        from_events, from_rows, applies = [], [], []
        for job_id in ids:
            progress, end = streams[job_id]
            assert end["status"] == "succeeded" and end["attempts"] == 1, end
            messages = [e["message"] for e in progress]
            assert [e["seq"] for e in progress] == list(range(1, len(progress) + 1)), messages
            began = next(e for e in progress if e["message"].startswith("attempt 1 on "))
            applying = [e for e in progress if e["message"].startswith("applying ")]
            assert applying, messages  # each deploy made its workload's objects
            from_events.append((instant(began["at"]), instant(progress[-1]["at"]), job_id))
            applies.append((instant(applying[0]["at"]), instant(progress[-1]["at"]), job_id))
            from_rows.append((instant(end["started_at"]), instant(end["finished_at"]), job_id))
        assert overlaps(from_events) == [], f"runs in {env} overlapped (events)"
        assert overlaps(applies) == [], f"applies in {env} overlapped (events)"
        assert overlaps(from_rows) == [], f"runs in {env} overlapped (jobs' started/finished)"
    runs = [
        (instant(j["started_at"]), instant(j["finished_at"]), f"{j['env']} {j['id']}")
        for j in done.values()
    ]
    assert any(a.split()[0] != b.split()[0] for a, b in overlaps(runs)), (
        "jobs of different environments never ran at the same time"
    )
    ran_on = {j["worker"].split("@", 1)[0] for j in done.values()}
    assert len(ran_on) >= 2, ran_on
    kinds = workload_kinds(f.settings(), f.envs)
    for env in f.envs:
        for k in range(DEPLOYS // ENVS):
            counted = kinds.get(f"{env}/w{k}")
            assert counted is not None, sorted(kinds)
            assert [
                counted[x] for x in ("postgres.role", "postgres.database", "redis.acl_user")
            ] == [1, 1, 1], counted
    _accounts_balance(f, postgres_admin_url, redis_url, sweeper.env)

    # -- round 2: kill -9 a worker in the middle of an apply -----------------------------
    # The ``thing`` of each Score takes 5 s to create, beside the database and the Redis
    # user: the apply stays open after those are made.
    late = _submit(
        f, [(SERVERS[i % 2], env, score("late", slow_ms=5000)) for i, env in enumerate(f.envs)]
    )
    ids = [a["id"] for a in late]
    victim, victim_job = _mid_apply(f, ids)
    f.kill(victim)  # kill -9
    done = _wait(f, ids)
    _succeeded(f, done)
    with f.client(SERVERS[0]) as c:
        progress, end = sse_events(c, victim_job)
    messages = [e["message"] for e in progress]
    assert end["attempts"] >= 2, messages
    assert not end["worker"].startswith(f"{victim}@"), (end["worker"], messages)
    assert any(f"taken over from {victim}@" in m for m in messages), messages
    # the retry settled what the dead writer left: its deployment is marked interrupted
    assert any(m.endswith("marked interrupted") for m in messages), messages
    kinds = workload_kinds(f.settings(), f.envs)
    for env in f.envs:
        counted = kinds[f"{env}/late"]
        assert [
            counted[x]
            for x in ("postgres.role", "postgres.database", "redis.acl_user", "noop.resource")
        ] == [1, 1, 1, 1], (env, counted)
    _accounts_balance(f, postgres_admin_url, redis_url, sweeper.env)
    ledger = Ledger(f.ledger)
    assert ledger.duplicates() == []
    with open_store(f.settings()) as opened:
        things = {
            r.physical_name
            for env in f.envs
            for r in opened.snapshot(env).resources.values()
            if r.kind == "noop.resource"
        }
    assert len(things) == ENVS and ledger.orphans(things) == []
