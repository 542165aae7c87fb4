"""``remove`` and ``webhooks`` through a real server: a workload's removal, an unused
resource's (``--resource``), their refusals and the confirmation question the server computes;
the webhooks listed, dispatched and delivered to a real receiver, their deliveries listed and
one redelivered: the same ``--output json`` (ids and times aside), text and exit status as
local mode on an identical home. A viewer is refused each of them over HTTP (403, nothing
queued) and through the CLI (exit 6). The webhooks' secret is in no output."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _hooksupport import Hooked, receiving
from _remotesupport import ME, differences, normalise
from test_remote_day2 import VIEWER, Warm, _viewer, quiet_twin  # noqa: F401  (a fixture)

from _cli import Result
from _lite import lite_platform, sleeper_score

pytestmark = pytest.mark.integration

#: The webhook's secret, in the environment of the server and of the local runs.
SECRET_ENV = "REMOTE_TEST_HOOK_SECRET"
SECRET = "whsec-remote-canary-5e81d0c2"
_WHEN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d( UTC)?")
_DELIVERY = re.compile(r"\bwd_[0-9a-f]{16}\b")


@pytest.fixture
def hooked(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[tuple[Warm, Hooked]]:
    """The quiet twin homes (no periodic steps: ``webhooks deliver`` is what sends), the
    webhook secret set for the server and the local runs, and a receiver."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with receiving() as hook:
        warm: Warm = request.getfixturevalue("quiet_twin")
        yield warm, hook


def _platform(work: Path, env: str, url: str) -> Path:
    folder = work / "platform"
    folder.mkdir()
    webhook = (
        "---\n"
        "apiVersion: stackyard.dev/v1\n"
        "kind: Webhook\n"
        "metadata: {name: all-events}\n"
        "spec:\n"
        f"  url: {url}\n"
        "  events: ['*']\n"
        f"  secret_env: {SECRET_ENV}\n"
    )
    (folder / "platform.yaml").write_text(lite_platform(env) + webhook)
    return folder


def _orphan(home: Path, env: str, workload: str) -> str:
    """Make ``workload``'s resource an orphan in ``home`` (its record gone, its process
    stopped, as after a failed removal): the resource's uid."""
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    with Workspace.open(Settings.load(home=home, actor=ME, environ={})) as ws:
        (uid,) = {w.name: w for w in ws.records.workloads(env)}[workload].uids
        ws.runtime(env).stop(workload)
        ws.records.record_deploy(env, put_workloads=[], drop_workloads=[workload], put_instances=[])
        return uid


def _uid(home: Path, env: str, workload: str) -> str:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    with Workspace.open(Settings.load(home=home, actor=ME, environ={})) as ws:
        (uid,) = {w.name: w for w in ws.records.workloads(env)}[workload].uids
        return uid


def flow(cli: Callable[..., Result], home: Path, work: Path, env: str, url: str) -> list[Result]:
    """Removals (text, JSON, refusals, an orphan resource), then the webhooks commands."""
    work.mkdir(parents=True)
    app, keep = work / "app.yaml", work / "keep.yaml"
    app.write_text(sleeper_score("app"))
    keep.write_text(sleeper_score("keep"))
    for args in (
        ("platform", "apply", str(_platform(work, env, url)), "--yes"),
        ("env", "create", env),
        ("deploy", str(app), "--env", env, "--yes"),
        ("deploy", str(keep), "--env", env, "--yes"),
    ):
        done = cli(*args)
        assert done.code == 0, str(done)
    used = _uid(home, env, "keep")
    runs = [
        cli("remove", "app", "--env", env),  # no terminal: the question, refused (2)
        cli("remove", "app", "--env", env, "--yes"),
        cli("deploy", str(app), "--env", env, "--yes"),
        cli("remove", "app", "--env", env, "--yes", "-o", "json"),
        cli("remove", "ghost", "--env", env, "--yes"),  # no such workload (2)
        cli("remove", "--resource", used, "--env", env, "--yes"),  # still used (2)
        cli("remove", "--resource", "volume.nothing", "--env", env, "--yes", "-o", "json"),
        cli("remove", "app", "--resource", used, "--env", env, "--yes"),  # both (2)
    ]
    orphan = _orphan(home, env, "keep")
    runs += [
        cli("remove", "--resource", orphan, "--env", env),  # the question again (2)
        cli("remove", "--resource", orphan, "--env", env, "--yes", "-o", "json"),
        cli("webhooks", "list", "-o", "json"),
        cli("webhooks", "deliver", "-o", "json"),
        cli("webhooks", "deliveries", "-o", "json"),
        cli("webhooks", "deliveries", "--limit", "2", "--status", "delivered", "-o", "json"),
        cli("webhooks", "deliveries", "--webhook", "all-events", "--limit", "3"),
        cli("webhooks", "list"),
        cli("webhooks", "list", "-o", "json"),
    ]
    newest = runs[-5].json()["deliveries"][0]["id"] if runs[-5].code == 0 else "wd_missing"
    runs += [
        cli("webhooks", "redeliver", newest, "-o", "json"),
        cli("webhooks", "redeliver", "wd_0000000000000000"),  # no such delivery (2)
        cli("webhooks", "deliver"),
        cli("webhooks", "deliveries", "--status", "pending", "-o", "json"),
    ]
    return runs


