"""The RBAC matrix over HTTP: every role × action × scope cell, asked of a real server with a
real token. A cell the table allows answers anything but 401/403 (a long operation: 202, and
its job is cancelled before any worker could run it, as this server has none); a cell it
does not allow answers 403 with the CLI's exit code 6. The intent is stated independently of
``permits``, as in tests/integration/test_rbac_matrix.py."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from _apisupport import ADMIN, Live

from _lite import sleeper_score
from stackyard.policy.rbac import ORG, SCOPED, TABLE, Action, Grant, Role

pytestmark = pytest.mark.integration

USER = "mallory"
TYPE, OTHER_TYPE, OTHER_ENV = "lite", "development", "else-dev"

#: Actions the API has no route for (they stay CLI-only on the server's home).
NO_ROUTE = {
    Action.OUTPUTS_REVEAL_ADMIN: "not a refusal: it decides which secrets a reveal shows",
    Action.COMPONENT_PUBLISH: "publishing builds runs on the builder's machine",
    Action.COMPONENT_DEPRECATE: "with publishing",
    Action.STATE_UNLOCK: "breaking a lock is a CLI repair on the server's home",
}


#: What an allowed request answers (the service goes on past the check to its own answer).
ALLOWED = {
    Action.VIEW: 200,
    Action.LOGS_READ: 404,  # no such workload: decided after the check
    Action.OUTPUTS_REVEAL: 200,
    Action.DEPLOY: 200,  # the plan
    Action.RELEASE_CREATE: 200,
    Action.PROMOTE: 202,
    Action.APPROVE: 202,
    Action.ENV_CREATE: 202,
    Action.ENV_EXTEND: 400,  # a lite environment has no TTL: decided after the check
    Action.ENV_DESTROY: 202,
    Action.ENV_REAP: 202,
    Action.PLATFORM_APPLY: 200,
    Action.AUDIT_READ: 200,
    Action.ACCESS_MANAGE: 200,
}


def scopes(env: str) -> dict[str, str]:
    return {
        "org": ORG,
        "same-type": f"type:{TYPE}",
        "same-env": f"env:{env}",
        "other-type": f"type:{OTHER_TYPE}",
        "other-env": f"env:{OTHER_ENV}",
    }


def expected(role: Role, action: Action, where: str) -> bool:
    if role not in TABLE[action]:
        return False
    return where in ({"org", "same-type", "same-env"} if action in SCOPED else {"org"})


Request = Callable[[httpx.Client], httpx.Response]


@pytest.fixture(scope="module")
def requests(quiet_live: Live) -> dict[Action, Request]:
    """One request per action that exercises exactly that action's check."""
    env = quiet_live.env
    score = sleeper_score("sleeper")
    with quiet_live.client(ADMIN) as c:
        made = c.post("/api/v1/releases", json={"scores": {"score.yaml": score}, "env": env})
        assert made.status_code == 200, made.text
        release = made.json()["id"]
        deployment = c.get(f"/api/v1/environments/{env}/deployments").json()["items"][0]["id"]
        platform = (quiet_live.home.parent / "platform" / "platform.yaml").read_text()
    return {
        Action.VIEW: lambda c: c.get(f"/api/v1/environments/{env}"),
        Action.LOGS_READ: lambda c: c.get(f"/api/v1/environments/{env}/logs/nothing"),
        Action.OUTPUTS_REVEAL: lambda c: c.get(
            f"/api/v1/environments/{env}/outputs", params={"reveal": "true"}
        ),
        Action.DEPLOY: lambda c: c.post(
            f"/api/v1/environments/{env}/deploy",
            json={"scores": {"score.yaml": score}, "plan_only": True},
        ),
        Action.RELEASE_CREATE: lambda c: c.post(
            "/api/v1/releases", json={"scores": {"score.yaml": score}, "env": env}
        ),
        Action.PROMOTE: lambda c: c.post("/api/v1/promote", json={"release": release, "to": env}),
        Action.APPROVE: lambda c: c.post(f"/api/v1/approvals/{deployment}/approve", json={}),
        Action.ENV_CREATE: lambda c: c.post(
            "/api/v1/environments", json={"name": env, "type": TYPE}
        ),
        Action.ENV_EXTEND: lambda c: c.post(
            f"/api/v1/environments/{env}/extend", json={"ttl": "1h"}
        ),
        Action.ENV_DESTROY: lambda c: c.delete(f"/api/v1/environments/{env}"),
        Action.ENV_REAP: lambda c: c.post("/api/v1/reap"),
        Action.PLATFORM_APPLY: lambda c: c.post(
            "/api/v1/platform/apply", json={"files": {"platform.yaml": platform}, "dry_run": True}
        ),
        Action.AUDIT_READ: lambda c: c.get("/api/v1/audit"),
        Action.ACCESS_MANAGE: lambda c: c.post(
            "/api/v1/access/grants/revoke", json={"role": "viewer", "user": "nobody-at-all"}
        ),
    }


@pytest.fixture(scope="module")
def mallory(quiet_live: Live) -> Iterator[httpx.Client]:
    with quiet_live.client(USER) as c:
        yield c


def test_every_action_has_a_route_or_a_reason(requests: dict[Action, Request]) -> None:
    assert set(requests) | set(NO_ROUTE) == set(Action)
    assert set(ALLOWED) == set(requests)
    assert not set(requests) & set(NO_ROUTE)


CELLS = list(itertools.product(Role, [a for a in Action if a not in NO_ROUTE], scopes("x")))


@pytest.mark.parametrize(
    ("role", "action", "where"), CELLS, ids=[f"{r.value}-{a.value}-{w}" for r, a, w in CELLS]
)
def test_cell(
    quiet_live: Live,
    requests: dict[Action, Request],
    mallory: httpx.Client,
    role: Role,
    action: Action,
    where: str,
) -> None:
    from stackyard.state import open_store
    from stackyard.state.governance import Governance

    grant = Grant(f"user:{USER}", role, scopes(quiet_live.env)[where])
    with open_store(quiet_live.settings) as store:
        Governance(store).grant(grant, by="test")
    try:
        response = requests[action](mallory)
        if response.status_code == 202:  # queued, never run: this server has no worker
            cancelled = mallory.post(f"/api/v1/jobs/{response.json()['id']}/cancel")
            assert cancelled.status_code == 200, cancelled.text
        if expected(role, action, where):
            assert response.status_code == ALLOWED[action], response.text
        else:
            assert response.status_code == 403, response.text
            body: dict[str, Any] = response.json()
            assert body["exit_code"] == 6, body
            assert body["detail"].startswith(f"{USER} may not "), body
    finally:
        with open_store(quiet_live.settings) as store:
            Governance(store).revoke(grant)


@pytest.mark.parametrize("action", [a for a in Action if a not in NO_ROUTE], ids=str)
def test_deny_by_default(
    requests: dict[Action, Request], mallory: httpx.Client, action: Action
) -> None:
    response = requests[action](mallory)
    assert response.status_code == 403, response.text
