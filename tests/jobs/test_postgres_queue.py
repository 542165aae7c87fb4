"""The PostgreSQL queue (procrastinate): jobs shared by workers, serialised per environment,
and finished by another worker when theirs is killed."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _jobrun import wait_final, worker_thread
from _jobsite import Site, score

pytestmark = pytest.mark.integration


def test_submit_get_list_cancel_and_two_workers_serialise_each_environment(pg_site: Site) -> None:
    from stackyard.jobs import JobConflictError, JobStatus, open_jobs

    settings = pg_site.settings()
    a, b = pg_site.envs
    jobs = open_jobs(settings)
    try:
        ids = {
            env: [
                jobs.submit(
                    "deploy",
                    env=env,
                    actor=settings.actor,
                    args={"env": env, "scores": {"s.yaml": score(f"w{i}", latency_ms=400)}},
                ).id
                for i in range(2)
            ]
            for env in (a, b)
        }
        blip = jobs.submit(
            "deploy",
            env=b,
            actor=settings.actor,
            args={"env": b, "scores": {"s.yaml": score("blip", create_fails=3, transient=True)}},
        )
        dropped = jobs.submit(
            "deploy", env=a, actor=settings.actor, args={"env": a, "scores": {"s.yaml": score("x")}}
        )
        assert jobs.cancel(dropped.id, actor="someone").status is JobStatus.CANCELLED
        listed = jobs.list(limit=3)
        assert [j.id for j in listed] == [dropped.id, blip.id, ids[b][1]]
        assert [j.id for j in jobs.list(limit=10, before=listed[-1].id)] == [
            ids[b][0],
            *ids[a][::-1],
        ]
        with (
            worker_thread(settings, concurrency=2, name="one", heartbeat_s=1.0, retry_base_s=0.1),
            worker_thread(settings, concurrency=2, name="two", heartbeat_s=1.0, retry_base_s=0.1),
        ):
            done = wait_final(jobs, [*ids[a], *ids[b], blip.id])
        blip_events = [e.message for e in jobs.events(blip.id)]
        with pytest.raises(JobConflictError):
            jobs.cancel(ids[a][0], actor="someone")
        again = jobs.get(dropped.id)
    finally:
        jobs.close()
    assert {j.status for j in done} == {JobStatus.SUCCEEDED}, [j.error for j in done]
    assert again is not None and again.status is JobStatus.CANCELLED and again.attempts == 0
    for env in (a, b):
        spans = sorted((j.started_at, j.finished_at) for j in done if j.env == env)
        for (_s1, f1), (s2, _f2) in itertools.pairwise(spans):
            assert f1 <= s2, f"two jobs of {env} overlapped: {spans}"
    # a transient failure went back to procrastinate and ran again
    assert done[-1].attempts == 2, blip_events
    assert any(m.startswith("retrying in ") for m in blip_events), blip_events
    overlapping = [
        (x.id, y.id)
        for x in done
        for y in done
        if x.env == a
        and y.env == b
        and x.started_at < y.finished_at
        and y.started_at < x.finished_at
    ]
    assert overlapping, "jobs of different environments never ran at the same time"
    with pg_site.ws() as ws:
        assert {w.name for w in ws.records.workloads(a)} == {"w0", "w1"}


def _worker(site: Site, name: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return _spawn(site, name, out)


def _spawn(site: Site, name: str, out: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stackyard.cli",
            "worker",
            "--name",
            name,
            "--concurrency",
            "2",
            "--heartbeat",
            "0.5s",
            "--stalled-after",
            "2s",
        ],
        env=site.environ(),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _labelled(admin_url: str, env: str) -> dict[str, list[str]]:
    like = f"stackyard:%:{env}:%"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        roles = [
            r[0]
            for r in conn.execute(
                "SELECT rolname FROM pg_authid WHERE shobj_description(oid, 'pg_authid') LIKE %s",
                (like,),
            )
        ]
        dbs = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database"
                " WHERE shobj_description(oid, 'pg_database') LIKE %s",
                (like,),
            )
        ]
    return {"roles": roles, "databases": dbs}


def test_a_worker_killed_mid_deploy_leaves_the_job_to_another_with_no_duplicate(
    pg_site: Site, tmp_path: Path, postgres_admin_url: str
) -> None:
    from stackyard.jobs import JobStatus, open_jobs
    from stackyard.providers.noop import Ledger

    settings = pg_site.settings()
    env = pg_site.envs[0]
    jobs = open_jobs(settings)
    procs = {n: _worker(pg_site, n, tmp_path / f"{n}.log") for n in ("w1", "w2")}
    try:
        job = jobs.submit(
            "deploy",
            env=env,
            actor=settings.actor,
            args={"env": env, "scores": {"s.yaml": score("app", db=True, latency_ms=1500)}},
        )
        # Kill the worker running it once the database is made and the slow thing is not.
        deadline = time.monotonic() + 60
        while not any(
            "finished" in e.message and "database" in e.message for e in jobs.events(job.id)
        ):
            assert time.monotonic() < deadline, [e.message for e in jobs.events(job.id)]
            time.sleep(0.05)
        running = jobs.get(job.id)
        assert running is not None and running.status is JobStatus.RUNNING and running.worker
        victim = running.worker.split("@", 1)[0]
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(timeout=30)
        (done,) = wait_final(jobs, [job.id])
        messages = [e.message for e in jobs.events(job.id)]
    finally:
        jobs.close()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(timeout=60)
    survivor = "w2" if victim == "w1" else "w1"
    logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace") for n in procs}
    assert done.status is JobStatus.SUCCEEDED, (done.error, messages, logs)
    assert done.attempts == 2
    assert done.worker is not None and done.worker.startswith(f"{survivor}@")
    assert any(f"taken over from {victim}@" in m for m in messages), messages
    # No duplicate: one record each, no intent left, one object each in the real world.
    with pg_site.ws() as ws:
        snap = ws.store.snapshot(env)
        assert not ws.store.intents(env)
    kinds = sorted(r.kind for r in snap.resources.values())
    assert kinds.count("postgres.database") == 1 and kinds.count("postgres.role") == 1, kinds
    assert kinds.count("noop.resource") == 1, kinds
    found = _labelled(postgres_admin_url, env)
    assert len(found["roles"]) == 1 and len(found["databases"]) == 1, found
    ledger = Ledger(pg_site.ledger)
    assert not ledger.duplicates()
    recorded = {r.physical_name for r in snap.resources.values() if r.kind == "noop.resource"}
    assert not ledger.orphans(recorded)