CODES = [2, 0, 0, 0, 2, 2, 2, 2, 2, 0] + [0] * 7 + [0, 2, 0, 0]


def _text(out: str, homes: tuple[Path, ...]) -> str:
    """Text output with delivery ids, home paths, ids and times replaced."""
    return str(_WHEN.sub("<when>", normalise(_DELIVERY.sub("<wd>", out), homes)))


def _error(err: str, homes: tuple[Path, ...]) -> str:
    """An error's text: from its ``error:`` line on (a job's progress lines come before)."""
    lines = err.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), 0)
    return _text("\n".join(lines[start:]), homes)


def _json(value: Any, homes: tuple[Path, ...]) -> Any:
    """A JSON document normalised: a delivery's ``body`` (the event sent, as text) parsed,
    delivery ids replaced."""

    def parsed(v: Any) -> Any:
        if isinstance(v, dict):
            return {
                k: parsed(json.loads(x) if k == "body" and isinstance(x, str) else x)
                for k, x in v.items()
            }
        if isinstance(v, list):
            return [parsed(x) for x in v]
        return _DELIVERY.sub("<wd>", v) if isinstance(v, str) else v

    return normalise(parsed(value), homes)


def test_remove_and_webhooks_same_as_local(hooked: tuple[Warm, Hooked], tmp_path: Path) -> None:
    warm, hook = hooked
    twin = warm.twin
    env = f"m{secrets.token_hex(4)}"
    local = flow(warm.local_cli, twin.local, tmp_path / "l", env, hook.url)
    sent_locally = len(hook.bodies)
    remote = flow(warm.remote_cli, twin.remote_home, tmp_path / "r", env, hook.url)
    homes = (twin.local, twin.remote_home, tmp_path / "l", tmp_path / "r")
    assert [r.code for r in local] == CODES, "\n".join(map(str, local))
    for mine, theirs in zip(local, remote, strict=True):
        assert theirs.code == mine.code, str(theirs)
        assert SECRET not in theirs.out + theirs.err, str(theirs)
        if mine.code != 0:  # an error: the same message and hint (after a job's progress)
            assert _error(theirs.err, homes) == _error(mine.err, homes), str(theirs)
            assert _text(theirs.out, homes) == _text(mine.out, homes), str(theirs)
        elif "-o" not in mine.args:  # text: the same lines
            assert _text(theirs.out, homes) == _text(mine.out, homes), str(theirs)
        else:
            a, b = mine.json(), theirs.json()
            if mine.args[:2] == ("webhooks", "deliver"):  # sent in no particular order
                for doc in (a, b):
                    doc["deliveries"].sort(key=lambda d: d["event_seq"])
            diff = differences(_json(a, homes), _json(b, homes))
            assert not diff, f"{' '.join(theirs.args)}: local != remote at " + "; ".join(diff)

    # what the runs did, read from the remote side
    assert "Confirmation needed: Remove workload 'app' from" in remote[0].err
    assert f"removed workload 'app' from {env}" in remote[1].out
    assert remote[3].json()["deployment"]["kind"] == "remove"
    assert remote[3].json()["deployment"]["status"] == "succeeded"
    assert "still used by live workload(s): keep" in remote[5].err
    assert "Confirmation needed: Remove resource" in remote[8].err
    gone = remote[9].json()
    assert gone["deployment"]["status"] == "succeeded"
    assert gone["plan"]["summary"]["delete"] >= 1
    listed = remote[10].json()["webhooks"]
    assert [w["name"] for w in listed] == ["all-events"]
    assert listed[0]["secret_set"] is True and listed[0]["last_delivery"] is None
    ran = remote[11].json()
    assert ran["dispatched"] == ran["sent"] > 0
    assert {d["status"] for d in ran["deliveries"]} == {"delivered"}
    assert len(remote[12].json()["deliveries"]) == ran["sent"]
    assert len(remote[13].json()["deliveries"]) == 2
    assert remote[16].json()["webhooks"][0]["last_delivery"]["status"] == "delivered"
    assert remote[17].json()["status"] == "pending" and remote[17].json()["attempts"] == 0
    assert "0 new delivery(ies), 1 sent now" in remote[19].out
    assert remote[20].json()["deliveries"] == []
    # the remote deliveries were sent by the server, as many as the local ones
    assert len(hook.bodies) == 2 * sent_locally
    assert all(SECRET.encode() not in b for b in hook.bodies)
    assert not (twin.config / "no-home").exists()  # the remote runs never touched a home


