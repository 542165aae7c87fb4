"""Long operations through a real server with its in-process worker: a deploy is accepted
(202, Location), runs as a job, streams its events as server-sent events and ends
succeeded; a canary secret never shows in a response, an event stream or the server's log,
except where it is revealed on purpose (which is audited)."""

from __future__ import annotations

import json
import textwrap

import httpx
import pytest
from _apisupport import ADMIN, Live

pytestmark = pytest.mark.integration

SCORE = textwrap.dedent(
    """\
    apiVersion: score.dev/v1b1
    metadata: {name: reader}
    containers:
      main:
        image: none
        command: ["sh", "-c", "sleep 3600"]
        variables:
          TOKEN: ${resources.secret.token}
          DATA_DIR: ${resources.data.path}
    resources:
      secret: {type: canary}
      data: {type: volume}
    """
)


def sse(client: httpx.Client, path: str, **headers: str) -> tuple[str, list[dict]]:
    """The whole event stream of ``path`` (it ends when the job ends) and its events."""
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "data" in fields:
            events.append(
                {"id": fields.get("id"), "event": fields.get("event"), **json.loads(fields["data"])}
            )
    return text, events


def test_a_deploy_is_a_job_with_events_and_no_secret_leaks(live: Live) -> None:
    env = live.env
    with live.client(ADMIN) as c:
        planned = c.post(
            f"/api/v1/environments/{env}/deploy",
            json={"scores": {"score.yaml": SCORE}, "plan_only": True},
        )
        assert planned.status_code == 200, planned.text
        assert planned.json()["deployment"]["status"] == "planned" or planned.json()["plan"]

        accepted = c.post(
            f"/api/v1/environments/{env}/deploy", json={"scores": {"score.yaml": SCORE}}
        )
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        assert job["kind"] == "deploy" and job["env"] == env and job["actor"] == ADMIN
        assert accepted.headers["location"] == f"/api/v1/jobs/{job['id']}"

        stream, events = sse(c, f"/api/v1/jobs/{job['id']}/events")
        progress = [e for e in events if e["event"] == "progress"]
        end = events[-1]
        assert end["event"] == "end"
        assert end["status"] == "succeeded", end
        assert progress, stream
        seqs = [int(e["id"]) for e in progress]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        done = c.get(accepted.headers["location"]).json()
        assert done["status"] == "succeeded"
        result = done["result"]
        assert result["deployment"]["status"] == "succeeded"
        assert "reader" in result["workloads"]

        # resuming after the second event replays only what came after it
        if len(progress) >= 2:
            _, rest = sse(
                c, f"/api/v1/jobs/{job['id']}/events", **{"Last-Event-ID": progress[1]["id"]}
            )
            assert [e["id"] for e in rest if e["event"] == "progress"] == [
                e["id"] for e in progress[2:]
            ]

        masked = c.get(f"/api/v1/environments/{env}/outputs").json()
        tokens = [e["outputs"]["token"] for e in masked.values() if "token" in e["outputs"]]
        assert tokens == ["(secret)"], masked
        revealed = c.get(f"/api/v1/environments/{env}/outputs", params={"reveal": "true"}).json()
        secret = next(e["outputs"]["token"] for e in revealed.values() if "token" in e["outputs"])
        assert secret and secret != "(secret)" and len(secret) >= 20

        audit = c.get("/api/v1/audit", params={"limit": 500}).json()["items"]
        assert any(e["action"] == "outputs.reveal" and e["actor"] == ADMIN for e in audit)

        seen = [
            stream,
            json.dumps(job),
            json.dumps(done),
            json.dumps(masked),
            c.get(f"/api/v1/environments/{env}/status").text,
            c.get(f"/api/v1/environments/{env}/deployments").text,
            c.get(f"/api/v1/environments/{env}/deployments/{result['deployment']['id']}").text,
            c.get("/api/v1/audit", params={"limit": 500}).text,
            c.get("/api/v1/decisions").text,
            c.get("/api/v1/jobs").text,
            c.get(f"/api/v1/environments/{env}/logs/reader").text,
        ]
    for text in seen:
        assert secret not in text
    server_log = live.logs.text()
    assert server_log, "the capture saw no log line at all"
    assert secret not in server_log
    for token in live.tokens.values():
        assert token not in server_log
        for text in seen:
            assert token not in text


