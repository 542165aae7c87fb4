"""Governance through the real flows, on the machine's PostgreSQL and Redis: the example
policies firing and passing, approvals end to end (self-approval refused, stale plans
re-planned), layers that cannot lift a deny, the audit chain, and canary secrets."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from _as_user import cli
from _platform import EXAMPLES, Stage, write_platform
from stackyard.errors import PermissionDeniedError

pytestmark = pytest.mark.integration

HELLO = EXAMPLES / "hello" / "score.yaml"
ADMIN = pwd.getpwuid(os.geteuid()).pw_name


def sy(home: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    # Acting as someone else needs the test-only harness: the product takes the OS account.
    return cli(home, *args, user=user)


class Gov(Stage):
    """A stage with the example policies, and helpers to act as someone."""

    def as_user(self, user: str) -> Any:
        from stackyard.environments.workspace import Workspace
        from stackyard.settings import Settings

        return Workspace.open(Settings.load(actor=user))

    def grant(self, role: str, *, user: str, env: str | None = None) -> None:
        args = ["access", "grant", role, "--user", user] + (["--env", env] if env else [])
        res = sy(self.home, *args)
        assert res.returncode == 0, res.stderr


def _make(
    library_home: Path, tmp_path: Path, prefix: str, pg: str, rd: str, edit: Any = None
) -> Gov:
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir

    plat = write_platform(tmp_path / "platform", prefix, pg_url=pg, redis_url=rd, policies=True)
    if edit is not None:
        edit(plat)
    g = Gov(library_home, prefix, plat)
    with g.ws() as ws:
        apply_dir(ws.platform, ws.access, plat, confirm=lambda _q: True)
        lifecycle.create(ws, g.name("dev"))
    return g


@pytest.fixture
def gov(
    library_home: Path, tmp_path: Path, sweeper, postgres_admin_url: str, redis_url: str
) -> Iterator[Gov]:  # type: ignore[no-untyped-def]
    g = _make(library_home, tmp_path, sweeper.env, postgres_admin_url, redis_url)
    try:
        yield g
    finally:
        g.teardown()


def test_example_policies_pass_their_rego_tests() -> None:
    from stackyard.policy.testing import run_dir

    results = run_dir(EXAMPLES / "platform" / "policies")
    assert results and all(r.passed for r in results), [r for r in results if not r.passed]
    files = {r.file.split("/")[-1] for r in results}
    assert len(files) == 6  # one test file per example policy


# -- production approval, end to end ---------------------------------------------------------


def test_production_approval_end_to_end_with_self_approval_refused(gov: Gov) -> None:
    from stackyard.environments import approvals, lifecycle
    from stackyard.environments.deploy import deploy_files

    prod = gov.name("prod")
    with gov.ws() as ws:
        lifecycle.create(ws, prod)
    gov.grant("developer", user="alice")
    gov.grant("approver", user="alice", env=prod)
    gov.grant("approver", user="bob", env=prod)
    with gov.as_user("alice") as ws:
        first = deploy_files(ws, [HELLO], prod, confirm=lambda _p: True)
        assert first.deployment.status == "succeeded"  # creates need no approval
        parked = lifecycle.remove_workload(ws, prod, "hello")
        dep_id = parked.deployment.id
        assert parked.deployment.status == "awaiting-approval"
        assert {r.policy for r in parked.decision.of("approval")} == {"production-approval"}
        assert ws.runtime(prod).status("hello").state == "ready"  # nothing applied
        assert any(uid.startswith("postgres.default#hello") for uid in ws.records.instances(prod))
        with pytest.raises(PermissionDeniedError, match="may not approve"):
            approvals.approve(ws, dep_id)
    res = sy(gov.home, "approve", dep_id, user="carol")
    assert res.returncode == 6 and "may not approve" in res.stderr  # no approver role
    listed = json.loads(sy(gov.home, "approvals", "--output", "json", user="bob").stdout)
    assert [d["id"] for d in listed] == [dep_id]
    res = sy(
        gov.home,
        "approve",
        dep_id,
        "--comment",
        "ok, retiring hello",
        "--output",
        "json",
        user="bob",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["deployment"]["status"] == "succeeded"
    with gov.ws() as ws:
        assert not any(
            uid.startswith("postgres.default#hello") for uid in ws.records.instances(prod)
        )
        assert ws.runtime(prod).names() == []
        assert ws.governance.approvals(dep_id)[0]["actor"] == "bob"
        actions = [(e.actor, e.action, e.result) for e in ws.governance.audit()]
        assert ("alice", "approve", "denied") in actions and ("bob", "approve", "ok") in actions
        logged = ws.governance.decisions(env=prod)
        assert any(r["rule"] == "destructive-change" for d in logged for r in d["results"])


def test_a_stale_plan_is_replanned_after_approval_never_applied_stale(
    gov: Gov, tmp_path: Path
) -> None:
    from stackyard.environments import approvals, lifecycle
    from stackyard.environments.deploy import deploy_files

    prod = gov.name("prod")
    with gov.ws() as ws:
        lifecycle.create(ws, prod)
    gov.grant("approver", user="bob", env=prod)
    with gov.ws() as ws:
        deploy_files(ws, [HELLO], prod, confirm=lambda _p: True)
        parked = lifecycle.remove_workload(ws, prod, "hello")
        assert parked.deployment.status == "awaiting-approval"
        planned_serial = parked.plan.serial
        # meanwhile another workload lands: the state moves on
        deploy_files(ws, [EXAMPLES / "shared" / "api.score.yaml"], prod, confirm=lambda _p: True)
        assert ws.store.snapshot(prod).serial != planned_serial
    with gov.as_user("bob") as ws:
        done = approvals.approve(ws, parked.deployment.id)
        assert done.deployment.status == "succeeded"
        assert done.plan.serial != planned_serial  # re-planned against the state of now
        live = set(ws.records.instances(prod))
        assert "postgres.default#orders" in live  # the deploy that landed meanwhile is kept
        assert not any(u.startswith("postgres.default#hello") for u in live)

    # a plan whose changes differ after the wait goes back for a new approval
    bigger = yaml.safe_load(HELLO.read_text())
    bigger["resources"]["extra"] = {"type": "volume"}
    folder = tmp_path / "hello2"
    folder.mkdir()
    shutil.copy(EXAMPLES / "hello" / "app.py", folder / "app.py")
    (folder / "score.yaml").write_text(yaml.safe_dump(bigger))
    with gov.ws() as ws:
        deploy_files(ws, [HELLO], prod, confirm=lambda _p: True)
        parked = lifecycle.remove_workload(ws, prod, "hello")
        deploy_files(ws, [folder / "score.yaml"], prod, confirm=lambda _p: True)  # adds a volume
    with gov.as_user("bob") as ws:
        again = approvals.approve(ws, parked.deployment.id)
        assert again.deployment.status == "awaiting-approval"  # new changes: approve again
        assert any(
            c.address.startswith("volume.default#hello.extra") and c.action.value == "delete"
            for c in again.plan.changes
        )
        final = approvals.approve(ws, parked.deployment.id)
        assert final.deployment.status == "succeeded"
        assert not any(u.startswith("volume.default#hello") for u in ws.records.instances(prod))


def test_rejected_deployments_apply_nothing(gov: Gov) -> None:
    from stackyard.environments import approvals, lifecycle
    from stackyard.environments.deploy import deploy_files

    prod = gov.name("prod")
    with gov.ws() as ws:
        lifecycle.create(ws, prod)
        deploy_files(ws, [HELLO], prod, confirm=lambda _p: True)
        parked = lifecycle.remove_workload(ws, prod, "hello")
    gov.grant("approver", user="bob", env=prod)
    with gov.as_user("bob") as ws:
        rejected = approvals.reject(ws, parked.deployment.id, comment="not now")
        assert rejected.status == "rejected"
        assert ws.runtime(prod).status("hello").state == "ready"
    res = sy(gov.home, "approve", parked.deployment.id, user="bob")
    assert res.returncode == 2 and "rejected" in res.stderr


# -- each example policy, firing and passing through the CLI ---------------------------------


def test_ephemeral_ttl_policy(
    library_home: Path, tmp_path: Path, sweeper, postgres_admin_url: str, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    def longer_maximum(plat: Path) -> None:  # so the policy, not the type's cap, is what stops it
        f = plat / "environment-types.yaml"
        f.write_text(
            f.read_text().replace(
                "ttl: {default: 4h, maximum: 72h}", "ttl: {default: 4h, maximum: 168h}"
            )
        )

    g = _make(library_home, tmp_path, sweeper.env, postgres_admin_url, redis_url, longer_maximum)
    try:
        pr = f"{g.prefix}-pr"
        denied = sy(
            g.home,
            "env",
            "create",
            pr,
            "--from",
            g.name("dev"),
            "--type",
            "ephemeral",
            "--ttl",
            "100h",
        )
        assert denied.returncode == 5, denied.stderr
        assert "72" in denied.stderr and "ephemeral-ttl" in denied.stderr
        ok = sy(
            g.home,
            "env",
            "create",
            pr,
            "--from",
            g.name("dev"),
            "--type",
            "ephemeral",
            "--ttl",
            "4h",
        )
        assert ok.returncode == 0, ok.stderr
        assert sy(g.home, "env", "extend", pr, "--ttl", "100h").returncode == 5
        assert sy(g.home, "env", "extend", pr, "--ttl", "48h").returncode == 0
    finally:
        g.teardown()


def test_environment_owner_policy(gov: Gov) -> None:
    name = f"{gov.prefix}-x"
    denied = sy(gov.home, "env", "create", name, "--type", "development", "--output", "json")
    assert denied.returncode == 5
    assert any("owner" in d["detail"] for d in json.loads(denied.stdout)["diagnostics"])
    ok = sy(gov.home, "env", "create", name, "--type", "development", "--owner", "team-checkout")
    assert ok.returncode == 0, ok.stderr


def test_no_deprecated_component_in_production(gov: Gov) -> None:
    prod, dev = gov.name("prod"), gov.name("dev")
    assert sy(gov.home, "env", "create", prod).returncode == 0
    res = sy(gov.home, "component", "deprecate", "postgres-database@1.0.0", "--reason", "use 2.x")
    assert res.returncode == 0, res.stderr
    denied = sy(gov.home, "deploy", str(HELLO), "--env", prod, "--yes")
    assert denied.returncode == 5, denied.stderr
    assert "deprecated" in denied.stderr and "production-components" in denied.stderr
    allowed = sy(gov.home, "deploy", str(HELLO), "--env", dev, "--yes")
    assert allowed.returncode == 0, allowed.stderr  # the policy is production's only


def test_only_attested_builds_in_staging(gov: Gov, tmp_path: Path) -> None:
    from stackyard import library
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.providers.registry import ProviderRegistry

    staging, dev = gov.name("staging"), gov.name("dev")
    assert sy(gov.home, "env", "create", staging).returncode == 0
    # local-volume 1.1.0, signed by a key this home does not trust
    src = tmp_path / "local-volume"
    shutil.copytree(library.path("local-volume"), src)
    manifest = src / "component.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", "version: 1.1.0"))
    stranger = tmp_path / "stranger"
    Keyring(stranger).generate()
    registry = open_registry(None, home=gov.home)
    try:
        publish(
            src,
            registry=registry,
            keyring=Keyring(stranger),
            kinds=ProviderRegistry.discover(),
            run_component_tests=False,
        )
    finally:
        registry.close()
    # Resolution itself passes over the untrusted build (environment types require attested
    # builds by default), so the attested-builds policy has nothing left to deny: staging
    # runs the attested 1.0.0 and says why 1.1.0 was skipped.
    resolved = sy(gov.home, "deploy", str(HELLO), "--env", staging, "--yes")
    assert resolved.returncode == 0, resolved.stderr
    assert "local-volume@1.1.0" in resolved.stderr and "not attested" in resolved.stderr
    allowed = sy(gov.home, "deploy", str(HELLO), "--env", dev, "--yes")
    assert allowed.returncode == 0, allowed.stderr


def test_budget_policy(
    library_home: Path, tmp_path: Path, sweeper, postgres_admin_url: str, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    def tight_budget(plat: Path) -> None:
        f = plat / "policies" / "budget.rego"
        text = f.read_text()
        assert '"ephemeral": 25' in text
        f.write_text(text.replace('"ephemeral": 25', '"ephemeral": 3'))

    g = _make(library_home, tmp_path, sweeper.env, postgres_admin_url, redis_url, tight_budget)
    try:
        pr = f"{g.prefix}-pr"
        assert (
            sy(
                g.home, "env", "create", pr, "--from", g.name("dev"), "--type", "ephemeral"
            ).returncode
            == 0
        )
        denied = sy(g.home, "deploy", str(HELLO), "--env", pr, "--yes")
        assert denied.returncode == 5, denied.stderr
        assert "budget" in denied.stderr and "5.00" in denied.stderr
        ok = sy(g.home, "deploy", str(HELLO), "--env", g.name("dev"), "--yes")
        assert ok.returncode == 0, ok.stderr
        cost = json.loads(
            sy(
                g.home, "cost", "--env", g.name("dev"), "--by", "workload", "--output", "json"
            ).stdout
        )
        assert (
            cost["total"] == "5.00"
            and {i["workload"]: i["monthly"] for i in cost["items"]}["hello"] == "5.00"
        )
    finally:
        g.teardown()


# -- layers ----------------------------------------------------------------------------------

ORG_DENY = """package stackyard
import rego.v1
deny contains {"msg": sprintf("no local directories (%s)", [c.address]), "rule": "no-dirs"} if {
  some c in input.plan.changes
  c.kind == "local.directory"
  c.action == "create"
}
"""
ENV_LIFT = """package stackyard
import rego.v1
# An environment-layer attempt to lift the organisation's deny: it has its own namespace,
# so none of these reach the organisation policy's results.
deny := set()
default allow := true
allow_self_approval := true
warn contains "this environment tried to lift a deny" if true
"""


def test_a_lower_layer_cannot_lift_an_upper_layers_deny(gov: Gov, tmp_path: Path) -> None:
    dev = gov.name("dev")
    docs = f"""
