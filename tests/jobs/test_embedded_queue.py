"""The embedded queue (a SQLite home): jobs submitted, run by an in-process worker, read back."""

from __future__ import annotations

import itertools

import pytest
from _jobrun import wait_final, worker_thread
from _jobsite import Site, score

pytestmark = pytest.mark.integration


def test_a_deploy_job_runs_as_its_actor_and_keeps_the_cli_result(sqlite_site: Site) -> None:
    from stackyard.jobs import JobStatus, open_jobs

    settings = sqlite_site.settings()
    env = sqlite_site.envs[0]
    jobs = open_jobs(settings)
    try:
        job = jobs.submit(
            "deploy",
            env=None,
            actor=settings.actor,
            args={"env": env, "scores": {"score.yaml": score("w1", note="one")}},
        )
        assert job.status is JobStatus.QUEUED and job.env == env and job.attempts == 0
        assert jobs.get(job.id) == job
        with worker_thread(settings, concurrency=1, heartbeat_s=0.5):
            (done,) = wait_final(jobs, [job.id])
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert done.attempts == 1 and done.started_at and done.finished_at
        assert done.result is not None
        assert done.result["deployment"]["status"] == "succeeded"
        assert done.result["deployment"]["actor"] == settings.actor
        events = jobs.events(job.id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        messages = [e.message for e in events]
        assert messages[0] == "queued" and messages[-1] == "succeeded"
        assert any(m.startswith("attempt 1 on ") for m in messages)
        assert any("finished" in m and "thing" in m for m in messages), messages
        assert [e.seq for e in jobs.events(job.id, after=2)] == [e.seq for e in events[2:]]
        assert [j.id for j in jobs.list(env=env)] == [job.id]
    finally:
        jobs.close()


def _intervals(jobs: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return sorted((j.started_at, j.finished_at) for j in jobs)


def test_jobs_of_one_environment_never_overlap_and_other_environments_run_meanwhile(
    sqlite_site: Site,
) -> None:
    from stackyard.jobs import JobStatus, open_jobs

    settings = sqlite_site.settings()
    a, b = sqlite_site.envs
    jobs = open_jobs(settings)
    try:
        submitted = {
            env: [
                jobs.submit(
                    "deploy",
                    env=env,
                    actor=settings.actor,
                    args={"env": env, "scores": {"s.yaml": score(f"w{i}", latency_ms=400)}},
                ).id
                for i in range(3)
            ]
            for env in (a, b)
        }
        with worker_thread(settings, concurrency=4, heartbeat_s=0.5):
            done = wait_final(jobs, submitted[a] + submitted[b])
    finally:
        jobs.close()
    assert {j.status for j in done} == {JobStatus.SUCCEEDED}, [j.error for j in done]
    by_env = {env: [j for j in done if j.env == env] for env in (a, b)}
    for env, ran in by_env.items():
        spans = _intervals(ran)
        for (_s1, f1), (s2, _f2) in itertools.pairwise(spans):
            assert f1 <= s2, f"two jobs of {env} overlapped: {spans}"
        # the queue keeps each environment's order
        assert [j.id for j in sorted(ran, key=lambda j: j.started_at)] == submitted[env]
    overlapping = [
        (x.id, y.id)
        for x in by_env[a]
        for y in by_env[b]
        if x.started_at < y.finished_at and y.started_at < x.finished_at
    ]
    assert overlapping, "jobs of different environments never ran at the same time"


def test_a_queued_job_can_be_cancelled_and_never_runs_but_a_finished_one_cannot(
    sqlite_site: Site,
) -> None:
    from stackyard.jobs import JobConflictError, JobNotFoundError, JobStatus, open_jobs

    settings = sqlite_site.settings()
    env = sqlite_site.envs[0]
    jobs = open_jobs(settings)
    try:
        kept = jobs.submit(
            "deploy",
            env=env,
            actor=settings.actor,
            args={"env": env, "scores": {"s.yaml": score("kept")}},
        )
        dropped = jobs.submit(
            "deploy",
            env=env,
            actor=settings.actor,
            args={"env": env, "scores": {"s.yaml": score("dropped")}},
        )
        cancelled = jobs.cancel(dropped.id, actor="someone")
        assert cancelled.status is JobStatus.CANCELLED and cancelled.cancel_requested
        with pytest.raises(JobConflictError, match="cancelled"):
            jobs.cancel(dropped.id, actor="someone")
        with pytest.raises(JobNotFoundError):
            jobs.cancel("job-nope", actor="someone")
        with worker_thread(settings, concurrency=2, heartbeat_s=0.5):
            (done,) = wait_final(jobs, [kept.id])
        assert done.status is JobStatus.SUCCEEDED
        with pytest.raises(JobConflictError, match="succeeded"):
            jobs.cancel(kept.id, actor="someone")
        after = jobs.get(dropped.id)
        assert after is not None and after.status is JobStatus.CANCELLED
        assert after.attempts == 0 and after.started_at is None
        assert [e.message for e in jobs.events(dropped.id)] == [
            "queued",
            "cancelled",
            "cancelled by someone",
        ]
    finally:
        jobs.close()
    with sqlite_site.ws() as ws:
        assert {w.name for w in ws.records.workloads(env)} == {"kept"}


def test_a_transient_failure_is_retried_and_a_permanent_one_fails_with_its_diagnostics(
    sqlite_site: Site,
) -> None:
    from stackyard.jobs import JobStatus, open_jobs

    settings = sqlite_site.settings()
    a, b = sqlite_site.envs
    jobs = open_jobs(settings)
    try:
        # three failed creates: the engine's own two retries are not enough, the job's are
        blip = jobs.submit(
            "deploy",
            env=a,
            actor=settings.actor,
            args={"env": a, "scores": {"s.yaml": score("blip", create_fails=3, transient=True)}},
        )
        broken = jobs.submit(
            "deploy",
            env=b,
            actor=settings.actor,
            args={"env": b, "scores": {"s.yaml": score("broken", create_fails="always")}},
        )
        refused = jobs.submit(
            "deploy",
            env=b,
            actor=settings.actor,
            args={"env": b, "scores": {"s.yaml": "apiVersion: score.dev/v1b1\nmetadata: {}\n"}},
        )
        with worker_thread(settings, concurrency=2, heartbeat_s=0.5, retry_base_s=0.1):
            blip_done, broken_done, refused_done = wait_final(
                jobs, [blip.id, broken.id, refused.id]
            )
        blip_events = [e.message for e in jobs.events(blip.id)]
    finally:
        jobs.close()
    assert blip_done.status is JobStatus.SUCCEEDED, blip_done.error
    assert blip_done.attempts == 2
    assert any(m.startswith("retrying in ") for m in blip_events), blip_events
    assert any(m.startswith("attempt 2 on ") for m in blip_events), blip_events

    assert broken_done.status is JobStatus.FAILED and broken_done.attempts == 1
    err = broken_done.error
    assert err is not None and err["exit_code"] == 7 and err["type"] == "ApplyFailedError"
    assert "thing" in err["detail"] and err["hint"]

    assert refused_done.status is JobStatus.FAILED and refused_done.attempts == 1
    err = refused_done.error
    assert err is not None and err["exit_code"] == 2 and err["diagnostics"], err


def test_environment_jobs_run_as_their_actor_under_rbac(sqlite_site: Site) -> None:
    from stackyard.jobs import JobStatus, open_jobs

    settings = sqlite_site.settings()
    name = f"{sqlite_site.prefix}-c"
    create = {"name": name, "type": "jobs-lite", "owner": "team-checkout", "ttl": "2h"}
    jobs = open_jobs(settings)
    try:
        stranger = jobs.submit("env.create", env=None, actor="stranger", args=create)
        with worker_thread(settings, concurrency=1, heartbeat_s=0.5):
            (denied,) = wait_final(jobs, [stranger.id])
            made = jobs.submit("env.create", env=None, actor=settings.actor, args=create)
            (created,) = wait_final(jobs, [made.id])
            gone = jobs.submit("env.destroy", env=None, actor=settings.actor, args={"name": name})
            reap = jobs.submit("reap", env=None, actor=settings.actor, args={})
            destroyed, reaped = wait_final(jobs, [gone.id, reap.id])
    finally:
        jobs.close()
    assert denied.status is JobStatus.FAILED and denied.env == name
    assert denied.error is not None and denied.error["exit_code"] == 6, denied.error
    assert created.status is JobStatus.SUCCEEDED, created.error
    assert created.result is not None and created.result["created"] is True
    assert created.result["environment"]["name"] == name
    assert destroyed.status is JobStatus.SUCCEEDED, destroyed.error
    assert reaped.status is JobStatus.SUCCEEDED and reaped.env is None, reaped.error
    assert reaped.result is not None and reaped.result["reaped"] == []
    with sqlite_site.ws() as ws:
        env = ws.records.environment(name)
        assert env is not None and env.status == "destroyed"
        audited = [(e.actor, e.action, e.result) for e in ws.governance.audit()]
    assert ("stranger", "env.create", "denied") in audited
    assert (settings.actor, "env.create", "ok") in audited
