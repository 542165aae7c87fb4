"""The rules a job obeys before and while it runs: its arguments, its moves, its claim."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from stackyard.errors import InvalidInputError, InvalidTransitionError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("kind", "args", "reason"),
    [
        ("launch", {}, "an unknown kind"),
        ("deploy", {"scores": {"s.yaml": "x"}}, "a deploy names its environment"),
        ("deploy", {"env": "dev"}, "a deploy needs Score files or a release"),
        ("deploy", {"env": "dev", "scores": {"s": "x"}, "release": "r"}, "not both"),
        ("env.destroy", {"name": "dev", "force": True}, "an argument the kind does not take"),
        ("promote", {"release": "r"}, "a promotion names its target"),
    ],
    ids=["unknown-kind", "deploy-no-env", "deploy-nothing", "deploy-both", "unknown-arg", "no-to"],
)
def test_bad_arguments_are_refused_at_submit(kind: str, args: dict, reason: str) -> None:  # type: ignore[type-arg]
    from stackyard.jobs.handlers import check_args

    with pytest.raises(InvalidInputError):
        check_args(kind, args)


@pytest.mark.parametrize(
    "name", ["../score.yaml", "/etc/passwd", "a/b.yaml", "..", "", "a\\b.yaml"], ids=repr
)
def test_a_file_name_never_leaves_the_jobs_folder(name: str) -> None:
    from stackyard.jobs.handlers import _safe_name

    with pytest.raises(InvalidInputError, match="Invalid file name"):
        _safe_name(name)


def test_the_job_lifecycle_allows_only_its_moves() -> None:
    from stackyard.jobs.model import JOB, JobStatus

    assert JOB.allows(JobStatus.RUNNING, JobStatus.QUEUED)  # a retry
    assert JOB.allows(JobStatus.RUNNING, JobStatus.RUNNING)  # a takeover
    for final in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        with pytest.raises(InvalidTransitionError):
            JOB.check(final, JobStatus.QUEUED)
    with pytest.raises(InvalidTransitionError):
        JOB.check(JobStatus.QUEUED, JobStatus.SUCCEEDED)


def _row(id_: str, env: str | None, status: str, **kw: float | None) -> SimpleNamespace:
    return SimpleNamespace(
        id=id_, env=env, status=status, not_before=kw.get("not_before"), heartbeat_at=kw.get("beat")
    )


@pytest.mark.parametrize(
    ("rows", "expected", "reason"),
    [
        (
            [
                _row("1", "a", "running", beat=99.0),
                _row("2", "a", "queued"),
                _row("3", "b", "queued"),
            ],
            "3",
            "a busy env waits",
        ),
        (
            [
                _row("1", "a", "queued", not_before=150.0),
                _row("2", "a", "queued"),
                _row("3", None, "queued"),
            ],
            "3",
            "an env's oldest job goes first, even in backoff",
        ),
        (
            [_row("1", "a", "running", beat=10.0), _row("2", "b", "queued")],
            "1",
            "a stalled job is taken over first",
        ),
        ([_row("1", "a", "queued", not_before=99.0)], "1", "a backoff that is over"),
        ([_row("1", "a", "running", beat=99.0)], None, "nothing to do"),
    ],
    ids=["busy-env", "fifo", "stalled", "backoff-over", "idle"],
)
def test_the_embedded_claim_picks(
    rows: list[SimpleNamespace], expected: str | None, reason: str
) -> None:
    from stackyard.jobs.store import _runnable

    assert _runnable(rows, now=100.0, stalled_after_s=30.0) == expected, reason


@pytest.mark.integration
def test_a_running_job_of_a_dead_worker_is_taken_over_on_sqlite(home: Path) -> None:
    import sqlalchemy as sa

    from stackyard.jobs.store import JobStore, jobs
    from stackyard.settings import Settings
    from stackyard.state import open_store

    store = open_store(Settings.load())
    try:
        rows = JobStore(store)
        job = rows.insert("reap", env=None, actor="me", teams=(), args={}, max_attempts=3)
        first = rows.claim(worker="w1@elsewhere (pid 1)", stalled_after_s=30.0)
        assert first is not None and first.job.id == job.id and first.taken_over_from is None
        assert rows.claim(worker="w2@elsewhere (pid 2)", stalled_after_s=30.0) is None
        with store.writing() as conn:  # w1 went quiet a minute ago
            conn.execute(
                jobs.update().values(heartbeat_at=sa.func.coalesce(jobs.c.heartbeat_at, 0) - 60)
            )
        second = rows.claim(worker="w2@elsewhere (pid 2)", stalled_after_s=30.0)
        assert second is not None and second.taken_over_from == "w1@elsewhere (pid 1)"
        assert second.job.attempts == 2 and second.job.worker == "w2@elsewhere (pid 2)"
        rows.succeed(job.id, {"ok": True}, worker="w1@elsewhere (pid 1)")  # the dead one is late
        rows.succeed(job.id, {"done": 1}, worker="w2@elsewhere (pid 2)")
        final = rows.require(job.id)
        assert final.status == "succeeded" and final.result == {"done": 1}
    finally:
        store.close()


def test_a_job_runs_with_its_actor_and_teams_never_the_workers(tmp_path: Path) -> None:
    from stackyard.jobs.handlers import _as_actor
    from stackyard.jobs.model import Job, JobStatus
    from stackyard.settings import Settings

    worker = Settings.load(home=tmp_path, actor="worker-account", environ={})
    job = Job(
        id="job-1",
        kind="reap",
        env=None,
        actor="alice",
        teams=("team-checkout",),
        status=JobStatus.RUNNING,
        attempts=1,
        created_at="",
        started_at=None,
        finished_at=None,
        args={},
        result=None,
        error=None,
    )
    acting = _as_actor(worker, job)
    assert acting.actor == "alice"
    assert getattr(acting, "teams", ("team-checkout",)) == ("team-checkout",)
    assert acting.home == worker.home and acting.database_url == worker.database_url