---
apiVersion: stackyard.dev/v1
kind: Policy
metadata: {{name: org-no-dirs}}
spec: {{layer: organisation, stages: [plan], rego: {json.dumps(ORG_DENY)}}}
---
apiVersion: stackyard.dev/v1
kind: Policy
metadata: {{name: dev-lift}}
spec: {{layer: environment, target: {dev}, stages: [plan], rego: {json.dumps(ENV_LIFT)}}}
"""
    (gov.platform_dir / "layers.yaml").write_text(docs)
    assert sy(gov.home, "platform", "apply", str(gov.platform_dir), "--yes").returncode == 0
    res = sy(gov.home, "deploy", str(HELLO), "--env", dev, "--yes", "--output", "json")
    assert res.returncode == 5
    out = json.loads(res.stdout)
    with gov.ws() as ws:
        decision = ws.governance.decisions(decision_id=out["decision"])[0]
    kinds = {(r["policy"], r["kind"], r["layer"]) for r in decision["results"]}
    assert ("org-no-dirs", "deny", "organisation") in kinds
    assert ("dev-lift", "warn", "environment") in kinds
    assert decision["outcome"] == "deny"


# -- audit -----------------------------------------------------------------------------------


def test_audit_chain_detects_an_edited_row(gov: Gov) -> None:
    sy(
        gov.home,
        "env",
        "create",
        f"{gov.prefix}-a",
        "--type",
        "development",
        "--owner",
        "team-checkout",
    )
    sy(gov.home, "env", "destroy", f"{gov.prefix}-a", "--yes")
    ok = sy(gov.home, "audit", "verify", "--output", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stdout
    events = json.loads(sy(gov.home, "audit", "--output", "json").stdout)
    assert {"env.create", "env.destroy", "platform.apply"} <= {e["action"] for e in events}
    db = sqlite3.connect(gov.home / "state.db")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
        db.execute("DROP TRIGGER audit_events_no_update")  # an attacker with file access
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
        db.commit()
    finally:
        db.close()
    bad = sy(gov.home, "audit", "verify", "--output", "json")
    assert bad.returncode == 8  # a failed verification
    report = json.loads(bad.stdout)
    assert report == {**report, "ok": False, "broken_at": 2} and "edited" in report["reason"]


# -- secrets ---------------------------------------------------------------------------------

CANARY_PARAM = "canary-param-7f3e9a51c2"
CANARY_COMPONENT = """\
apiVersion: stackyard.dev/v1
kind: Component
metadata:
  name: canary-holder
  version: 1.0.0
  owner: team-platform
  description: Holds a secret token (a test double built on noop.resource).
  lifecycle: production
