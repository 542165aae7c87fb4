"""Role-based access: roles granted to users or teams at a scope, and the one table of which
role may do which action. Deny by default: an action no grant covers is refused.

Scopes are ``org`` (everything), ``type:<environment type>`` (its environments) and
``env:<environment>``. Actions on an environment are checked against all three; actions
that belong to no environment (platform configuration, publishing, the audit log, access)
only against ``org``. Members of an environment's owner team hold ``environment-owner`` on it
without a grant.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Role(enum.StrEnum):
    """The roles, least to most privileged (no role implies another)."""

    VIEWER = "viewer"
    DEVELOPER = "developer"
    ENVIRONMENT_OWNER = "environment-owner"
    APPROVER = "approver"
    PLATFORM_ENGINEER = "platform-engineer"
    ADMIN = "admin"


class Action(enum.StrEnum):
    """Everything the service layer authorizes."""

    VIEW = "view"
    LOGS_READ = "logs.read"
    OUTPUTS_REVEAL = "outputs.reveal"
    OUTPUTS_REVEAL_ADMIN = "outputs.reveal-admin"
    DEPLOY = "deploy"
    RELEASE_CREATE = "release.create"
    PROMOTE = "promote"
    APPROVE = "approve"
    ENV_CREATE = "env.create"
    ENV_EXTEND = "env.extend"
    ENV_DESTROY = "env.destroy"
    ENV_REAP = "env.reap"
    PLATFORM_APPLY = "platform.apply"
    COMPONENT_PUBLISH = "component.publish"
    COMPONENT_DEPRECATE = "component.deprecate"
    AUDIT_READ = "audit.read"
    ACCESS_MANAGE = "access.manage"
    STATE_UNLOCK = "state.unlock"


_ALL = frozenset(Role)
_BUILDERS = frozenset({Role.DEVELOPER, Role.ENVIRONMENT_OWNER, Role.PLATFORM_ENGINEER, Role.ADMIN})
_OWNERS = frozenset({Role.ENVIRONMENT_OWNER, Role.PLATFORM_ENGINEER, Role.ADMIN})
_PLATFORM = frozenset({Role.PLATFORM_ENGINEER, Role.ADMIN})

#: THE table: which roles may perform each action. Every action must have an entry.
TABLE: Mapping[Action, frozenset[Role]] = {
    Action.VIEW: _ALL,
    Action.LOGS_READ: _BUILDERS,
    Action.OUTPUTS_REVEAL: _BUILDERS,
    Action.OUTPUTS_REVEAL_ADMIN: _PLATFORM,  # a core server's superuser URL (admin_url)
    Action.DEPLOY: _BUILDERS,
    Action.RELEASE_CREATE: _BUILDERS,
    Action.PROMOTE: _BUILDERS,
    Action.APPROVE: frozenset({Role.APPROVER}),
    Action.ENV_CREATE: _BUILDERS,
    Action.ENV_EXTEND: _BUILDERS,
    Action.ENV_DESTROY: _OWNERS,
    Action.ENV_REAP: _PLATFORM,
    Action.PLATFORM_APPLY: _PLATFORM,
    Action.COMPONENT_PUBLISH: _PLATFORM,
    Action.COMPONENT_DEPRECATE: _PLATFORM,
    Action.AUDIT_READ: _PLATFORM,
    Action.ACCESS_MANAGE: frozenset({Role.ADMIN}),
    Action.STATE_UNLOCK: _PLATFORM,
}

#: Actions checked against an environment (all scopes); the rest against ``org`` only.
SCOPED: frozenset[Action] = frozenset(
    {
        Action.VIEW,
        Action.LOGS_READ,
        Action.OUTPUTS_REVEAL,
        Action.OUTPUTS_REVEAL_ADMIN,
        Action.DEPLOY,
        Action.RELEASE_CREATE,
        Action.PROMOTE,
        Action.APPROVE,
        Action.ENV_CREATE,
        Action.ENV_EXTEND,
        Action.ENV_DESTROY,
        Action.STATE_UNLOCK,
    }
)

ORG = "org"


@dataclass(frozen=True, slots=True)
class Grant:
    """A role granted to ``user:<name>`` or ``team:<name>`` at a scope."""

    subject: str
    role: Role
    scope: str

    def to_json(self) -> dict[str, str]:
        """A JSON-ready form."""
        return {"subject": self.subject, "role": self.role.value, "scope": self.scope}


@dataclass(frozen=True, slots=True)
class Target:
    """What an action is on: an environment (and its type), or nothing (organisation-wide)."""

    env: str | None = None
    env_type: str | None = None
    owner: str | None = None  # the environment's owner team

    def scopes(self) -> set[str]:
        """The grant scopes that cover this target."""
        out = {ORG}
        if self.env_type:
            out.add(f"type:{self.env_type}")
        if self.env:
            out.add(f"env:{self.env}")
        return out


def parse_scope(text: str) -> str:
    """``org``, ``type:<name>`` or ``env:<name>``; ``ValueError`` otherwise."""
    if text == ORG:
        return text
    kind, sep, name = text.partition(":")
    if not sep or kind not in ("type", "env") or not name:
        raise ValueError(
            f"'{text}' is not a scope; use org, type:<environment type> or env:<environment>"
        )
    return text


def roles_of(
    subjects: Iterable[str], grants: Iterable[Grant], target: Target, *, teams: Iterable[str] = ()
) -> set[tuple[Role, str]]:
    """The ``(role, scope)`` pairs the subjects hold that cover ``target``."""
    wanted = set(subjects)
    covering = target.scopes()
    out = {(g.role, g.scope) for g in grants if g.subject in wanted and g.scope in covering}
    if target.env and target.owner and target.owner in set(teams):
        out.add((Role.ENVIRONMENT_OWNER, f"env:{target.env}"))
    return out


def permits(action: Action, held: Iterable[tuple[Role, str]]) -> bool:
    """Whether the roles held (already narrowed to the target) allow ``action``."""
    allowed = TABLE.get(action)
    if allowed is None:
        return False  # deny by default, even for an action someone forgot to list
    return any(role in allowed and (action in SCOPED or scope == ORG) for role, scope in held)
