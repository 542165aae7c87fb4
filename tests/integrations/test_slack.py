"""The Slack slash-command endpoint against a real server with a worker: commands signed as
Slack signs them, their ephemeral acknowledgement, and their result at a loopback
``response_url``; RBAC, the approval policy and the audit log as over the API; refusals of a
bad signature, an old timestamp and an unmapped user; the signing secret never shown."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _apisupport import ADMIN, prepare, serving, teardown
from _slacksupport import TEAM, Slack, receiving, text_of

pytestmark = pytest.mark.integration

ALICE, BOB, VIC = "UALICE", "UBOB", "UVIC"  # Slack users: an owner, an approver, a viewer
GATED = """\
apiVersion: stackyard.dev/v1
kind: Policy
metadata: {{name: gated-destroy}}
spec:
  layer: environment
  target: {env}
  stages: [destroy]
  rego: |
    package stackyard

    import rego.v1

    approval contains {{"msg": "destroying this environment waits for an approver", "rule": "gated"}}
"""


@pytest.fixture(scope="module")
def slack(canary_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slack]:
    """A server with a worker on a home with the lite platform, the environment ``env``,
    a policy making every destroy of ``<env>-gated`` wait for an approver, and three mapped
    Slack users (``alice``: environment-owner, ``bob``: approver, ``vic``: viewer)."""
    from stackyard.environments.platform import apply_dir
    from stackyard.environments.workspace import Workspace
    from stackyard.policy.rbac import ORG, Grant, Role
    from stackyard.state import open_store
    from stackyard.state.governance import Governance

    env = f"s{secrets.token_hex(5)}"
    secret = "8f742231b10e8888abcd99yyyzzz85a5"  # the shape of a Slack signing secret
    root = tmp_path_factory.mktemp("slack")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("STACKYARD_DATABASE_URL", raising=False)
        settings = prepare(root / "home", canary_template, env)
        platform = root / "platform"
        (platform / "gated.yaml").write_text(GATED.format(env=f"{env}-gated"))
        with Workspace.open(dataclasses.replace(settings, actor=ADMIN)) as ws:
            apply_dir(ws.platform, ws.access, platform, confirm=lambda _q: True)
        with open_store(settings) as store:
            for user, role in (("alice", Role.ENVIRONMENT_OWNER), ("bob", Role.APPROVER)):
                Governance(store).grant(Grant(f"user:{user}", role, ORG), by="test")
            Governance(store).grant(Grant("user:vic", Role.VIEWER, ORG), by="test")
        users = root / "slack-users"
        users.write_text(f"# the approvers\n{TEAM}:{BOB}=bob\n")
        mp.setenv("STACKYARD_SLACK_SIGNING_SECRET", secret)
        mp.setenv("STACKYARD_SLACK_USERS", f"{TEAM}:{ALICE}=alice, {VIC}=vic")
        mp.setenv("STACKYARD_SLACK_USERS_FILE", str(users))
        mp.setenv("STACKYARD_SLACK_ALLOW_LOOPBACK", "1")
        try:
            with receiving() as receiver, serving(settings, worker=True) as (url, logs):
                yield Slack(url, secret, receiver, env, settings, logs)
        finally:
            teardown(settings)


def audit(slack: Slack) -> list[dict[str, Any]]:
    from stackyard.environments import views
    from stackyard.environments.workspace import Workspace

    with Workspace.open(dataclasses.replace(slack.settings, actor=ADMIN)) as ws:
        return [e.to_json() for e in views.audit(ws)]


# -- reading -----------------------------------------------------------------------------------


def test_env_list_and_status(slack: Slack) -> None:
    ack, listed = slack.ask("env list", user=VIC)
    assert "env list" in ack["text"]
    assert listed["response_type"] == "ephemeral"
    assert all(b["type"] == "section" and b["text"]["type"] == "mrkdwn" for b in listed["blocks"])
    assert f"`{slack.env}` lite, ready" in text_of(listed)

    _, status = slack.ask(f"status {slack.env}", user=VIC)
    assert f"Status of {slack.env}" in status["text"]
    assert f"*{slack.env}* lite, ready" in text_of(status)

    _, missing = slack.ask("status nowhere", user=VIC)
    assert missing["text"].startswith("✗ status nowhere")
    assert "No environment 'nowhere'" in text_of(missing)


def test_help_and_usage_answer_at_once(slack: Slack) -> None:
    response, path = slack.send("help", user=VIC)
    assert response.status_code == 200
    assert "/stackyard env create NAME --from PARENT" in text_of(response.json())

    for text, problem in (
        ("env frobnicate x", "Unknown command 'env frobnicate'"),
        ("env create", "env create takes one name"),
        ("env create x --from", "--from needs a value"),
        ("env create x --from p --ttl soon", "Invalid --ttl"),
        ("env extend x", "env extend needs --ttl"),
        ("env create x --force", "env create has no option --force"),
        ('approve "unbalanced', "Cannot read the command"),
    ):
        response, path = slack.send(text, user=VIC)
        assert response.status_code == 200, response.text
        answer = text_of(response.json())
        assert problem in answer, (text, answer)
        assert "`/stackyard env list`" in answer
    time.sleep(0.5)  # nothing runs in the background: nothing is posted
    assert not slack.receiver.posts.get(path)


# -- the governed road: create, extend, destroy (parked), approve -------------------------------


def test_create_extend_destroy_and_approve(slack: Slack) -> None:
    gated = f"{slack.env}-gated"
    ack, created = slack.ask(f"env create {gated} --from {slack.env} --ttl 2h", user=ALICE)
    assert "on it" in ack["text"]
    assert created["text"] == f"✓ env create {gated} --from {slack.env} --ttl 2h"
    assert f"Created environment `{gated}` (type lite, from `{slack.env}`)" in text_of(created)

    _, extended = slack.ask(f"env extend {gated} --ttl 3h", user=ALICE)
    assert extended["text"].startswith(f"✓ {gated} now expires in 2h5")  # 2h59m, rounded down

    _, parked = slack.ask(f"env destroy {gated}", user=ALICE)
    assert parked["text"] == f"⏸ env destroy {gated} awaits approval"
    deployment = text_of(parked).split("`/stackyard approve ")[1].split("`")[0]

    _, pending = slack.ask("approvals", user=VIC)
    assert f"`{deployment}` in `{gated}` by alice" in text_of(pending)

    _, own = slack.ask(f"approve {deployment} my own", user=ALICE)  # an owner, no approver
    assert own["text"] == f"✗ approve {deployment} my own"
    assert f"alice may not approve in environment '{gated}'" in text_of(own)

    _, approved = slack.ask(f"approve {deployment} looks right", user=BOB)
    assert approved["text"] == f"✓ approve {deployment} looks right", text_of(approved)
    assert f"of `{gated}`" in text_of(approved)

    from stackyard.environments.workspace import Workspace

    with Workspace.open(dataclasses.replace(slack.settings, actor=ADMIN)) as ws:
        record = ws.records.environment(gated)
        assert record is not None and record.status == "destroyed"

    events = audit(slack)
    service = {(e["actor"], e["action"], e["result"]) for e in events}
    assert ("alice", "env.create", "ok") in service
    assert ("alice", "env.extend", "ok") in service
    assert ("bob", "approve", "ok") in service
    chat = [e for e in events if e["action"] == "chat.command"]
    assert {(e["actor"], e["detail"]["command"], e["result"]) for e in chat} >= {
        ("alice", f"env create {gated} --from {slack.env} --ttl 2h", "ok"),
        ("alice", f"env extend {gated} --ttl 3h", "ok"),
        ("alice", f"env destroy {gated}", "ok"),
        ("alice", f"approve {deployment} my own", "denied"),
        ("bob", f"approve {deployment} looks right", "ok"),
    }
    assert all(e["detail"]["via"] == "slack" for e in chat)
    assert {e["detail"]["slack"]["user"] for e in chat} >= {ALICE, BOB}


# -- RBAC --------------------------------------------------------------------------------------


def test_a_viewer_cannot_create_or_destroy(slack: Slack) -> None:
    _, create = slack.ask(f"env create {slack.env}-v --from {slack.env}", user=VIC)
    assert create["text"] == f"✗ env create {slack.env}-v --from {slack.env}"
    assert f"Not permitted: vic may not env.create in environment '{slack.env}-v'" in text_of(
        create
    )

    _, destroy = slack.ask(f"env destroy {slack.env}", user=VIC)
    assert f"vic may not env.destroy in environment '{slack.env}'" in text_of(destroy)

    from stackyard.environments.workspace import Workspace

    with Workspace.open(dataclasses.replace(slack.settings, actor=ADMIN)) as ws:
        assert ws.records.environment(f"{slack.env}-v") is None
        kept = ws.records.environment(slack.env)
        assert kept is not None and kept.status == "ready"
    events = [e for e in audit(slack) if e["actor"] == "vic"]
    refused = {(e["action"], e["target"], e["result"]) for e in events}
    assert ("env.create", f"env:{slack.env}-v", "denied") in refused
    assert ("env.destroy", f"env:{slack.env}", "denied") in refused
    assert ("chat.command", f"env:{slack.env}", "denied") in refused
    assert all(e["detail"]["via"] == "slack" for e in events if e["action"] == "chat.command")


# -- refusals ----------------------------------------------------------------------------------


def test_an_unmapped_user_is_told_how_to_get_mapped(slack: Slack) -> None:
    for user, team in (("UNOBODY", TEAM), (ALICE, "T0OTHER")):  # alice is mapped in TEAM only
        response, path = slack.send("env list", user=user, team=team)
        assert response.status_code == 200
        answer = response.json()
        assert answer["response_type"] == "ephemeral"
        assert answer["text"] == "✗ Your Slack user is not mapped to a stackyard user"
        assert f"`{team}:{user}=YOUR_STACKYARD_USER`" in text_of(answer)
        assert "STACKYARD_SLACK_USERS" in text_of(answer)
    time.sleep(0.5)
    assert not slack.receiver.posts.get(path)


def test_a_bad_signature_is_refused(slack: Slack) -> None:
    response, _ = slack.send("env list", user=VIC, secret="not-the-signing-secret")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "Not authenticated"

    body = b"team_id=T0TEST&user_id=UVIC&text=env+list&command=%2Fstackyard"
    for headers in (
        {},  # unsigned
        {"X-Slack-Request-Timestamp": str(int(time.time()))},
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
    ):
        import httpx

        refused = httpx.post(
            f"{slack.url}/api/v1/integrations/slack/commands", content=body, headers=headers
        )
        assert refused.status_code == 401, headers

    # Slack's certificate check may come unsigned: answered, nothing run
    check = httpx.post(
        f"{slack.url}/api/v1/integrations/slack/commands", content=b"ssl_check=1&token=x"
    )
    assert check.status_code == 200
    assert check.json()["text"] == ""


def test_an_old_timestamp_is_refused(slack: Slack) -> None:
    old = str(int(time.time()) - 6 * 60)  # signed correctly, six minutes ago
    response, _ = slack.send("env list", user=VIC, timestamp=old)
    assert response.status_code == 401
    ahead = str(int(time.time()) + 6 * 60)
    assert slack.send("env list", user=VIC, timestamp=ahead)[0].status_code == 401
    recent = str(int(time.time()) - 60)
    assert slack.send("env list", user=VIC, timestamp=recent)[0].status_code == 200


def test_response_url_must_be_slack_or_loopback(slack: Slack) -> None:
    for url in ("http://hooks.slack.com/x", "https://example.com/hook", "file:///etc/passwd"):
        response, _ = slack.send("env list", user=VIC, response_url=url)
        assert response.status_code == 400, url
        assert response.json()["detail"] == "Invalid response_url"


def test_a_large_body_is_refused(slack: Slack) -> None:
    response, _ = slack.send("approve x " + "y" * 20_000, user=VIC)
    assert response.status_code == 413


def test_off_without_a_signing_secret(slack: Slack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACKYARD_SLACK_SIGNING_SECRET")
    response, _ = slack.send("env list", user=VIC)
    assert response.status_code == 404
    assert "STACKYARD_SLACK_SIGNING_SECRET" in response.json()["detail"]


def test_an_invalid_user_map_refuses_everyone(
    slack: Slack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKYARD_SLACK_USERS", f"{TEAM}:{ALICE}=alice, oops")
    response, _ = slack.send("env list", user=ALICE)
    assert response.status_code == 200
    assert response.json()["text"] == "✗ The server's Slack user map is invalid"
    assert any("Invalid Slack user map entry 'oops'" in line for line in slack.logs.lines)


def test_the_signing_secret_is_never_shown(slack: Slack) -> None:
    import httpx

    assert len(slack.seen) > 20  # every answer and message of this module's tests
    openapi = httpx.get(f"{slack.url}/openapi.json").text
    assert "/api/v1/integrations/slack/commands" in openapi
    for text in [*slack.seen, openapi, slack.logs.text(), *(str(e) for e in audit(slack))]:
        assert slack.secret not in text
    assert any("slack: alice runs 'env create" in line for line in slack.logs.lines)


def test_the_user_map_is_checked() -> None:
    from stackyard.integrations.slack import SlackConfig

    good = SlackConfig.from_env(
        {
            "STACKYARD_SLACK_SIGNING_SECRET": "sekrit-1234",
            "STACKYARD_SLACK_USERS": "T1:U1=a, U2=b # comment\nU3=c",
        }
    )
    assert good is not None and good.problem is None
    assert (good.user("T1", "U1"), good.user("T9", "U1"), good.user("T9", "U3")) == ("a", None, "c")
    assert "sekrit-1234" not in repr(good)
    for bad in ("U1", "u1=a", "T1:U1:X=a", "U1=", "U1=-a"):
        config = SlackConfig.from_env(
            {"STACKYARD_SLACK_SIGNING_SECRET": "s", "STACKYARD_SLACK_USERS": bad}
        )
        assert config is not None and config.problem and not config.users, bad
    assert SlackConfig.from_env({"STACKYARD_SLACK_USERS": "U1=a"}) is None