spec:
  provides: {type: canary}
  sla: {availability: "99.0", support: best-effort}
  inputs:
    type: object
    properties:
      token: {type: string, writeOnly: true}
    required: [token]
    additionalProperties: false
  resources:
    thing:
      kind: noop.resource
      config: {secret: "${inputs.token}"}
  outputs:
    token: {value: "${resources.thing.secret}", secret: true}
    id: ${resources.thing.id}
  cost: {monthly: "0.00", currency: USD}
"""
ECHO_INPUT = """package stackyard
import rego.v1
warn contains json.marshal(input) if true
"""


def test_canary_secrets_never_reach_decisions_or_the_audit_log(
    gov: Gov, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.environments.deploy import deploy_files
    from stackyard.environments.inspect import outputs
    from stackyard.policy import decision as decision_mod
    from stackyard.providers.registry import ProviderRegistry

    monkeypatch.setenv("STACKYARD_NOOP_LEDGER", str(tmp_path / "ledger"))
    comp = tmp_path / "canary-holder"
    comp.mkdir()
    (comp / "component.yaml").write_text(CANARY_COMPONENT)
    (comp / "README.md").write_text("# canary-holder\\n\\nA test double.\\n")
    registry = open_registry(None, home=gov.home)
    try:
        publish(
            comp,
            registry=registry,
            keyring=Keyring(gov.home),
            kinds=ProviderRegistry.discover(),
            run_component_tests=False,
        )
    finally:
        registry.close()
    dev = gov.name("dev")
    extra = f"""
