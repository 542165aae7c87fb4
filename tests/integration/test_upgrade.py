"""Fleet-wide upgrades (issue 17), on the machine's PostgreSQL and Redis: a
postgres-database-like component at 1.0.0 runs in dev, staging and production (with the
example policies); 1.1.0 (longer passwords: the password is replaced) is published, and
``stackyard upgrade`` plans the move (changing nothing with --plan-only), applies it in
promotion order, parks production for an approver, and stops at a failing environment."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _as_user import cli
from _platform import Stage, write_platform

pytestmark = pytest.mark.integration

COMPONENT = "upgrade-database"
UID = "postgres.default#checkout.db"
STAGES = ("dev", "staging", "prod")

SCORE = """\
apiVersion: score.dev/v1b1
metadata: {name: checkout}
containers:
  main:
    image: none
    command: ["sleep", "3600"]
    variables:
      DB_PASSWORD: ${resources.db.password}
resources:
  db:
    type: postgres
"""


def _publish(home: Path, tmp_path: Path, version: str) -> None:
    """``upgrade-database`` (the library's postgres-database under another name) at
    ``version``, attested by the home's key; 1.1.0 makes 40-character passwords."""
    from stackyard import library
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.providers.registry import ProviderRegistry

    src = tmp_path / f"{COMPONENT}-{version}"
    shutil.copytree(library.path("postgres-database"), src)
    manifest = src / "component.yaml"
    text = manifest.read_text().replace("name: postgres-database", f"name: {COMPONENT}")
    text = text.replace("version: 1.0.0", f"version: {version}")
    if version != "1.0.0":
        assert "config: {length: 32}" in text
        text = text.replace("config: {length: 32}", "config: {length: 40}")
    manifest.write_text(text)
    registry = open_registry(None, home=home)
    try:
        publish(
            src,
            registry=registry,
            keyring=Keyring(home),
            kinds=ProviderRegistry.discover(),
            run_component_tests=False,
        )
    finally:
        registry.close()


def _bind(platform: Path, prefix: str, ranges: dict[str, str]) -> None:
    path = platform / "environments.yaml"
    docs = path.read_text().split("---\n")
    for i, doc in enumerate(docs):
        for stage, rng in ranges.items():
            if f"name: {prefix}-{stage}}}" in doc:
                line = f"    - {{type: postgres, component: {COMPONENT}@{rng}}}\n"
                docs[i] = doc.replace("  bindings:\n", "  bindings:\n" + line)
    path.write_text("---\n".join(docs))


Fleet = Callable[[dict[str, str]], Stage]


@pytest.fixture
def fleet(
    library_home: Path,
    tmp_path: Path,
    sweeper: Any,
    postgres_admin_url: str,
    redis_url: str,
) -> Iterator[Fleet]:
    """Makes dev, staging and prod (the example policies applied) running ``checkout`` on
    1.0.0 with the given binding ranges, then publishes 1.1.0."""
    made: list[Stage] = []

    def make(ranges: dict[str, str]) -> Stage:
        from stackyard.environments import lifecycle
        from stackyard.environments.deploy import deploy_files
        from stackyard.environments.platform import apply_dir

        _publish(library_home, tmp_path, "1.0.0")
        plat = write_platform(
            tmp_path / "platform",
            sweeper.env,
            pg_url=postgres_admin_url,
            redis_url=redis_url,
            policies=True,
        )
        _bind(plat, sweeper.env, ranges)
        st = Stage(library_home, sweeper.env, plat)
        made.append(st)
        checkout = tmp_path / "checkout.yaml"
        checkout.write_text(SCORE)
        with st.ws() as ws:
            apply_dir(ws.platform, ws.access, plat, confirm=lambda _q: True)
            for stage in STAGES:
                lifecycle.create(ws, st.name(stage))
                done = deploy_files(ws, [checkout], st.name(stage), confirm=lambda _p: True)
                assert done.deployment.status == "succeeded", done.deployment
                assert done.lock[UID].version == "1.0.0"
        _publish(library_home, tmp_path, "1.1.0")
        return st

    try:
        yield make
    finally:
        for st in made:
            st.teardown()


def _pins(st: Stage) -> dict[str, tuple[str, str]]:
    """Each environment's lock entry for the database: (name@version, digest)."""
    with st.ws() as ws:
        out = {}
        for stage in STAGES:
            rec = ws.records.instances(st.name(stage))[UID]
            out[stage] = (rec.component, rec.digest)
        return out


def _verifiers(st: Stage, pg_url: str) -> dict[str, str]:
    """The stored password verifier of each environment's database role, on the server."""
    import psycopg

    with st.ws() as ws:
        roles = {
            stage: ws.records.instances(st.name(stage))[UID].outputs["username"] for stage in STAGES
        }
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return {
            stage: conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
            ).fetchone()[0]
            for stage, role in roles.items()
        }


def _succeeded(st: Stage, stage: str) -> list[str]:
    with st.ws() as ws:
        return [
            d.id
            for d in ws.records.deployments(st.name(stage), limit=50)
            if d.kind == "upgrade" and d.status == "succeeded"
        ]


