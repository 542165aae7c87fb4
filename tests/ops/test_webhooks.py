"""Webhooks end to end: platform events published by the service layer, turned into
deliveries by the ticker's steps, POSTed signed to a real receiver on 127.0.0.1, retried
after a failure; the TTL warning once; bad documents refused; the secret nowhere."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _opssupport import (
    SECRET,
    SECRET_ENV,
    apply,
    deliveries,
    fresh_home,
    platform_yaml,
    receiving,
    verify,
    webhook_doc,
)

from _as_user import cli
from stackyard.ops import events, ticker

STEPS = {"webhooks.dispatch", "webhooks.deliver"}


@pytest.fixture(scope="session")
def bare_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with no component published (these tests deploy nothing): quick to copy."""
    from unittest import mock

    import stackyard.library
    import stackyard.service as service
    from stackyard.settings import Settings

    home = tmp_path_factory.mktemp("ops-home") / "home"
    with mock.patch.object(stackyard.library, "names", lambda: []):
        service.init_home(Settings.load(home=home, environ={}))
    return home


@pytest.fixture
def site(
    bare_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Any]]:
    """``open_ws()``: a workspace on a fresh copy of the template home (closed at the end)."""
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    home = fresh_home(bare_template, tmp_path / "home")
    monkeypatch.setenv("STACKYARD_HOME", str(home))
    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("STACKYARD_WEBHOOK_RETRY_BASE_S", "0")
    opened: list[Any] = []

    def open_ws() -> Any:
        ws = Workspace.open(Settings.load(home=home, environ={}))
        opened.append(ws)
        return ws

    open_ws.home = home  # type: ignore[attr-defined]
    yield open_ws
    for ws in opened:
        ws.close()


def _create(ws: Any, name: str, type_name: str, owner: str, ttl_s: int | None = None) -> None:
    from stackyard.environments import lifecycle

    env, _result, created = lifecycle.create(
        ws, name, type_name=type_name, owner=owner, ttl_s=ttl_s
    )
    assert created and env.status == "ready"


