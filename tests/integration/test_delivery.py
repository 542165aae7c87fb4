"""Deploy, share, promote and reap on the machine's PostgreSQL and Redis (or embedded ones):
the example platform with its core instances bound to those servers."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from _platform import EXAMPLES, Stage
from stackyard.environments import lifecycle
from stackyard.environments.deploy import deploy_files
from stackyard.environments.inspect import explain, outputs, status
from stackyard.environments.promotion import create_release, deploy_release, promote
from stackyard.errors import InvalidInputError

pytestmark = pytest.mark.integration

HELLO = EXAMPLES / "hello" / "score.yaml"


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_hello_in_an_ephemeral_child_uses_the_parent_core_and_is_destroyed_cleanly(
    stage: Stage,
) -> None:
    child = stage.prefix  # the sweeper's own name: every object it labels is checked
    with stage.ws() as ws:
        env, _, created = lifecycle.create(
            ws, child, type_name="ephemeral", parent=stage.name("dev"), ttl_s=3600
        )
        assert created and env.parent == stage.name("dev") and env.expires_at
        result = deploy_files(ws, [HELLO], child, confirm=lambda _p: True)
        assert result.deployment.status == "succeeded"
        url = result.workloads["hello"].endpoints["web"]
        code, body = _get(url + "/")
        assert code == 200, body
        assert body["postgres"]["ok"] and body["redis"]["ok"] and body["volume"]["ok"]
        # the child deployed only what hello needs; the core came from the parent, read-only
        own = set(ws.records.instances(child))
        assert own == {
            "postgres.default#hello.db",
            "redis.default#hello.cache",
            "volume.default#hello.data",
        }
        assert not any(
            r.kind.startswith("local.") and "server" in r.kind
            for r in ws.store.snapshot(child).resources.values()
        )
        shown = outputs(ws, child, "hello")
        assert shown["db"]["outputs"]["password"] == "(secret)"
        st = status(ws, child)
        assert st["workloads"]["hello"]["state"] == "ready"
        assert {r["health"] for r in st["resources"]} == {"ok"}
        # destroying the parent first is refused while the child lives
        with pytest.raises(InvalidInputError, match="has children"):
            lifecycle.destroy(ws, stage.name("dev"))
        done = lifecycle.destroy(ws, child)
        assert done.destroyed == 7 and done.stopped == ["hello"]
        assert not ws.store.snapshot(child).resources
        assert ws.records.environment(stage.name("dev")).status == "ready"
    # the sweeper (teardown) proves no role, database or ACL user labelled for the child is left


def test_redeploying_the_same_workload_changes_nothing(stage: Stage) -> None:
    dev = stage.name("dev")
    with stage.ws() as ws:
        first = deploy_files(ws, [HELLO], dev, confirm=lambda _p: True)
        pid = first.workloads["hello"].containers["web"]["pid"]
        again = deploy_files(ws, [HELLO], dev, confirm=lambda _p: pytest.fail("nothing to confirm"))
        assert not again.changed and not again.plan.has_changes
        assert again.workloads["hello"].containers["web"]["pid"] == pid
        assert again.workloads["hello"].endpoints == first.workloads["hello"].endpoints


def test_every_score_example_deploys_and_shared_ids_share_one_resource(stage: Stage) -> None:
    dev = stage.name("dev")
    folders = sorted(
        {p.parent for p in EXAMPLES.rglob("*.yaml") if "score.dev/v1b1" in p.read_text()}
    )
    assert {f.name for f in folders} >= {"hello", "shared"}
    with stage.ws() as ws:
        for folder in folders:
            files = sorted(p for p in folder.glob("*.yaml") if "score.dev/v1b1" in p.read_text())
            result = deploy_files(ws, files, dev, confirm=lambda _p: True)
            assert result.deployment.status == "succeeded", folder
            assert all(s.state == "ready" for s in result.workloads.values())
        records = {w.name: w for w in ws.records.workloads(dev)}
        assert (
            records["orders-api"].uids
            == records["orders-worker"].uids
            == ("postgres.default#orders",)
        )
        assert (
            sum(1 for uid in ws.records.instances(dev) if uid.startswith("postgres.default#orders"))
            == 1
        )
        api = ws.runtime(dev).status("orders-api").endpoints["http"]
        deadline = time.monotonic() + 15
        while True:
            code, body = _get(api + "/")
            if code == 200 and body["orders"] > 0:
                break  # the worker's writes are visible to the api: one database
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        # removing one user keeps the shared database; removing the last destroys it
        lifecycle.remove_workload(ws, dev, "orders-worker")
        assert "postgres.default#orders" in ws.records.instances(dev)
        with pytest.raises(InvalidInputError, match="still used by live workload"):
            lifecycle.destroy_resource(ws, dev, "postgres.default#orders")
        with pytest.raises(InvalidInputError, match="core infrastructure"):
            lifecycle.destroy_resource(ws, dev, "postgres-instance.default#core")
        # an orphan (its last user's record gone, as after a failed removal) can be destroyed
        ws.runtime(dev).stop("orders-api")
        ws.records.record_deploy(
            dev, put_workloads=[], drop_workloads=["orders-api"], put_instances=[]
        )
        done = lifecycle.destroy_resource(ws, dev, "postgres.default#orders")
        assert done.deployment.status == "succeeded" and done.plan.summary()["delete"] == 4
        assert "postgres.default#orders" not in ws.records.instances(dev)
        assert not any(
            r.uid == "postgres.default#orders" for r in ws.store.snapshot(dev).resources.values()
        )
        deploy_files(ws, [EXAMPLES / "hello" / "score.yaml"], dev, confirm=lambda _p: True)
        lifecycle.remove_workload(ws, dev, "hello")  # removing the last user destroys its resources
        assert not any(u.startswith("postgres.default#hello") for u in ws.records.instances(dev))


def test_promotion_keeps_the_pinned_builds_and_refuses_a_skipped_stage(stage: Stage) -> None:
    dev, staging, prod = stage.name("dev"), stage.name("staging"), stage.name("prod")
    with stage.ws() as ws:
        lifecycle.create(ws, staging)
        lifecycle.create(ws, prod)
        rel, created = create_release(
            ws, [HELLO], images={"web": "registry.example/hello@sha256:" + "a" * 64}
        )
        assert created and rel.id.startswith("sha256:")
        again, created_again = create_release(
            ws, [HELLO], images={"web": "registry.example/hello@sha256:" + "a" * 64}
        )
        assert again.id == rel.id and not created_again  # content-addressed
        with pytest.raises(InvalidInputError, match="has not succeeded in"):
            promote(ws, rel.id, staging)
        deploy_release(ws, rel.short, dev, confirm=lambda _p: True)
        with pytest.raises(InvalidInputError, match="has not succeeded in"):
            promote(ws, rel.short, prod)  # skips staging
        promote(ws, rel.short, staging, confirm=lambda _p: True)
        promote(ws, rel.short, prod, confirm=lambda _p: True)
        for env in (dev, staging, prod):
            got = {
                uid: (r.component, r.digest)
                for uid, r in ws.records.instances(env).items()
                if uid in rel.lock
            }
            assert got == {uid: (p.ref, p.digest) for uid, p in rel.lock.items()}, env
            assert ws.records.workloads(env)[0].release_id == rel.id
        # production's binding adds its own params to the same pinned build
        assert (
            ws.records.instances(prod)["postgres.default#hello.db"].params["connection_limit"] == 50
        )


def test_promotion_is_refused_when_the_target_bindings_do_not_allow_the_pins(
    stage: Stage, tmp_path: Path
) -> None:
    dev, staging = stage.name("dev"), stage.name("staging")
    with stage.ws() as ws:
        lifecycle.create(ws, staging)
        rel, _ = create_release(ws, [HELLO])
        deploy_release(ws, rel.short, dev, confirm=lambda _p: True)
    text = (stage.platform_dir / "environments.yaml").read_text()
    (stage.platform_dir / "environments.yaml").write_text(
        text.replace(
            f"metadata: {{name: {staging}}}\nspec:\n  type: staging\n  owner: team-checkout\n  bindings:\n",
            f"metadata: {{name: {staging}}}\nspec:\n  type: staging\n  owner: team-checkout\n  bindings:\n    - {{type: postgres, component: postgres-database@^2}}\n",
        )
    )
    from stackyard.environments.platform import apply_dir

    with stage.ws() as ws:
        apply_dir(ws.platform, ws.access, stage.platform_dir, confirm=lambda _q: True)
        with pytest.raises(InvalidInputError) as err:
            promote(ws, rel.short, staging, confirm=lambda _p: True)
        assert "Pinned version not allowed" in {d.summary for d in err.value.diagnostics}
        assert not ws.store.snapshot(staging).resources or all(
            not r.uid.startswith("postgres.default#hello")
            for r in ws.store.snapshot(staging).resources.values()
        )


def test_reaper_destroys_expired_environments_once_and_keeps_the_rest(stage: Stage) -> None:
    dev = stage.name("dev")
    names = [f"{stage.prefix}-e{i}" for i in range(3)] + [f"{stage.prefix}-live"]
    with stage.ws() as ws:
        for name in names:
            lifecycle.create(ws, name, type_name="ephemeral", parent=dev, ttl_s=3600)
        deploy_files(ws, [HELLO], names[0], confirm=lambda _p: True)
        for name in names[:3]:
            ws.records.set_status(name, "ready", expires_at=time.time() - 1)
    results: list[dict] = []
    errors: list[BaseException] = []

    def reaper() -> None:
        try:
            with stage.ws() as ws:
                results.append(lifecycle.reap(ws))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reaper) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    reaped = [n for r in results for n in r["reaped"]]
    assert sorted(reaped) == sorted(names[:3])  # each exactly once, by one reaper
    with stage.ws() as ws:
        for name in names[:3]:
            assert ws.records.environment(name).status == "destroyed"
            destroys = [d for d in ws.records.deployments(name) if d.kind == "destroy"]
            assert len(destroys) == 1
        assert ws.records.environment(names[3]).status == "ready"
        assert lifecycle.reap(ws)["reaped"] == []


def test_extend_is_capped_by_the_type_maximum(stage: Stage) -> None:
    name = f"{stage.prefix}-pr"
    with stage.ws() as ws:
        with pytest.raises(
            InvalidInputError, match="longer than environment type 'ephemeral' allows"
        ):
            lifecycle.create(
                ws, name, type_name="ephemeral", parent=stage.name("dev"), ttl_s=100 * 3600
            )
        env, _, _ = lifecycle.create(ws, name, type_name="ephemeral", parent=stage.name("dev"))
        assert 4 * 3600 - 60 < env.expires_at - time.time() <= 4 * 3600  # the type's default
        env = lifecycle.extend(ws, name, ttl_s=72 * 3600)
        assert env.expires_at - time.time() > 71 * 3600
        with pytest.raises(InvalidInputError, match="allows"):
            lifecycle.extend(ws, name, ttl_s=73 * 3600)


def test_explain_lists_every_candidate_and_the_winner(stage: Stage) -> None:
    with stage.ws() as ws:
        data = explain(ws, [HELLO], stage.name("dev"))
    rows = {r["uid"]: r for r in data["requests"]}
    core = rows["postgres-instance.default#core"]
    sources = {c["source"]: c for c in core["candidates"]}
    assert sources[f"environment {stage.name('dev')}"]["reason"].endswith("(winner)")
    assert "is nearer" in sources["environment type development"]["reason"]
    assert core["component"]["component"] == "postgres-external"
    assert rows["postgres.default#hello.db"]["component"]["component"] == "postgres-database"