def test_a_viewer_cannot_remove_or_touch_webhooks(
    hooked: tuple[Warm, Hooked], tmp_path: Path
) -> None:
    warm, hook = hooked
    twin = warm.twin
    env = f"m{secrets.token_hex(4)}"
    app = tmp_path / "app.yaml"
    app.write_text(sleeper_score("app"))
    for args in (
        ("platform", "apply", str(_platform(tmp_path, env, hook.url)), "--yes"),
        ("env", "create", env),
        ("deploy", str(app), "--env", env, "--yes"),
    ):
        done = warm.remote_cli(*args)
        assert done.code == 0, str(done)
    token = _viewer(twin)
    as_viewer: dict[str, Any] = {"STACKYARD_TOKEN": token}
    refusals: tuple[tuple[str, ...], ...] = (
        ("remove", "app", "--env", env, "--yes"),
        ("remove", "--resource", "volume.data", "--env", env, "--yes"),
        ("webhooks", "list"),
        ("webhooks", "deliveries"),
        ("webhooks", "deliver"),
        ("webhooks", "redeliver", "wd_0000000000000000"),
    )
    for refusal in refusals:
        refused = warm.remote_cli(*refusal, **as_viewer)
        assert refused.code == 6, str(refused)

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=twin.url, headers=headers, timeout=60) as http:
        # the question is a read: a viewer may see it, not act on it
        asked = http.get(f"/api/v1/environments/{env}/remove", params={"workload": "app"})
        assert asked.status_code == 200, asked.text
        assert asked.json()["question"] == f"Remove workload 'app' from '{env}'?"
        for method, path, body in (
            ("POST", f"/api/v1/environments/{env}/remove", {"workload": "app"}),
            ("POST", f"/api/v1/environments/{env}/remove", {"resource": "volume.data"}),
            ("GET", "/api/v1/webhooks", None),
            ("GET", "/api/v1/webhooks/deliveries", None),
            ("POST", "/api/v1/webhooks/deliver", None),
            ("POST", "/api/v1/webhooks/deliveries/wd_0000000000000000/redeliver", None),
        ):
            answer = http.request(method, path, json=body)
            assert answer.status_code == 403, f"{path}: {answer.status_code} {answer.text}"
            assert answer.json()["exit_code"] == 6
        jobs = http.get("/api/v1/jobs").json()["items"]
        assert [j["kind"] for j in jobs if j["actor"] == VIEWER] == []  # nothing queued
    # an admin's request naming neither, or an unknown environment: refused, nothing queued
    admin = {"Authorization": f"Bearer {twin.token}"}
    with httpx.Client(base_url=twin.url, headers=admin, timeout=60) as http:
        neither = http.post(f"/api/v1/environments/{env}/remove", json={})
        assert neither.status_code == 400 and neither.json()["exit_code"] == 2, neither.text
        assert not [j for j in http.get("/api/v1/jobs").json()["items"] if j["kind"] == "remove"]
        unknown = http.get("/api/v1/environments/nowhere/remove", params={"workload": "app"})
        assert unknown.status_code in (400, 404) and unknown.json()["exit_code"] == 2
    # the app is still there: nothing was removed
    shown = warm.remote_cli("status", env, "-o", "json")
    assert "app" in shown.json()["workloads"], str(shown)
    assert hook.bodies == []  # nothing was delivered by the viewer's 'deliver'
