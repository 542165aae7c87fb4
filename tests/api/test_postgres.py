"""The server on a shared PostgreSQL store (``STACKYARD_DATABASE_URL=postgresql://…``): reads,
and a deploy run as a job by a worker on the PostgreSQL queue."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _apisupport import ADMIN, Live, prepare, serving, teardown

from _lite import sleeper_score

pytestmark = pytest.mark.integration


def test_serves_a_postgresql_store_with_its_queue(
    volume_template: Path, tmp_path: Path, sweeper: Any, pg_databases: Callable[[], str]
) -> None:
    url = pg_databases()
    settings = prepare(tmp_path / "home", volume_template, sweeper.env, database_url=url)
    assert settings.database_url.startswith("postgresql")
    try:
        with serving(settings, worker=True) as (base, logs):
            live = Live(base, tmp_path / "home", settings, sweeper.env, logs)
            with live.client(ADMIN) as c:
                assert c.get("/readyz").json()["checks"] == {"store": "ok", "queue": "ok"}
                names = [e["name"] for e in c.get("/api/v1/environments").json()["items"]]
                assert names == [sweeper.env]
                accepted = c.post(
                    f"/api/v1/environments/{sweeper.env}/deploy",
                    json={"scores": {"score.yaml": sleeper_score("sleeper")}},
                )
                assert accepted.status_code == 202, accepted.text
                job = live.wait_job(c, accepted.json()["id"])
                assert job["status"] == "succeeded", job
                status = c.get(f"/api/v1/environments/{sweeper.env}/status").json()
                assert "sleeper" in status["workloads"]
            assert (
                url.split("@")[0] not in logs.text() or ":" not in url.split("//")[1].split("@")[0]
            )
    finally:
        teardown(settings)
