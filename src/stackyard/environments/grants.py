"""Role grants as a service: parse one, grant it, revoke it, list them, and the role table.

Granting and revoking are ``access.manage`` (admins only) and audited, a refused attempt too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError
from stackyard.model.status import AuditResult
from stackyard.policy.rbac import SCOPED, TABLE, Action, Grant, Role

__all__ = [
    "Change",
    "Grant",
    "Grants",
    "RoleTable",
    "from_json",
    "grant",
    "grants",
    "parse",
    "revoke",
    "role_table",
]


def from_json(doc: Any) -> Grant:
    """A grant as the API sends it (``Grant.to_json``); ``InvalidInputError`` when it is not."""
    try:
        return Grant(str(doc["subject"]), Role(doc["role"]), str(doc["scope"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidInputError("Not a grant document", hint="subject, role and scope") from None


def parse(
    role: str, *, user: str | None, team: str | None, env: str | None, env_type: str | None
) -> Grant:
    """The grant of ``role`` to one user or team, at one environment, one type or the
    organisation (neither given); ``InvalidInputError`` saying what to give instead."""
    if bool(user) == bool(team):
        raise InvalidInputError(
            "Give --user or --team (one of them)",
            hint="stackyard access grant approver --user ann --env production",
        )
    try:
        parsed = Role(role)
    except ValueError:
        raise InvalidInputError(
            f"Unknown role '{role}'", hint=f"Roles: {', '.join(r.value for r in Role)}."
        ) from None
    if env and env_type:
        raise InvalidInputError(
            "Give --env or --type, not both", hint="Without either, the grant is organisation-wide."
        )
    subject = f"user:{user}" if user else f"team:{team}"
    scope = f"env:{env}" if env else f"type:{env_type}" if env_type else "org"
    return Grant(subject, parsed, scope)


@dataclass(frozen=True, slots=True)
class Change:
    """A grant added or revoked, and whether anything changed."""

    grant: Grant
    revoked: bool
    changed: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form: the grant with ``added`` (or ``removed``)."""
        return {**self.grant.to_json(), ("removed" if self.revoked else "added"): self.changed}


def grant(ws: Workspace, g: Grant) -> Change:
    """Grant ``g`` (``unchanged`` in the audit log when it already existed)."""
    with ws.access.act(
        Action.ACCESS_MANAGE, target=g.subject, detail={"grant": g.to_json()}
    ) as audit:
        added = ws.governance.grant(g, by=ws.access.actor)
        audit.update(result=AuditResult.OK if added else AuditResult.UNCHANGED)
    return Change(g, revoked=False, changed=added)


def revoke(ws: Workspace, g: Grant) -> Change:
    """Revoke ``g`` (the last organisation-wide admin cannot be revoked)."""
    with ws.access.act(
        Action.ACCESS_MANAGE, target=g.subject, detail={"revoke": g.to_json()}
    ) as audit:
        removed = ws.governance.revoke(g)
        audit.update(result=AuditResult.OK if removed else AuditResult.UNCHANGED)
    return Change(g, revoked=True, changed=removed)


@dataclass(frozen=True, slots=True)
class Grants:
    """Every grant, and who is asking (with their teams)."""

    actor: str
    teams: list[str]
    grants: list[Grant]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "you": {"actor": self.actor, "teams": self.teams},
            "grants": [g.to_json() for g in self.grants],
        }


def grants(ws: Workspace) -> Grants:
    """Every grant (a read: any role may see who may do what)."""
    ws.access.authorize(Action.VIEW)
    return Grants(ws.access.actor, ws.access.teams(), ws.governance.grants())


@dataclass(frozen=True, slots=True)
class RoleTable:
    """Which role may perform which action, and whether the action is scoped to an
    environment (else it needs an organisation-wide grant)."""

    roles: list[str]
    actions: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, dict[str, Any]]:
        """A JSON-ready form: per action, its roles and whether it is scoped."""
        return self.actions


def role_table() -> RoleTable:
    """The one table of ``policy.rbac`` (public: it says what roles mean, not who holds them)."""
    return RoleTable(
        [r.value for r in Role],
        {
            a.value: {"roles": sorted(r.value for r in roles), "scoped": a in SCOPED}
            for a, roles in TABLE.items()
        },
    )