---
apiVersion: stackyard.dev/v1
kind: Policy
metadata: {{name: echo-input}}
spec: {{layer: organisation, stages: [plan, environment, destroy, promote], rego: {json.dumps(ECHO_INPUT)}}}
"""
    (gov.platform_dir / "echo.yaml").write_text(extra)
    types = gov.platform_dir / "environment-types.yaml"
    types.write_text(
        types.read_text().replace(
            "    - {type: volume, component: local-volume@^1}",
            "    - {type: volume, component: local-volume@^1}\n    - {type: canary, component: canary-holder@^1}",
        )
    )
    with gov.ws() as ws:
        from stackyard.environments.platform import apply_dir

        apply_dir(ws.platform, ws.access, gov.platform_dir, confirm=lambda _q: True)
    score = yaml.safe_load(HELLO.read_text())
    score["resources"]["vault"] = {"type": "canary", "params": {"token": CANARY_PARAM}}
    score["containers"]["web"]["variables"]["TOKEN"] = "${resources.vault.token}"
    folder = tmp_path / "app"
    folder.mkdir()
    shutil.copy(EXAMPLES / "hello" / "app.py", folder / "app.py")
    (folder / "score.yaml").write_text(yaml.safe_dump(score))
    seen: list[str] = []
    real = decision_mod.PolicySet.evaluate

    def capture(self: Any, stage: str, document: Any, **kw: Any) -> Any:
        seen.append(json.dumps(document))
        return real(self, stage, document, **kw)

    monkeypatch.setattr(decision_mod.PolicySet, "evaluate", capture)
    with gov.ws() as ws:
        deploy_files(ws, [folder / "score.yaml"], dev, confirm=lambda _p: True)
        deploy_files(ws, [folder / "score.yaml"], dev, confirm=lambda _p: True)  # outputs now known
        revealed = outputs(ws, dev, "hello", reveal=True)
        assert revealed["vault"]["outputs"]["token"] == CANARY_PARAM  # the output canary exists
        canaries = [
            CANARY_PARAM,
            revealed["db"]["outputs"]["password"],
            revealed["cache"]["outputs"]["password"],
        ]
        from stackyard.environments import lifecycle

        lifecycle.remove_workload(ws, dev, "hello")
        logged = json.dumps(ws.governance.decisions(limit=1000))
        audited = json.dumps([e.to_json() for e in ws.governance.audit()])
    assert seen and any("canary-holder" in s for s in seen)
    assert any('"workload"' in s and "vault" in s for s in seen)
    for canary in canaries:
        assert all(canary not in s for s in seen), "a decision input holds a secret"
        assert canary not in logged, "the decision log holds a secret"
        assert canary not in audited, "the audit log holds a secret"
    for args in (("decisions", "--output", "json"), ("audit", "--output", "json")):
        out = sy(gov.home, *args)
        assert all(c not in out.stdout for c in canaries), args


# -- every path obeys: promotion, the reaper, publishing -------------------------------------


def test_promotion_is_governed_at_the_promote_stage(gov: Gov) -> None:
    dev, staging, prod = gov.name("dev"), gov.name("staging"), gov.name("prod")
    for env in (staging, prod):
        assert sy(gov.home, "env", "create", env).returncode == 0
    rel = json.loads(sy(gov.home, "release", "create", str(HELLO), "--output", "json").stdout)
    assert sy(gov.home, "deploy", "--release", rel["short"], "--env", dev, "--yes").returncode == 0
    assert sy(gov.home, "promote", rel["short"], "--to", staging, "--yes").returncode == 0
    assert (
        sy(
            gov.home, "component", "deprecate", "redis-cache@1.0.0", "--reason", "moving to valkey"
        ).returncode
        == 0
    )
    denied = sy(gov.home, "promote", rel["short"], "--to", prod, "--yes", "--output", "json")
    assert denied.returncode == 5, denied.stderr
    with gov.ws() as ws:
        decision = ws.governance.decisions(decision_id=json.loads(denied.stdout)["decision"])[0]
        assert decision["stage"] == "promote" and decision["env"] == prod
        assert any(
            r["policy"] == "production-components" and "redis-cache" in r["message"]
            for r in decision["results"]
        )
        assert not ws.records.workloads(prod)  # nothing deployed


def test_the_reaper_obeys_destroy_policies(gov: Gov) -> None:
    import time as _time

    from stackyard.environments import lifecycle

    prod = gov.name("prod")
    with gov.ws() as ws:
        lifecycle.create(ws, prod)
        from stackyard.environments.deploy import deploy_files

        deploy_files(ws, [HELLO], prod, confirm=lambda _p: True)
        ws.records.set_status(prod, "ready", expires_at=_time.time() - 1)
    reaped = sy(gov.home, "env", "reap", "--output", "json")
    assert reaped.returncode == 0, reaped.stderr
    result = json.loads(reaped.stdout)
    assert result["reaped"] == [] and result["skipped"] == [prod]  # the destroy awaits approval
    with gov.ws() as ws:
        assert ws.records.environment(prod).status == "ready"
        assert ws.runtime(prod).status("hello").state == "ready"
        events = [(e.action, e.target, e.result) for e in ws.governance.audit()]
        assert ("env.reap", f"env:{prod}", "awaiting-approval") in events
    reaper = sy(gov.home, "env", "reap", user="intern")
    assert reaper.returncode == 6  # the reaper's actor needs platform-engineer


EXPERIMENTAL_DENY = """package stackyard
import rego.v1
deny contains {"msg": sprintf("%s@%s is experimental", [input.component.name, input.component.version]), "rule": "no-experimental"} if {
  input.component.lifecycle == "experimental"
}
"""


def test_publish_policies_and_rbac_in_the_component_pipeline(gov: Gov, tmp_path: Path) -> None:
    (gov.platform_dir / "publish.yaml").write_text(
        f"""apiVersion: stackyard.dev/v1