def test_reveal_needs_the_permission_and_a_refusal_is_audited(live: Live) -> None:
    from stackyard.environments.workspace import Workspace
    from stackyard.policy.rbac import Grant, Role

    with Workspace.open(live.as_user(ADMIN)) as ws:
        ws.governance.grant(Grant("user:vera", Role.VIEWER, f"env:{live.env}"), by="test")
    with live.client("vera") as c:
        assert c.get(f"/api/v1/environments/{live.env}/outputs").status_code == 200
        refused = c.get(f"/api/v1/environments/{live.env}/outputs", params={"reveal": "true"})
        assert refused.status_code == 403
        assert (
            refused.json()["detail"] == f"vera may not outputs.reveal in environment '{live.env}'"
        )
    with live.client(ADMIN) as c:
        audit = c.get("/api/v1/audit", params={"limit": 500}).json()["items"]
    assert any(
        e["actor"] == "vera" and e["action"] == "outputs.reveal" and e["result"] == "denied"
        for e in audit
    )


def test_environments_are_created_and_destroyed_by_jobs(live: Live) -> None:
    child = f"{live.env}-c"
    with live.client(ADMIN) as c:
        made = c.post("/api/v1/environments", json={"name": child, "type": "lite"})
        assert made.status_code == 202, made.text
        job = live.wait_job(c, made.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["result"]["environment"]["name"] == child
        assert job["result"]["created"] is True
        assert c.get(f"/api/v1/environments/{child}").json()["status"] == "ready"

        gone = c.delete(f"/api/v1/environments/{child}")
        assert gone.status_code == 202, gone.text
        job = live.wait_job(c, gone.json()["id"])
        assert job["status"] == "succeeded", job
        assert c.get(f"/api/v1/environments/{child}").status_code == 404


def test_a_failed_job_carries_the_problem(live: Live) -> None:
    bad = SCORE.replace("type: canary", "type: no-such-type")
    with live.client(ADMIN) as c:
        accepted = c.post(
            f"/api/v1/environments/{live.env}/deploy", json={"scores": {"score.yaml": bad}}
        )
        assert accepted.status_code == 202, accepted.text
        job = live.wait_job(c, accepted.json()["id"])
    assert job["status"] == "failed"
    assert job["error"]["exit_code"] == 2
    assert job["error"]["diagnostics"], job["error"]
    assert {"title", "detail", "hint"} <= set(job["error"])


def test_a_queued_job_can_be_cancelled_and_a_stranger_cannot_see_it(quiet_live: Live) -> None:
    with quiet_live.client(ADMIN) as c:
        accepted = c.post("/api/v1/reap")
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        with quiet_live.client("stranger") as s:
            assert s.get(f"/api/v1/jobs/{job_id}").status_code == 404
            assert s.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 404
        # a viewer sees the job, but seeing is not cancelling (only its author, or who may
        # do what it does)
        granted = c.post("/api/v1/access/grants", json={"role": "viewer", "user": "vera"})
        assert granted.status_code == 200, granted.text
        with quiet_live.client("vera") as v:
            assert v.get(f"/api/v1/jobs/{job_id}").status_code == 200
            refused = v.post(f"/api/v1/jobs/{job_id}/cancel")
            assert refused.status_code == 403, refused.text
        assert c.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
        cancelled = c.post(f"/api/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        again = c.post(f"/api/v1/jobs/{job_id}/cancel")
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("application/problem+json")
        _, events = sse(c, f"/api/v1/jobs/{job_id}/events")
        assert events[-1]["event"] == "end" and events[-1]["status"] == "cancelled"
        assert c.get("/api/v1/jobs/nope").status_code == 404
