"""One governed road: every destroy plan that is applied, first or planned again because the
state moved after the decision, gets its own decision from the gate; a re-plan that now
violates a policy is denied and nothing is destroyed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _platform import Stage
from stackyard.engine.engine import Engine
from stackyard.environments import lifecycle
from stackyard.environments.platform import apply_dir
from stackyard.errors import PolicyDeniedError
from stackyard.model.component import ComponentManifest, ResourceTemplate
from stackyard.testing import synthetic

pytestmark = pytest.mark.integration

PRECIOUS_DENY = """package stackyard
import rego.v1
deny contains {"msg": sprintf("%s is precious", [c.address]), "rule": "precious"} if {
  some c in input.plan.changes
  c.action == "delete"
  c.before.note == "precious"
}
"""


def _move_after_first_decision(
    ws: Any, env: str, ledger: Path, note: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after the destroy's first decision is written, another writer adds a resource to
    the environment: the state moves between the decision and the apply."""
    decide = ws.governor.decide
    done: list[str] = []

    def deciding(stage: str, *args: Any, **kwargs: Any) -> Any:
        decision = decide(stage, *args, **kwargs)
        if stage == "destroy" and not done:
            done.append(decision.id)
            comp = ComponentManifest(
                name="synthetic",
                version="1.0.0",
                owner="test",
                description="A concurrent writer's resource.",
                provides="synthetic",
                resources={
                    "late": ResourceTemplate(
                        "late", "noop.resource", {"ledger": str(ledger), "note": note}
                    )
                },
            )
            other = Engine(store=ws.store, kinds=ws.kinds)
            assert other.converge(env, synthetic.graph(env, comp))[1].ok
        return decision

    monkeypatch.setattr(ws.governor, "decide", deciding)


def _decisions(ws: Any, env: str) -> list[dict[str, Any]]:
    return [d for d in ws.governance.decisions(env=env) if d["stage"] == "destroy"]


def test_a_destroy_planned_again_gets_a_second_decision(
    stage: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = stage.name("dev")
    with stage.ws() as ws:
        said: list[str] = []
        _move_after_first_decision(ws, dev, tmp_path / "ledger.jsonl", "late", monkeypatch)
        out = lifecycle.destroy(ws, dev, progress=said.append)
        assert out.deployment is not None and out.deployment.status == "succeeded"
        assert any("planning the destroy again" in m for m in said), said
        mine = [d for d in _decisions(ws, dev) if d["subject"] == out.deployment.id]
        assert len(mine) == 2, mine  # one per plan: the first, and the one applied
        assert out.deployment.decision_id == mine[0]["id"]  # newest first: the applied one
        assert out.destroyed == 1  # the late resource, which only the second plan showed
        assert not ws.store.snapshot(dev).resources
        assert ws.records.environment(dev).status == "declared"


def test_a_replanned_destroy_that_violates_a_policy_is_denied(
    stage: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = stage.name("dev")
    (stage.platform_dir / "precious.yaml").write_text(
        "apiVersion: stackyard.dev/v1\nkind: Policy\nmetadata: {name: precious}\n"
        f"spec: {{layer: environment, target: {dev}, stages: [destroy], "
        f"rego: {json.dumps(PRECIOUS_DENY)}}}\n"
    )
    ledger = tmp_path / "ledger.jsonl"
    with stage.ws() as ws:
        apply_dir(ws.platform, ws.access, stage.platform_dir, confirm=lambda _q: True)
        _move_after_first_decision(ws, dev, ledger, "precious", monkeypatch)
        try:
            with pytest.raises(PolicyDeniedError, match="denied by policy") as denied:
                lifecycle.destroy(ws, dev)
            assert any("is precious" in d.detail for d in denied.value.diagnostics)
            found = _decisions(ws, dev)
            assert [d["outcome"] for d in found[:2]] == ["deny", "allow"]  # newest first
            assert denied.value.decision_id == found[0]["id"]
            assert found[0]["subject"] == found[1]["subject"]  # the same destroy, decided twice
            # nothing was destroyed, and the environment is back to ready
            assert len(ws.store.snapshot(dev).resources) == 1
            assert ws.records.environment(dev).status == "ready"
            dep = ws.records.deployment(found[0]["subject"])
            assert dep is not None and dep.status == "denied"
        finally:  # the concurrent writer takes its resource away again, so teardown may destroy
            assert Engine(store=ws.store, kinds=ws.kinds).converge(dev, None)[1].ok