kind: Policy
metadata: {{name: no-experimental}}
spec: {{layer: organisation, stages: [publish], rego: {json.dumps(EXPERIMENTAL_DENY)}}}
"""
    )
    assert sy(gov.home, "platform", "apply", str(gov.platform_dir), "--yes").returncode == 0
    comp = tmp_path / "scratch"
    assert sy(
        gov.home, "component", "init", "scratch", "--type", "volume", "--dest", str(comp)
    ).returncode in (0, 2)
    if not (comp / "component.yaml").exists():
        from stackyard import library

        shutil.copytree(library.path("local-volume"), comp)
        text = (comp / "component.yaml").read_text().replace("name: local-volume", "name: scratch")
        (comp / "component.yaml").write_text(text)
    text = (comp / "component.yaml").read_text()
    if "lifecycle: experimental" not in text:
        text = text.replace("lifecycle: production", "lifecycle: experimental")
    (comp / "component.yaml").write_text(text)
    denied = sy(gov.home, "component", "publish", str(comp))
    assert denied.returncode == 2, denied.stderr
    assert "policies" in denied.stderr and "experimental" in denied.stderr
    (comp / "component.yaml").write_text(
        text.replace("lifecycle: experimental", "lifecycle: production")
    )
    assert sy(gov.home, "component", "publish", str(comp), user="dev-dana").returncode == 6
    ok = sy(gov.home, "component", "publish", str(comp))
    assert ok.returncode == 0, ok.stderr
    with gov.ws() as ws:
        stages = {d["stage"] for d in ws.governance.decisions()}
        assert "publish" in stages
        results = {(e.action, e.result) for e in ws.governance.audit()}
        assert ("component.publish", "ok") in results and ("component.publish", "denied") in results


def test_reading_commands_filter_what_they_show(gov: Gov) -> None:
    dev = gov.name("dev")
    assert sy(gov.home, "deploy", str(HELLO), "--env", dev, "--yes").returncode == 0
    recent = json.loads(sy(gov.home, "audit", "--since", "1h", "--output", "json").stdout)
    assert any(e["action"] == "deploy" and e["target"] == f"env:{dev}" for e in recent)
    future = json.loads(
        sy(gov.home, "audit", "--since", "2999-01-01T00:00:00Z", "--output", "json").stdout
    )
    assert future == []
    owned = json.loads(
        sy(
            gov.home, "cost", "--team", "team-checkout", "--by", "environment", "--output", "json"
        ).stdout
    )
    assert owned["items"] == [{"env": dev, "environment": dev, "monthly": "5.00"}]
    assert (
        json.loads(sy(gov.home, "cost", "--team", "nobody", "--output", "json").stdout)["total"]
        == "0.00"
    )
    rel = json.loads(sy(gov.home, "release", "create", str(HELLO), "--output", "json").stdout)
    listed = json.loads(sy(gov.home, "release", "list", "--output", "json").stdout)
    assert [r["id"] for r in listed] == [rel["id"]]
    shown = json.loads(sy(gov.home, "release", "show", rel["short"], "--output", "json").stdout)
    assert shown["lock"] == rel["lock"] and shown["deployments"] == []
    mine = json.loads(sy(gov.home, "decisions", "--env", dev, "--output", "json").stdout)
    assert mine and {d["env"] for d in mine} == {dev}
    assert (
        sy(gov.home, "access", "revoke", "admin", "--user", ADMIN).returncode == 2
    )  # the last admin