def test_upgrade_in_promotion_order_parks_production(fleet: Fleet, postgres_admin_url: str) -> None:
    st = fleet({s: "^1" for s in STAGES})
    dev, staging, prod = (st.name(s) for s in STAGES)
    before, secrets = _pins(st), _verifiers(st, postgres_admin_url)

    # --plan-only: every environment planned, in path order, and nothing changes
    planned = cli(st.home, "upgrade", COMPONENT, "--to", "^1.1", "--plan-only", "-o", "json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["target"]["version"] == "1.1.0" and plan["plan_only"] is True
    assert [s["env"] for s in plan["steps"]] == [dev, staging, prod]
    for step in plan["steps"]:
        assert step["status"] == "planned", step
        assert [(m["uid"], m["from"]["version"], m["to"]["version"]) for m in step["moves"]] == [
            (UID, "1.0.0", "1.1.0")
        ]
        assert f"{UID}/password" in step["replacements"]
    assert [bool(s["approvals"]) for s in plan["steps"]] == [False, False, True]
    assert "would be replaced in " + prod in plan["steps"][2]["approvals"][0]
    text = cli(st.home, "upgrade", COMPONENT, "--to", "^1.1", "--plan-only")
    assert text.returncode == 0, text.stderr
    assert "REPLACED" in text.stdout and "would wait for approval" in text.stdout
    assert "--plan-only: nothing applied." in text.stdout
    only = cli(st.home, "upgrade", COMPONENT, "--to", "1.1.0", "--plan-only", "-t", "staging")
    assert only.returncode == 0, only.stderr
    assert staging in only.stdout and dev not in only.stdout and prod not in only.stdout
    assert _pins(st) == before
    assert _verifiers(st, postgres_admin_url) == secrets
    assert not any(_succeeded(st, s) for s in STAGES)

    # the campaign: dev, then staging, then production parks for an approver
    ran = cli(st.home, "upgrade", COMPONENT, "--to", "^1.1", "--yes", "-o", "json")
    assert ran.returncode == 0, ran.stderr
    done = json.loads(ran.stdout)
    assert [(s["env"], s["status"]) for s in done["steps"]] == [
        (dev, "succeeded"),
        (staging, "succeeded"),
        (prod, "awaiting-approval"),
    ]
    assert done["stopped_at"] == prod and done["complete"] is False
    parked = done["steps"][2]["deployment"]
    assert f"stackyard approve {parked}" in done["steps"][2]["hint"]
    target = (f"{COMPONENT}@1.1.0", done["target"]["digest"])
    after = _pins(st)
    assert after["dev"] == target and after["staging"] == target
    assert after["prod"] == before["prod"]  # nothing applied in production
    assert after["dev"][1] != before["dev"][1]
    changed = _verifiers(st, postgres_admin_url)
    assert changed["dev"] != secrets["dev"] and changed["staging"] != secrets["staging"]
    assert changed["prod"] == secrets["prod"]
    # the workload got the new password: its recorded outputs are those it was rendered with
    with st.ws() as ws:
        (wl,) = ws.records.workloads(dev)
        assert wl.deployment_id == done["steps"][0]["deployment"]

    # an approver resumes the parked step with the same pins
    from stackyard.environments.approvals import approve
    from stackyard.environments.workspace import Workspace
    from stackyard.policy.rbac import Grant, Role
    from stackyard.settings import Settings

    with st.ws() as ws:
        ws.governance.grant(Grant("user:approver", Role.APPROVER, f"env:{prod}"), by="test")
    with Workspace.open(Settings.load(actor="approver")) as ws:
        result = approve(ws, parked, comment="reviewed the upgrade")
    assert result.deployment.status == "succeeded"
    assert _pins(st)["prod"] == target
    assert _verifiers(st, postgres_admin_url)["prod"] != secrets["prod"]

    # everything is on 1.1.0 now: nothing left to move
    again = cli(st.home, "upgrade", COMPONENT, "--to", "^1.1", "--yes", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["steps"] == []


def test_a_failing_environment_stops_the_campaign(fleet: Fleet) -> None:
    from stackyard.environments.upgrade import upgrade

    # staging's binding does not allow 1.1: its step fails, production is never touched
    st = fleet({"dev": "^1", "staging": "~1.0", "prod": "^1"})
    dev, staging, prod = (st.name(s) for s in STAGES)
    before = _pins(st)
    with st.ws() as ws:
        campaign = upgrade(ws, COMPONENT, "^1.1")
    statuses = [(s.env, s.status.value) for s in campaign.steps]
    assert statuses == [(dev, "succeeded"), (staging, "failed"), (prod, "not-run")]
    failed = campaign.stopped_at
    assert failed is not None and failed.env == staging and failed.exit_code == 2
    assert failed.error == f"Cannot deploy to '{staging}'"
    (why,) = [d for d in failed.diagnostics if d.summary == "Pinned version not allowed"]
    assert f"{COMPONENT}@~1.0" in why.detail
    after = _pins(st)
    assert after["dev"][0] == f"{COMPONENT}@1.1.0"
    assert after["staging"] == before["staging"] and after["prod"] == before["prod"]
    assert not _succeeded(st, "staging") and not _succeeded(st, "prod")

    # the CLI says where it stopped, what was done and what was not, with the error's exit
    shown = cli(st.home, "upgrade", COMPONENT, "--to", "^1.1", "--yes")
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert f"stopped at: {staging} (failed)" in shown.stdout
    assert f"not run: {prod}" in shown.stdout
    assert "Pinned version not allowed" in shown.stdout + shown.stderr