def test_signed_delivery_fails_once_then_the_retry_arrives(
    site: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ws = site()
    with receiving(fail_first=1) as recv:
        apply(
            ws,
            tmp_path / "platform",
            platform_yaml(
                webhook_doc(
                    "deploys",
                    recv.url,
                    events="[deployment.succeeded]",
                    filters="{env_types: [lite], teams: [team-a]}",
                )
            ),
        )
        _create(ws, "shop-a", "lite", "team-a")  # its core deploy is a deployment
        published = events.read(ws.store, env="shop-a")
        assert [e.type for e in published] == ["deployment.started", "deployment.succeeded"]
        assert published[1].env_type == "lite" and published[1].team == "team-a"

        ticker.run_due(ws, only=STEPS)
        [first] = recv.requests
        assert first.answered == 500 and first.verified
        [row] = deliveries(ws)
        assert row["status"] == "pending" and row["attempts"] == 1
        assert row["response_code"] == 500 and row["error"] == "HTTP 500"
        assert row["response_body"] == "broken on purpose"

        ticker.run_due(ws, only={"webhooks.deliver"})  # the retry (a base of 0 s: due now)
        assert len(recv.requests) == 2
        retry = recv.requests[1]
        assert retry.answered == 200 and retry.verified
        [row] = deliveries(ws)
        assert row["status"] == "delivered" and row["attempts"] == 2
        assert row["response_code"] == 200 and row["error"] is None

        ticker.run_due(ws, only=STEPS)  # nothing new, nothing due: nothing sent again
        assert len(recv.requests) == 2

    doc = retry.json()
    assert set(doc) == {"id", "type", "at", "env", "env_type", "team", "subject", "data"}
    assert doc["type"] == "deployment.succeeded" and doc["env"] == "shop-a"
    assert doc["id"] == f"evt_{published[1].seq}" and doc["team"] == "team-a"
    assert doc["data"]["deployment"] and doc["data"]["kind"] == "create"
    assert retry.headers["x-stackyard-event"] == "deployment.succeeded"
    assert retry.headers["x-stackyard-delivery"] == row["id"]
    assert retry.headers["user-agent"].startswith("stackyard/")
    assert retry.headers["content-type"] == "application/json"
    # the same event is the same id on the retry; a wrong secret does not verify
    assert recv.requests[0].body == retry.body
    assert not verify("another-secret", retry.headers["x-stackyard-signature"], retry.body)
    # the secret is in no delivery, no log line
    assert SECRET not in json.dumps(deliveries(ws), default=str)
    assert SECRET not in caplog.text


def test_events_are_filtered_by_type_env_type_and_team(
    site: Callable[..., Any], tmp_path: Path
) -> None:
    ws = site()
    hooks = "---\n".join(
        [
            webhook_doc(
                "team-a-lite",
                "http://127.0.0.1:9/a",
                events="[deployment.succeeded, environment.destroyed]",
                filters="{env_types: [lite], teams: [team-a]}",
            ),
            webhook_doc("one-env", "http://127.0.0.1:9/b", filters="{envs: [shop-b]}"),
            webhook_doc("drift", "http://127.0.0.1:9/c", events="[drift.found]"),
        ]
    )
    apply(ws, tmp_path / "platform", platform_yaml(hooks))
    _create(ws, "shop-a", "lite", "team-a")
    _create(ws, "shop-b", "lite", "team-b")
    _create(ws, "shop-c", "other", "team-a")
    from stackyard.environments import lifecycle

    lifecycle.destroy(ws, "shop-a")
    events.publish(ws.store, "drift.found", "environment shop-c", env="shop-c", team="team-a")
    ticker.run_due(ws, only={"webhooks.dispatch"})
    got = {(r["webhook"], r["event_type"], json.loads(r["body"])["env"]) for r in deliveries(ws)}
    assert got == {
        ("team-a-lite", "deployment.succeeded", "shop-a"),
        ("team-a-lite", "environment.destroyed", "shop-a"),
        ("one-env", "deployment.started", "shop-b"),
        ("one-env", "deployment.succeeded", "shop-b"),
        ("drift", "drift.found", "shop-c"),
    }
    # dispatching again (another worker, a cursor moved back) adds nothing
    before = len(deliveries(ws))
    from stackyard.ops import webhooks

    webhooks._move_cursor(ws.store, 0)
    assert webhooks.dispatch(ws) == 0
    assert len(deliveries(ws)) == before
    destroyed = [e for e in events.read(ws.store, env="shop-a") if e.type.startswith("env")]
    assert [e.type for e in destroyed] == ["environment.destroyed"]


def test_an_event_committed_after_a_later_one_is_still_delivered(
    site: Callable[..., Any], tmp_path: Path
) -> None:
    """On PostgreSQL two writers can commit their events out of ``seq`` order: the cursor
    passes the later one before the earlier one is visible. The dispatcher reads the recent
    events again, so the late one still gets its delivery (and nothing twice)."""
    import sqlalchemy as sa

    from stackyard.ops import webhooks
    from stackyard.state.tables import platform_events

    ws = site()
    apply(ws, tmp_path / "platform", platform_yaml(webhook_doc("all", "http://127.0.0.1:9/a")))
    early = events.publish(ws.store, "drift.found", "environment one", env="one")
    events.publish(ws.store, "drift.found", "environment two", env="two")
    with ws.store.writing() as conn:  # the earlier event's transaction has not committed yet
        row = conn.execute(sa.select(platform_events).where(platform_events.c.seq == early))
        pending = dict(row.mappings().one())
        conn.execute(sa.delete(platform_events).where(platform_events.c.seq == early))
    assert webhooks.dispatch(ws) == 1
    assert webhooks._cursor(ws.store) > early
    with ws.store.writing() as conn:  # ... and now it has, behind the cursor
        conn.execute(sa.insert(platform_events).values(**pending))
    assert webhooks.dispatch(ws) == 1
    assert webhooks.dispatch(ws) == 0
    got = sorted(json.loads(r["body"])["env"] for r in deliveries(ws))
    assert got == ["one", "two"]


def test_the_ttl_warning_arrives_once_and_extend_arms_it_again(
    site: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackyard.environments import lifecycle
    from stackyard.ops import expiry

    monkeypatch.setenv("STACKYARD_TTL_WARNING_S", "3600")
    ws = site()
    with receiving() as recv:
        apply(
            ws,
            tmp_path / "platform",
            platform_yaml(
                webhook_doc(
                    "ttl",
                    recv.url,
                    events="[environment.expiring, environment.expired]",
                )
            ),
        )
        _create(ws, "short", "lite", "team-a")  # the type's default TTL: 30m
        _create(ws, "long", "lite", "team-b", ttl_s=86400)  # a day: no warning yet
        steps = {"environments.expiry", *STEPS}
        ticker.run_due(ws, only=steps)
        ticker.run_due(ws, only=steps)  # twice: still one warning
        warned = recv.of_type("environment.expiring")
        assert len(warned) == 1 and warned[0].verified
        doc = warned[0].json()
        assert doc["env"] == "short" and doc["team"] == "team-a"
        assert 0 < doc["data"]["seconds_left"] <= 1800 and doc["data"]["warn_before_s"] == 3600

        lifecycle.extend(ws, "short", ttl_s=2700)  # a new expiry: warned again, once
        ticker.run_due(ws, only=steps)
        ticker.run_due(ws, only=steps)
        assert len(recv.of_type("environment.expiring")) == 2

        # past its expiry, the step says it expired, once (the reaper's own notice shares
        # the mark)
        env = ws.records.environment("short")
        for _ in range(2):
            expiry.check(ws, now=env.expires_at + 1)
        ticker.run_due(ws, only=STEPS)
        assert [r.json()["env"] for r in recv.of_type("environment.expired")] == ["short"]
        assert events.announce_expired(ws.store, env) is None
    assert [e.type for e in events.read(ws.store, env="long")] == [
        "deployment.started",
        "deployment.succeeded",
    ]


def test_a_webhook_can_ask_for_an_earlier_warning(site: Callable[..., Any], tmp_path: Path) -> None:
    from stackyard.ops import expiry

    ws = site()
    hook = webhook_doc(
        "early",
        "http://127.0.0.1:9/x",
        events="[environment.expiring]",
        filters="{teams: [team-b]}",
        extra="expiring_before: 2d",
    )
    apply(ws, tmp_path / "platform", platform_yaml(hook))
    _create(ws, "day-b", "lite", "team-b", ttl_s=86400)  # team-b's webhook warns 2d before
    _create(ws, "day-a", "lite", "team-a", ttl_s=86400)  # team-a: the default hour
    assert expiry.check(ws)["expiring"] == ["day-b"]


DESTROY_APPROVAL = """\
package stackyard

import rego.v1

approval contains {"msg": "destroys need a yes", "rule": "destroy-yes"} if true

allow_self_approval := true
"""


def test_approvals_and_a_destroy_are_published(site: Callable[..., Any], tmp_path: Path) -> None:
    from stackyard.environments import approvals, lifecycle
    from stackyard.policy.rbac import ORG, Grant, Role

    ws = site()
    policy = (
        "apiVersion: stackyard.dev/v1\nkind: Policy\nmetadata: {name: destroy-yes}\n"
        f"spec: {{layer: organisation, stages: [destroy], rego: {json.dumps(DESTROY_APPROVAL)}}}\n"
    )
    apply(ws, tmp_path / "platform", platform_yaml(policy))
    ws.governance.grant(Grant(f"user:{ws.access.actor}", Role.APPROVER, ORG), by="test")
    _create(ws, "gone", "other", "team-b")
    parked = lifecycle.destroy(ws, "gone")
    assert parked.deployment is not None and parked.deployment.status == "awaiting-approval"
    approvals.approve(ws, parked.deployment.id, comment="fine")
    seen = [e for e in events.read(ws.store, env="gone") if not e.type.startswith("deployment")]
    assert [e.type for e in seen] == [
        "approval.requested",
        "approval.decided",
        "environment.destroyed",
    ]
    requested, decided, destroyed = seen
    assert requested.data["deployment"] == parked.deployment.id
    assert requested.data["reasons"] == ["destroys need a yes"]
    assert decided.data["verdict"] == "approved" and decided.data["comment"] == "fine"
    assert decided.data["approver"] == ws.access.actor
    assert destroyed.team == "team-b" and destroyed.env_type == "other"


def test_a_deprecation_is_published(site: Callable[..., Any], tmp_path: Path) -> None:
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.environments.publication import deprecate
    from stackyard.providers.registry import ProviderRegistry

    ws = site()
    hooks = "---\n".join(
        [
            webhook_doc("all", "http://127.0.0.1:9/a", events="[component.deprecated]"),
            webhook_doc("team-b", "http://127.0.0.1:9/b", filters="{teams: [team-b]}"),
        ]
    )
    apply(ws, tmp_path / "platform", platform_yaml(hooks))
    canary = Path(__file__).parents[1] / "api" / "canary"
    registry = open_registry(None, home=ws.settings.home)
    try:
        publish(
            canary,
            registry=registry,
            keyring=Keyring(ws.settings.home),
            kinds=ProviderRegistry.discover(),
            run_component_tests=False,
        )
        deprecate(ws.settings, "canary-secret", "1.0.0", reason="use 2.x", registry=registry)
    finally:
        registry.close()
    [event] = events.read(ws.store, types=["component.deprecated"])
    assert event.env is None and event.subject == "component canary-secret@1.0.0"
    assert event.data["reason"] == "use 2.x" and event.data["version"] == "1.0.0"
    ticker.run_due(ws, only={"webhooks.dispatch"})
    assert [r["webhook"] for r in deliveries(ws)] == ["all"]  # no team: not team-b's


BAD = {
    "a secret in the document": (
        "{url: 'https://hooks.example/x', events: ['*'], secret_env: WH, secret: hunter2}",
        "Secret in a document",
    ),
    "not http": (
        "{url: 'ftp://hooks.example/x', events: ['*'], secret_env: WH}",
        "Invalid URL",
    ),
    "credentials in the URL": (
        "{url: 'https://user:pw@hooks.example/x', events: ['*'], secret_env: WH}",
        "Invalid URL",
    ),
    "an unknown event": (
        "{url: 'https://hooks.example/x', events: [deployment.exploded], secret_env: WH}",
        "Unknown event type",
    ),
    "no events": ("{url: 'https://hooks.example/x', events: [], secret_env: WH}", "Invalid value"),
    "a value for secret_env": (
        "{url: 'https://hooks.example/x', events: ['*'], secret_env: 's3cr3t value!'}",
        "Invalid variable name",
    ),
    "no secret_env": ("{url: 'https://hooks.example/x', events: ['*']}", "Missing field"),
    "a bad filter": (
        "{url: 'https://hooks.example/x', events: ['*'], secret_env: WH, filters: {teams: A}}",
        "Invalid value",
    ),
    "an unknown filter": (
        "{url: 'https://hooks.example/x', events: ['*'], secret_env: WH, filters: {owners: [a]}}",
        "Unknown field",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_webhook_documents_are_refused_with_diagnostics(case: str, tmp_path: Path) -> None:
    from stackyard.environments.platform import load_dir
    from stackyard.errors import InvalidInputError

    spec, summary = BAD[case]
    folder = tmp_path / "platform"
    folder.mkdir()
    (folder / "hooks.yaml").write_text(
        f"apiVersion: stackyard.dev/v1\nkind: Webhook\nmetadata: {{name: hook}}\nspec: {spec}\n"
    )
    with pytest.raises(InvalidInputError) as caught:
        load_dir(folder)
    found = [(d.summary, d.path) for d in caught.value.diagnostics]
    assert any(s == summary for s, _ in found), found
    assert all(p.startswith("spec") for _, p in found), found
    assert "hunter2" not in str([d.to_json() for d in caught.value.diagnostics])


def test_a_missing_secret_fails_the_delivery_and_sends_nothing(
    site: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = site()
    with receiving() as recv:
        apply(ws, tmp_path / "platform", platform_yaml(webhook_doc("all", recv.url)))
        events.publish(ws.store, "drift.found", "environment x", env="x")
        monkeypatch.delenv(SECRET_ENV)
        ticker.run_due(ws, only=STEPS)
        assert recv.requests == []
    [row] = deliveries(ws)
    assert row["status"] == "failed" and row["attempts"] == 1
    assert SECRET_ENV in row["error"] and "nothing was sent" in row["error"]


def test_the_cli_lists_redelivers_and_never_shows_the_secret(
    site: Callable[..., Any], tmp_path: Path
) -> None:
    ws = site()
    home = site.home  # type: ignore[attr-defined]
    with receiving() as recv:
        apply(ws, tmp_path / "platform", platform_yaml(webhook_doc("all", recv.url)))
        events.publish(ws.store, "drift.found", "environment x", env="x", data={"n": 1})
        env = {SECRET_ENV: SECRET}
        done = cli(home, "webhooks", "deliver", "--output", "json", **env)
        assert done.returncode == 0, done.stderr
        sent = json.loads(done.stdout)
        assert sent["dispatched"] == 1 and sent["sent"] == 1
        [d] = sent["deliveries"]
        assert d["status"] == "delivered" and len(recv.requests) == 1

        listed = cli(home, "webhooks", "list", "--output", "json", **env)
        assert listed.returncode == 0, listed.stderr
        [hook] = json.loads(listed.stdout)["webhooks"]
        assert hook["secret_env"] == SECRET_ENV and hook["secret_set"] is True
        assert hook["last_delivery"]["status"] == "delivered"

        shown = cli(home, "webhooks", "deliveries", "--status", "delivered", "-o", "json", **env)
        assert [x["id"] for x in json.loads(shown.stdout)["deliveries"]] == [d["id"]]

        again = cli(home, "webhooks", "redeliver", d["id"], "--output", "json", **env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["status"] == "pending"
        cli(home, "webhooks", "deliver", **env)
        assert len(recv.requests) == 2 and all(r.verified for r in recv.requests)

        text = cli(home, "webhooks", "deliveries", **env)
        assert d["id"] in text.stdout and "delivered" in text.stdout
        platform = cli(home, "platform", "show", "--output", "json", **env)
        outputs = [done, listed, shown, again, text, platform]
        assert all(SECRET not in p.stdout + p.stderr for p in outputs)

        refused = cli(home, "webhooks", "deliveries", user="bob")
        assert refused.returncode != 0 and "may not platform.apply" in refused.stderr
        unknown = cli(home, "webhooks", "redeliver", "wd_nope")
        assert unknown.returncode == 2 and "No webhook delivery" in unknown.stderr
        bad = cli(home, "webhooks", "deliveries", "--status", "lost")
        assert bad.returncode == 2 and "Unknown delivery status" in bad.stderr


def test_the_api_lists_and_redelivers_for_platform_engineers_only(
    site: Callable[..., Any], tmp_path: Path
) -> None:
    import sys

    import httpx

    from stackyard.identity import tokens

    sys.path.insert(0, str(Path(__file__).parent.parent / "api"))
    from _apisupport import serving

    ws = site()
    with receiving() as recv:
        apply(ws, tmp_path / "platform", platform_yaml(webhook_doc("all", recv.url)))
        events.publish(ws.store, "drift.found", "environment x", env="x")
        ticker.run_due(ws, only=STEPS)
        admin = tokens.create(ws, user=ws.access.actor, ttl="1d").token
        bob = tokens.create(ws, user="bob", ttl="1d").token
        with serving(ws.settings, worker=False) as (url, logs):

            def client(token: str) -> httpx.Client:
                auth = {"Authorization": f"Bearer {token}"}
                return httpx.Client(base_url=url, headers=auth, timeout=60)

            with client(admin) as c:
                listed = c.get("/api/v1/webhooks").json()["items"]
                assert [w["name"] for w in listed] == ["all"]
                found = c.get("/api/v1/webhooks/deliveries", params={"status": "delivered"})
                assert found.status_code == 200, found.text
                [d] = found.json()["items"]
                assert d["webhook"] == "all" and d["response_code"] == 200
                again = c.post(f"/api/v1/webhooks/deliveries/{d['id']}/redeliver")
                assert again.status_code == 200 and again.json()["status"] == "pending"
                missing = c.post("/api/v1/webhooks/deliveries/wd_nope/redeliver")
                assert missing.status_code in (400, 404, 422), missing.text
                bad = c.get("/api/v1/webhooks/deliveries", params={"status": "lost"})
                assert bad.status_code == 422
            with client(bob) as c:
                assert c.get("/api/v1/webhooks/deliveries").status_code == 403
                refused = c.post(f"/api/v1/webhooks/deliveries/{d['id']}/redeliver")
                assert refused.status_code == 403
            assert SECRET not in logs.text()
        ticker.run_due(ws, only=STEPS)
        assert len(recv.requests) == 2


def test_one_worker_wins_a_turn_and_a_delivery_on_postgresql(
    pg_databases: Callable[[], str], tmp_path: Path
) -> None:
    import sqlalchemy as sa

    from stackyard.ops import webhooks
    from stackyard.settings import Settings
    from stackyard.state import open_store
    from stackyard.state.tables import webhook_deliveries

    settings = Settings.load(home=tmp_path / "home", database_url=pg_databases(), environ={})
    settings.home.mkdir(mode=0o700)
    stores = [open_store(settings), open_store(settings)]
    try:
        for round_ in range(4):
            name, now = f"race-{round_ % 2}", 1000.0 + round_ * 100
            won = _race(stores, lambda store, n=name, t=now: ticker.claim_turn(store, n, 60, now=t))
            assert sorted(won) == [False, True], won
        assert not ticker.claim_turn(stores[0], "race-0", 60, now=1250.0)  # not due yet

        with stores[0].writing() as conn:
            conn.execute(
                sa.insert(webhook_deliveries).values(
                    id="wd_race",
                    webhook="w",
                    event_seq=1,
                    event_type="drift.found",
                    url="u",
                    body="{}",
                    status="pending",
                    attempts=0,
                    next_at=5.0,
                    created_at=5.0,
                )
            )
        with stores[0].reading() as conn:
            row = conn.execute(sa.select(webhook_deliveries)).mappings().one()
        taken = _race(stores, lambda store: webhooks._claim(store, row, 10.0))
        assert sorted(taken) == [False, True], taken
    finally:
        for s in stores:
            s.close()


def _race(stores: list[Any], fn: Callable[[Any], bool]) -> list[bool]:
    """``fn(store)`` in one thread per store, started together; every result."""
    barrier = threading.Barrier(len(stores))
    results: list[bool] = []
    errors: list[BaseException] = []

    def run(store: Any) -> None:
        barrier.wait()
        try:
            results.append(fn(store))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results
