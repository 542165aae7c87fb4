"""The service layer decides what the CLI only asks and renders: what a destroy or a removal
needs confirming (and what is refused before anyone is asked), grants parsed from flags, and
read models that check access and return data, on a real state store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stackyard.environments import confirmation, grants, state, views
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError, PermissionDeniedError
from stackyard.model.environment import Environment
from stackyard.policy.rbac import ORG, Grant, Role
from stackyard.settings import Settings

pytestmark = pytest.mark.integration


def _open(home: Path, actor: str) -> Workspace:
    return Workspace.open(Settings.load(home=home, actor=actor, environ={}))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    from stackyard.state import open_store
    from stackyard.state.governance import Governance

    with open_store(Settings.load(home=home, environ={})) as store:
        Governance(store).grant(Grant("user:ann", Role.ADMIN, ORG), by="test")  # no bootstrap
        Governance(store).grant(Grant("user:vic", Role.VIEWER, "env:child"), by="test")
    with _open(home, "ann") as ws:
        for env in (
            Environment(name="parent", type="development", status="ready"),
            Environment(name="child", type="development", status="ready", parent="parent"),
            Environment(name="planned", type="development", status="declared"),
        ):
            ws.records.put_environment(env)
    return home


@pytest.fixture
def ann(home: Path) -> Iterator[Workspace]:
    with _open(home, "ann") as ws:
        yield ws


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ("parent", "Environment 'parent' has children: child"),
        ("planned", "Environment 'planned' is only declared"),
        ("ghost", "No environment 'ghost'"),
    ],
    ids=["has-children", "only-declared", "unknown"],
)
def test_a_destroy_that_would_be_refused_is_refused_before_anyone_is_asked(
    ann: Workspace, env: str, refusal: str
) -> None:
    with pytest.raises(InvalidInputError, match=refusal):
        confirmation.destroy(ann, env)


def test_what_a_destroy_and_a_removal_ask(ann: Workspace) -> None:
    asked = confirmation.destroy(ann, "child")
    assert asked.question == "Destroy environment 'child' and its 0 resource(s)?"
    assert asked.to_json()["action"] == "env.destroy"
    removal = confirmation.remove(ann, "child", workload="hello")
    assert (removal.what, removal.question) == (
        "workload 'hello'",
        "Remove workload 'hello' from 'child'?",
    )
    with pytest.raises(InvalidInputError, match="No environment 'ghost'"):
        confirmation.remove(ann, "ghost", resource="postgres.default#x.db")


def test_a_viewer_sees_only_where_granted(home: Path) -> None:
    with _open(home, "vic") as vic:
        assert views.environment(vic, "child").to_json()["parent"] == "parent"
        assert state.lock(vic, "child").to_json() is None
        assert state.resources(vic, "child").to_json()["resources"] == []
        with pytest.raises(PermissionDeniedError):
            confirmation.destroy(vic, "parent")
        with pytest.raises(PermissionDeniedError):
            state.intents(vic, "parent")
        with pytest.raises(PermissionDeniedError):
            views.environments(vic)  # an org-wide list needs an org-wide role
        with pytest.raises(PermissionDeniedError):
            grants.grant(vic, Grant("user:vic", Role.ADMIN, ORG))
    with _open(home, "ann") as ws:
        events = views.audit(ws)
    assert [(e.actor, e.action, e.result) for e in events][-1] == ("vic", "access.manage", "denied")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"user": "ann", "env": "prod"}, Grant("user:ann", Role.APPROVER, "env:prod")),
        (
            {"team": "shop", "env_type": "staging"},
            Grant("team:shop", Role.APPROVER, "type:staging"),
        ),
        ({"user": "ann"}, Grant("user:ann", Role.APPROVER, ORG)),
        ({"user": "ann", "team": "shop"}, "Give --user or --team"),
        ({}, "Give --user or --team"),
        ({"user": "ann", "env": "a", "env_type": "b"}, "Give --env or --type, not both"),
    ],
    ids=["user-env", "team-type", "org", "both-subjects", "no-subject", "both-scopes"],
)
def test_grants_parse_their_flags(flags: dict[str, str], expected: Grant | str) -> None:
    args = {"user": None, "team": None, "env": None, "env_type": None, **flags}
    if isinstance(expected, Grant):
        assert grants.parse("approver", **args) == expected
    else:
        with pytest.raises(InvalidInputError, match=expected):
            grants.parse("approver", **args)


def test_grant_and_revoke_report_what_changed(ann: Workspace) -> None:
    g = grants.parse("developer", user="dev", team=None, env="child", env_type=None)
    assert grants.grant(ann, g).to_json() == {**g.to_json(), "added": True}
    assert grants.grant(ann, g).changed is False
    assert grants.revoke(ann, g).to_json() == {**g.to_json(), "removed": True}
    assert grants.revoke(ann, g).changed is False
    with pytest.raises(InvalidInputError, match="Unknown role 'boss'"):
        grants.parse("boss", user="dev", team=None, env=None, env_type=None)
    assert grants.role_table().to_json()["access.manage"] == {"roles": ["admin"], "scoped": False}
