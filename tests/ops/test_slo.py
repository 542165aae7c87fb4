"""Issue 18 part 3: SLOs from the runtime's probes and the providers' observations.

A ``development`` environment on the machine's PostgreSQL runs workload ``app`` with a
database (``postgres-database``, SLA 99.9). The ``slo.probe`` step (called directly, never
waited for) records ok observations; the workload stopped and the database dropped behind
stackyard's back make the next ones not ok; the summaries, the CLI and the catalog then say
the SLO was missed. Availability and the error budget are checked exactly on observations
inserted with controlled timestamps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from _slosupport import cli, deploy_app, observations, run

from _platform import Stage

pytestmark = pytest.mark.integration

DAY = 86400.0


def _db_instance(ws: Any, env: str) -> str:
    (uid,) = [
        u
        for u, rec in ws.records.instances(env).items()
        if rec.component.startswith("postgres-database@")
    ]
    return str(uid)


def _by_target(found: list[Any]) -> dict[str, Any]:
    return {s.target: s for s in found}


def test_probes_record_health_and_failures_miss_the_slo(
    stage: Stage,
    tmp_path: Path,
    postgres_admin_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stackyard.ops import slo
    from stackyard.ops.ticker import run_due, steps

    monkeypatch.delenv("STACKYARD_DEFAULT_SLO", raising=False)
    env = stage.name("dev")
    assert {s.name: s.every_s for s in steps()}["slo.probe"] == slo.DEFAULT_PROBE_S
    with stage.ws() as ws:
        deploy_app(ws, env, tmp_path / "app")
        db = _db_instance(ws, env)

        # before any probe: the targets are known, their availability is not (never 100%)
        before = _by_target(slo.summaries(ws, env=env))
        assert set(before) == {"workload:app", db}, before  # external servers: nothing to read
        assert before[db].samples == 0 and before[db].availability is None
        assert before[db].objective == 0.999 and before[db].met is None
        assert before["workload:app"].objective is None  # no STACKYARD_DEFAULT_SLO

        # the ticker's step, run now: one ok observation per target
        assert run_due(ws, only={"slo.probe"}) == ["slo.probe"]
        first = observations(ws, env)
        assert {(o["target"], o["ok"], o["source"]) for o in first} == {
            ("workload:app", True, "runtime"),
            (db, True, "provider"),
        }, first
        assert next(o for o in first if o["target"] == db)["component"].startswith(
            "postgres-database@"
        )

        # the workload stopped, the database dropped behind stackyard's back
        database = next(
            r
            for r in ws.store.snapshot(env).resources.values()
            if r.uid == db and r.kind == "postgres.database"
        )
        ws.runtime(env).stop("app")
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{database.physical_name}" WITH (FORCE)')
        assert slo.observe(ws, env) == 2
        second = {o["target"]: o for o in observations(ws, env)[len(first) :]}
        assert second["workload:app"]["ok"] is False
        assert "stopped" in second["workload:app"]["detail"]
        assert second[db]["ok"] is False
        assert f"{database.address}: missing" in second[db]["detail"], second[db]
        assert "postgresql://" not in second[db]["detail"]

        found = _by_target(slo.summaries(ws, env=env))
        inst = found[db]
        assert (inst.samples, inst.good, inst.availability) == (2, 1, 0.5)
        assert inst.component == "postgres-database" and inst.met is False
        assert inst.error_budget_remaining == pytest.approx(1 - 0.5 / 0.001)
        assert (found["workload:app"].availability, found["workload:app"].met) == (0.5, None)
        assert set(slo.missed(ws)) == {"postgres-database"}

        # the portal's catalog page: the version that missed carries a badge
        from stackyard.portal.pages import _adoption
        from stackyard.portal.web import _templates

        rows = [r for r in _adoption(ws, "postgres-database") or [] if r["uses"]]
        assert [r["slo_missed_in"] for r in rows] == [[env]], rows
        html = _templates().get_template("_adoption.html").render(adoption=rows)
        assert f'<strong class="slo-missed">SLO missed in {env}</strong>' in html, html

    # the CLI (as a process, and in this one for the rest): the same figures as JSON; probe;
    # the catalog flags the miss
    code, doc, err = cli("slo", "--env", env, "--window", "7d", "--output", "json")
    assert code == 0, err
    assert doc["window_s"] == 7 * DAY
    rows = {r["target"]: r for r in doc["slos"]}
    assert rows[db]["availability"] == 0.5 and rows[db]["met"] is False
    assert rows[db]["objective"] == 0.999 and rows[db]["kind"] == "instance"
    assert rows["workload:app"]["objective"] is None
    code, doc, err = run(capsys, "slo", "--component", "postgres-database", "--output", "json")
    assert code == 0, err
    assert [r["target"] for r in doc["slos"]] == [db]
    code, text, err = run(capsys, "slo", "--env", env)
    assert code == 0 and "missed" in text and "-49900%" in text, (text, err)
    code, doc, err = cli("slo", "probe", "--env", env, "--output", "json")
    assert (code, doc) == (0, {"recorded": 2}), err
    code, doc, err = run(capsys, "slo", "--window", "soon", "--output", "json")
    assert code != 0 and "--window" in doc["error"]["message"], (doc, err)

    code, doc, err = cli("catalog", "adoption", "postgres-database", "--output", "json")
    assert code == 0, err
    (comp,) = doc["components"]
    used = [v for v in comp["versions"] if v["uses"]]
    assert [v["slo"]["missed_in"] for v in used] == [[env]], used
    assert [u["slo_missed"] for v in used for u in v["uses"]] == [True]
    code, text, err = run(capsys, "catalog", "adoption", "postgres-database")
    assert code == 0 and f"SLO missed in {env}" in text, (text, err)


def test_availability_and_budget_from_observations(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackyard.errors import InvalidInputError
    from stackyard.ops import slo
    from stackyard.ops.slo import Observation

    env = stage.name("dev")
    meets, misses = "postgres.default#meets", "postgres.default#misses"
    pg = "postgres-database@1.0.0"
    with stage.ws() as ws:
        now = ws.store.now()
        at = now - 3600

        def put(target: str, component: str | None, good: int, bad: int, when: float) -> None:
            obs = [Observation(env, target, component, True, "provider")] * good
            obs += [Observation(env, target, component, False, "provider", "missing")] * bad
            assert slo.record(ws, obs, at=when) == good + bad

        put(meets, pg, 999, 1, at)  # exactly the objective: budget spent, met
        put(meets, pg, 0, 50, now - 2 * DAY)  # before a one-day window
        put(misses, pg, 99, 1, at)  # 99% against 99.9%
        put("workload:web", None, 3, 1, at)
        put("postgres-instance.default#ext", "postgres-external@1.0.0", 1, 0, at)
        put("workload:old", None, 1, 0, now - 40 * DAY)  # past the retention

        monkeypatch.setenv("STACKYARD_DEFAULT_SLO", "99")
        found = _by_target(slo.summaries(ws, env=env, window_s=DAY))
        m = found[meets]
        assert (m.samples, m.good, m.availability, m.objective) == (1000, 999, 0.999, 0.999)
        assert (m.error_budget_remaining, m.met) == (0.0, True)
        x = found[misses]
        assert (x.availability, x.met) == (0.99, False)
        assert x.error_budget_remaining == pytest.approx(-9.0)
        w = found["workload:web"]
        assert (w.availability, w.objective, w.met, w.component) == (0.75, 0.99, False, None)
        assert w.error_budget_remaining == pytest.approx(-24.0)
        ext = found["postgres-instance.default#ext"]
        assert (ext.objective, ext.error_budget_remaining, ext.met) == (None, None, None)
        assert "workload:old" not in found

        # a wider window counts the older failures
        wide = _by_target(slo.summaries(ws, env=env, window_s=3 * DAY))[meets]
        assert (wide.samples, wide.good, wide.met) == (1050, 999, False)

        # filters, the default objective unset or malformed
        assert [s.target for s in slo.summaries(ws, component="postgres-database")] == [
            meets,
            misses,
        ]
        monkeypatch.delenv("STACKYARD_DEFAULT_SLO")
        w = _by_target(slo.summaries(ws, env=env, window_s=DAY))["workload:web"]
        assert (w.objective, w.error_budget_remaining, w.met) == (None, None, None)
        monkeypatch.setenv("STACKYARD_DEFAULT_SLO", "100")
        with pytest.raises(InvalidInputError):
            slo.summaries(ws, env=env)
        with pytest.raises(InvalidInputError):
            slo.summaries(ws, env="no-such-env")

        # pruning keeps the longest window (30 days) only
        assert slo.prune(ws) == 1
        assert slo.prune(ws) == 0
        assert slo.missed(ws, window_s=DAY).keys() == {"postgres-database"}
