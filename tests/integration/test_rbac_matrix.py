"""The RBAC matrix, generated from the one table: every (role × action × scope) cell is
checked through the service layer against grants in a real state store, and the test fails
when an action the service layer knows has no entry in the table."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError, PermissionDeniedError
from stackyard.model.environment import Environment
from stackyard.policy.rbac import ORG, SCOPED, TABLE, Action, Grant, Role
from stackyard.settings import Settings

pytestmark = pytest.mark.integration

ENV, TYPE, OTHER_ENV, OTHER_TYPE = "shop-dev", "development", "else-dev", "staging"
#: Where a grant can sit, relative to the target environment ``shop-dev`` (type development).
SCOPES = {
    "org": ORG,
    "same-type": f"type:{TYPE}",
    "same-env": f"env:{ENV}",
    "other-type": f"type:{OTHER_TYPE}",
    "other-env": f"env:{OTHER_ENV}",
}


def expected(role: Role, action: Action, where: str) -> bool:
    """The intent, stated independently of ``permits``: the table says which roles may act;
    environment actions accept grants at the org, the target's type or the target itself;
    organisation actions only org-wide grants."""
    if role not in TABLE[action]:
        return False
    covering = {"org", "same-type", "same-env"} if action in SCOPED else {"org"}
    return where in covering


def test_every_action_has_an_entry() -> None:
    assert set(TABLE) == set(Action), f"no table entry for: {set(Action) - set(TABLE)}"
    assert set(Action) >= SCOPED


def test_every_authorized_action_in_the_code_is_an_action() -> None:
    src = Path(__file__).resolve().parents[2] / "src" / "stackyard"
    used = set()
    for path in src.rglob("*.py"):
        text = path.read_text()
        if "from stackyard.policy.rbac import" not in text or path.name == "rbac.py":
            continue  # engine/plan.py has an Action enum of its own
        used.update(re.findall(r"\bAction\.([A-Z_]+)\b", text))
    names = set(used)
    assert names, "no Action.X references found"
    assert names <= {a.name for a in Action}, names - {a.name for a in Action}
    assert {a.name for a in Action} <= names, (
        f"actions the service layer never checks: {({a.name for a in Action}) - names}"
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    home = tmp_path_factory.mktemp("rbac") / "home"
    home.mkdir()
    settings = Settings.load(home=home, actor="mallory", environ={})
    from stackyard.state import open_store
    from stackyard.state.governance import Governance

    store = open_store(settings)
    Governance(store).grant(Grant("user:root-admin", Role.ADMIN, ORG), by="test")  # no bootstrap
    store.close()
    w = Workspace.open(settings)
    for name, type_ in ((ENV, TYPE), (OTHER_ENV, TYPE)):
        w.records.put_environment(Environment(name=name, type=type_, status="ready"))
    yield w
    w.close()


CELLS = list(itertools.product(Role, Action, SCOPES))


@pytest.mark.parametrize(
    ("role", "action", "where"), CELLS, ids=[f"{r.value}-{a.value}-{w}" for r, a, w in CELLS]
)
def test_cell(ws: Workspace, role: Role, action: Action, where: str) -> None:
    grant = Grant("user:mallory", role, SCOPES[where])
    ws.governance.grant(grant, by="test")
    try:
        env = ENV if action in SCOPED else None
        if expected(role, action, where):
            ws.access.authorize(action, env=env)
        else:
            with pytest.raises(PermissionDeniedError):
                ws.access.authorize(action, env=env)
    finally:
        ws.governance.revoke(grant)


@pytest.mark.parametrize("action", list(Action), ids=[a.value for a in Action])
def test_deny_by_default(ws: Workspace, action: Action) -> None:
    with pytest.raises(PermissionDeniedError):
        ws.access.authorize(action, env=ENV if action in SCOPED else None)


def test_team_grants_and_implicit_environment_owner(ws: Workspace, tmp_path: Path) -> None:
    from stackyard.environments.platform import apply_dir

    plat = tmp_path / "plat"
    plat.mkdir()
    (plat / "all.yaml").write_text(
        f"""\
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {{name: {TYPE}}}
spec: {{}}
---
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {{name: {OTHER_TYPE}}}
spec: {{}}
---
apiVersion: stackyard.dev/v1
kind: Team
metadata: {{name: shop}}
spec: {{members: [mallory]}}
"""
    )
    ws.governance.grant(Grant("user:mallory", Role.PLATFORM_ENGINEER, ORG), by="test")
    apply_dir(ws.platform, ws.access, plat, confirm=lambda _q: True)
    ws.governance.revoke(Grant("user:mallory", Role.PLATFORM_ENGINEER, ORG))
    with pytest.raises(PermissionDeniedError):
        ws.access.authorize(Action.DEPLOY, env=ENV)
    ws.governance.grant(Grant("team:shop", Role.DEVELOPER, f"env:{ENV}"), by="test")
    ws.access.authorize(Action.DEPLOY, env=ENV)
    with pytest.raises(PermissionDeniedError):
        ws.access.authorize(Action.DEPLOY, env=OTHER_ENV)
    ws.governance.revoke(Grant("team:shop", Role.DEVELOPER, f"env:{ENV}"))
    # owning an environment makes the team's members its environment-owners
    ws.records.put_environment(Environment(name=ENV, type=TYPE, status="ready", owner="shop"))
    ws.access.authorize(Action.ENV_DESTROY, env=ENV)
    with pytest.raises(PermissionDeniedError):
        ws.access.authorize(Action.ENV_DESTROY, env=OTHER_ENV)
    ws.records.put_environment(Environment(name=ENV, type=TYPE, status="ready"))


def test_at_least_one_admin(ws: Workspace) -> None:
    admins = [g for g in ws.governance.grants() if g.role is Role.ADMIN and g.scope == ORG]
    assert len(admins) == 1
    with pytest.raises(InvalidInputError, match="last admin"):
        ws.governance.revoke(admins[0])
    ws.governance.grant(Grant("user:second", Role.ADMIN, ORG), by="test")
    assert ws.governance.revoke(admins[0])
    with pytest.raises(InvalidInputError, match="last admin"):
        ws.governance.revoke(Grant("user:second", Role.ADMIN, ORG))
    ws.governance.grant(admins[0], by="test")


def test_state_reads_need_a_role(tmp_path: Path) -> None:
    """``stackyard state lock|list|intents`` are reads like any other: no role, no answer
    (they used to open the store directly, and answered anyone)."""
    import os
    import pwd

    from _as_user import cli
    from stackyard.state import open_store
    from stackyard.state.governance import Governance

    me = pwd.getpwuid(os.geteuid()).pw_name
    home = tmp_path / "home"
    with open_store(Settings.load(home=home, environ={})) as store:
        Governance(store).grant(Grant(f"user:{me}", Role.ADMIN, ORG), by="test")  # no bootstrap
        Governance(store).grant(Grant("user:vic", Role.VIEWER, "env:dev"), by="test")
        store.acquire("dev", holder="alice@laptop (pid 7)", ttl_s=60)
    for args in (["lock", "dev"], ["list", "dev"], ["intents", "dev"]):
        refused = cli(home, "state", *args, "-o", "json", user="mallory")
        assert refused.returncode == 6, (args, refused.stdout, refused.stderr)
        said = refused.stdout + refused.stderr  # with -o json, the error is JSON too
        assert "mallory may not view in environment 'dev'" in said
        assert "alice" not in said
        other = cli(home, "state", *args[:1], "prod", "-o", "json", user="vic")
        assert other.returncode == 6, (args, other.stdout, other.stderr)
        shown = cli(home, "state", *args, "-o", "json", user="vic")
        assert shown.returncode == 0, (args, shown.stderr)
    assert "alice@laptop" in cli(home, "state", "lock", "dev", user="vic").stdout


def test_creating_an_existing_environment_shows_it_only_to_who_may_view_it(
    tmp_path: Path,
) -> None:
    """``env create`` of an environment that is already ready was a no-op that printed it (its
    owner, variables and labels) to anyone; it now needs ``view`` first."""
    import os
    import pwd

    from _as_user import cli
    from stackyard.model.environment import Environment
    from stackyard.model.status import EnvironmentStatus
    from stackyard.state import open_store
    from stackyard.state.governance import Governance
    from stackyard.state.records import Records

    me = pwd.getpwuid(os.geteuid()).pw_name
    home = tmp_path / "home"
    with open_store(Settings.load(home=home, environ={})) as store:
        Governance(store).grant(Grant(f"user:{me}", Role.ADMIN, ORG), by="test")
        records = Records(store)
        env = Environment(
            name="dev", type="t", owner="team-secretive", status=EnvironmentStatus.CREATING
        )
        assert records.insert_environment(env)
        assert records.set_status("dev", EnvironmentStatus.READY)
    refused = cli(home, "env", "create", "dev", "-o", "json", user="mallory")
    assert refused.returncode == 6, (refused.stdout, refused.stderr)
    assert "team-secretive" not in refused.stdout + refused.stderr
    mine = cli(home, "env", "create", "dev", "-o", "json")
    assert mine.returncode == 0 and "team-secretive" in mine.stdout, mine.stderr


def test_listings_across_environments_leave_out_what_the_actor_may_not_view(
    ws: Workspace,
) -> None:
    """A viewer of one environment asking for the cost or the approvals of all of them got
    exit 6 on the first other environment; now they get theirs, and a named one still needs
    ``view``."""
    from stackyard.environments import approvals, cost

    grant = Grant("user:mallory", Role.VIEWER, f"env:{ENV}")
    ws.governance.grant(grant, by="test")
    try:
        assert {s.env for s in cost.shares(ws)} <= {ENV}
        assert approvals.pending(ws) == []
        with pytest.raises(PermissionDeniedError):
            cost.shares(ws, env=OTHER_ENV)
    finally:
        ws.governance.revoke(grant)
