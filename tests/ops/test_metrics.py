"""Issue 18 part 1, metrics: a scripted history of deployments, failures and restores gives
the expected DORA figures exactly (the service, ``/metrics`` read with prometheus-client's
own parser from a real server, the JSON API and the CLI agree), the platform's figures, label
values that are names only (no secret, id or raw path), and the access rules of a scrape."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _metricsupport import ADMIN, DEV, SECRET, History, expected_dora, make_home, samples

from _as_user import cli
from stackyard.api.context import ApiConfig

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))

from _apisupport import serving

#: Fields of the figures that move with the clock (the API and the CLI read at their own time).
CLOCK = ("at", "job_oldest_queued_age_seconds", "workers")


@dataclasses.dataclass
class Served:
    history: History
    url: str
    tokens: dict[str, str]

    def client(self, user: str | None = ADMIN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return make_home(tmp_path_factory.mktemp("metrics"))


@pytest.fixture(scope="module")
def served(history: History) -> Iterator[Served]:
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import tokens

    made = {}
    with Workspace.open(dataclasses.replace(history.settings, actor=ADMIN)) as ws:
        for user in (ADMIN, DEV):
            made[user] = tokens.create(ws, user=user, ttl="1d").token
    config = ApiConfig(auth_failures=10_000)
    with serving(history.settings, worker=False, config=config) as (url, _logs):
        yield Served(history, url, made)


def figures(history: History, **kw: Any) -> Any:
    from stackyard.environments.workspace import Workspace
    from stackyard.ops import metrics

    with Workspace.open(dataclasses.replace(history.settings, actor=ADMIN)) as ws:
        return metrics.collect(ws, **kw)


def by_key(dora: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["team"], d["workload"]): d for d in dora}


def test_the_scripted_history_gives_the_dora_figures(history: History) -> None:
    now = history.heartbeat + 1
    doc = figures(history, now=now).to_json()
    assert doc["production"] == ["production"]
    got = by_key(doc["dora"])
    want = expected_dora()
    assert set(got) == set(want)
    for key, figures_ in want.items():
        for name, value in figures_.items():
            assert got[key][name] == pytest.approx(value, rel=1e-12), (key, name)
    # a shorter window leaves the early deployments out: only d4..d6 finished in the last
    # 8.9 days (d1..d3 at day 0-1 of the history, which began 10 days ago)
    short = by_key(figures(history, now=now, window_s=int(8.9 * 86400)).to_json()["dora"])
    assert set(short) == {("team-platform", "cart")}
    assert short[("team-platform", "cart")]["succeeded"] == 1
    assert short[("team-platform", "cart")]["time_to_restore_seconds"] == 1800.0


def test_the_platform_and_service_figures(history: History) -> None:
    doc = figures(history, now=history.heartbeat + 1).to_json()
    deployments = {(r["outcome"], r["env_type"]): r["count"] for r in doc["deployments"]}
    assert deployments == {
        ("succeeded", "production"): 4,
        ("failed", "production"): 2,
        ("interrupted", "production"): 1,
        ("denied", "production"): 1,
        ("awaiting-approval", "production"): 1,
        ("succeeded", "development"): 2,
        ("succeeded", "preview"): 3,
    }
    assert {(r["type"], r["status"]): r["count"] for r in doc["environments"]} == {
        ("development", "ready"): 1,
        ("production", "ready"): 1,
        ("preview", "ready"): 1,
        ("preview", "destroyed"): 1,
    }
    life = doc["ephemeral_environment_lifetime_seconds"]
    assert (life["count"], life["sum"]) == (1, 7200.0)
    assert [b["count"] for b in life["buckets"]][:2] == [0, 1]  # 3600 < 7200 <= 14400
    ready = doc["ephemeral_environment_ready_seconds"]
    assert (ready["count"], ready["sum"]) == (2, 120.0)
    assert {r["stage"]: r["count"] for r in doc["policy_denies"]} == {"deploy": 2, "promote": 1}
    assert doc["approvals_waiting"] == 1
    assert {r["env_type"]: r["count"] for r in doc["drift_findings"]} == {
        "production": 2,
        "development": 1,
    }
    # pr-1 is destroyed: its instance is no longer adopted, nor charged
    assert {(r["component"], r["version"]): r["count"] for r in doc["component_instances"]} == {
        ("postgres-database", "1.2.0"): 2,
        ("redis-cache", "2.0.0"): 1,
    }
    assert {(r["team"], r["env"], r["currency"]): r["amount"] for r in doc["cost_monthly"]} == {
        ("team-platform", "production", "USD"): "19.75",
        ("team-checkout", "dev", "USD"): "3.00",
    }
    assert {r["status"]: r["count"] for r in doc["jobs"]} == {
        "queued": 1,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert doc["job_oldest_queued_age_seconds"] == pytest.approx(
        history.heartbeat + 1 - history.queued_at
    )
    assert doc["workers"] == 1
    # a minute without a word from it, the worker is no longer counted
    assert figures(history, now=history.heartbeat + 61).workers == 0


@pytest.mark.integration
def test_the_same_figures_on_postgresql(
    history: History, pg_databases: Callable[[], str], tmp_path: Path
) -> None:
    on_pg = make_home(tmp_path, database_url=pg_databases())
    assert on_pg.settings.database_url.startswith("postgresql")
    lite = figures(history, now=history.heartbeat + 1).to_json()
    pg = figures(on_pg, now=on_pg.heartbeat + 1).to_json()
    for doc in (lite, pg):
        for field in CLOCK:
            doc.pop(field)
    assert pg == lite


def test_prometheus_reads_metrics_from_a_running_server(served: Served) -> None:
    with served.client() as c:
        c.get("/api/v1/environments/production")  # a request with a path parameter
        c.get("/no/such/path/a1b2c3")
        answer = c.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    found = samples(text)
    want = expected_dora()
    for (team, workload), f in want.items():
        labels = (("team", team), ("workload", workload))
        assert found[("stackyard_dora_deployment_frequency_per_day", labels)] == pytest.approx(
            f["deployment_frequency_per_day"]
        )
        assert found[("stackyard_dora_lead_time_seconds", labels)] == f["lead_time_seconds"]
        assert found[("stackyard_dora_change_failure_ratio", labels)] == pytest.approx(
            f["change_failure_ratio"]
        )
        assert (
            found[("stackyard_dora_time_to_restore_seconds", labels)]
            == f["time_to_restore_seconds"]
        )
    key = (("env_type", "production"), ("outcome", "failed"))
    assert found[("stackyard_deployments_total", key)] == 2
    assert found[("stackyard_environments", (("status", "destroyed"), ("type", "preview")))] == 1
    assert found[("stackyard_ephemeral_environment_lifetime_seconds_count", ())] == 1
    assert (
        found[("stackyard_ephemeral_environment_lifetime_seconds_bucket", (("le", "+Inf"),))] == 1
    )
    assert found[("stackyard_ephemeral_environment_ready_seconds_sum", ())] == 120
    assert found[("stackyard_policy_denies_total", (("stage", "deploy"),))] == 2
    assert found[("stackyard_approvals_waiting", ())] == 1
    assert found[("stackyard_drift_findings", (("env_type", "production"),))] == 2
    adoption = (("component", "postgres-database"), ("version", "1.2.0"))
    assert found[("stackyard_component_instances", adoption)] == 2
    cost = (("currency", "USD"), ("env", "production"), ("team", "team-platform"))
    assert found[("stackyard_cost_monthly", cost)] == 19.75
    assert found[("stackyard_jobs", (("status", "queued"),))] == 1
    assert found[("stackyard_job_oldest_queued_age_seconds", ())] > 0
    assert ("stackyard_workers", ()) in found
    # the request latency, by route template: never the raw path
    routes = {dict(k[1]).get("route") for k in found if k[0].startswith("stackyard_http_")}
    assert "/api/v1/environments/{env}" in routes
    assert "(unmatched)" in routes
    assert not [r for r in routes if r and ("a1b2c3" in r or r.endswith("/production"))]
    latency = (("method", "GET"), ("route", "/api/v1/environments/{env}"), ("status", "200"))
    assert found[("stackyard_http_request_duration_seconds_count", latency)] >= 1


def test_no_label_carries_a_secret_an_id_or_free_text(served: Served) -> None:
    with served.client() as c:
        text = c.get("/metrics").text
        token = served.tokens[ADMIN]
    assert SECRET not in text
    assert token not in text and token[:12] not in text
    assert "sha256:" not in text  # no release id, digest
    found = samples(text)
    allowed = {
        "team": {"team-payments", "team-platform", "team-checkout"},
        "workload": {"checkout", "cart"},
        "env": {"dev", "production"},
        "env_type": {"development", "production", "preview"},
        "type": {"development", "production", "preview"},
    }
    for name, labels in found:
        assert name.startswith("stackyard_"), name
        for key, value in labels:
            assert len(value) < 120, (name, key, value)
            if key in allowed:
                assert value in allowed[key], (name, key, value)
            assert "job-" not in value and "dec-" not in value, (name, key, value)
    # the bounded label sets
    outcomes = {dict(k[1])["outcome"] for k in found if k[0] == "stackyard_deployments_total"}
    assert outcomes <= {
        "running", "succeeded", "failed", "planned", "cancelled", "denied",
        "awaiting-approval", "approved", "rejected", "interrupted",
    }  # fmt: skip


def test_the_cli_and_the_api_give_the_same_figures(served: Served, tmp_path: Path) -> None:
    home = served.history.home
    with served.client() as c:
        api = c.get("/api/v1/metrics").json()
    local = cli(home, "metrics", "--output", "json", user=ADMIN, STACKYARD_URL="")
    assert local.returncode == 0, local.stderr
    doc = json.loads(local.stdout)
    for field in CLOCK:
        api.pop(field)
        doc.pop(field)
    assert doc == api
    remote = cli(
        home,
        "metrics",
        "-o",
        "json",
        STACKYARD_URL=served.url,
        STACKYARD_TOKEN=served.tokens[ADMIN],
        XDG_CONFIG_HOME=str(tmp_path),
    )
    assert remote.returncode == 0, remote.stderr
    far = json.loads(remote.stdout)
    for field in CLOCK:
        far.pop(field)
    assert far == api
    text = cli(home, "metrics", user=ADMIN, STACKYARD_URL="")
    assert text.returncode == 0, text.stderr
    assert "team-payments" in text.stdout and "checkout" in text.stdout
    assert "50% (2/4)" in text.stdout  # checkout's change failure rate
    bad = cli(home, "metrics", "--window", "soon", user=ADMIN, STACKYARD_URL="")
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_a_scrape_needs_a_token_with_view_on_the_organisation(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served.client(None) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
        assert anonymous.get("/api/v1/metrics").status_code == 401
        bad = anonymous.get("/metrics", headers={"Authorization": "Bearer sy_not-a-token"})
        assert bad.status_code == 401
    with served.client(DEV) as dev:  # a developer on one environment type only
        refused = dev.get("/metrics")
        assert refused.status_code == 403
        assert "stackyard_" not in refused.text
    local = cli(served.history.home, "metrics", "-o", "json", user=DEV, STACKYARD_URL="")
    assert local.returncode == 6, local.stdout
    # opt-in anonymous scrapes (the server reads the variable at each scrape)
    monkeypatch.setenv("STACKYARD_METRICS_PUBLIC", "1")
    with served.client(None) as anonymous:
        open_ = anonymous.get("/metrics")
        assert open_.status_code == 200
        assert ("stackyard_approvals_waiting", ()) in samples(open_.text)
        # a credential that is sent is still checked
        bad = anonymous.get("/metrics", headers={"Authorization": "Bearer sy_not-a-token"})
        assert bad.status_code == 401
    with served.client(DEV) as dev:
        assert dev.get("/metrics").status_code == 403


def test_slo_summaries_become_gauges(history: History) -> None:
    from stackyard.api.routes.metrics import exposition

    base = figures(history, now=history.heartbeat + 1)
    assert base.slo == ()  # no observation recorded: no SLO gauge
    assert "stackyard_slo_" not in exposition(base).decode()
    row = {
        "env": "production",
        "target": "postgres.default#checkout.db",
        "component": "postgres-database",
        "availability_ratio": 0.995,
        "error_budget_remaining_ratio": 0.25,
    }
    found = samples(exposition(dataclasses.replace(base, slo=(row,))).decode())
    labels = (
        ("component", "postgres-database"),
        ("env", "production"),
        ("target", "postgres.default#checkout.db"),
    )
    assert found[("stackyard_slo_availability_ratio", labels)] == 0.995
    assert found[("stackyard_slo_error_budget_remaining_ratio", labels)] == 0.25
