"""Access: who acts, what their roles let them do (RBAC), and the audit trail of what they did."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from stackyard.errors import PermissionDeniedError, PolicyDeniedError
from stackyard.model.status import AuditResult
from stackyard.policy import inputs
from stackyard.policy.rbac import Action, Role, Target, permits, roles_of

if TYPE_CHECKING:
    from stackyard.model.environment import Environment
    from stackyard.state.governance import Governance
    from stackyard.state.records import Records


class Access:
    """The acting user's identity and rights in one workspace.

    ``teams_of`` reads the ``Team`` documents of the applied platform configuration (passed
    as a function: the configuration is read again after a ``platform apply``).
    ``extra_teams`` are teams the actor belongs to besides those (an authenticated caller's
    OIDC groups, ``Settings.teams``); grants to them apply as to any team.
    """

    def __init__(
        self,
        *,
        actor: str,
        governance: Governance,
        records: Records,
        teams_of: Callable[[str], Sequence[str]],
        extra_teams: Sequence[str] = (),
    ) -> None:
        #: who is acting: the operating-system account (``Settings.actor``)
        self.actor = actor
        self._governance = governance
        self._records = records
        self._teams_of = teams_of
        self._extra_teams = tuple(extra_teams)

    def bootstrap(self) -> None:
        """A home with no grants at all (new, or made before RBAC) makes its first user admin."""
        if self._governance.bootstrap(self.actor):
            self._governance.append(
                actor=self.actor,
                action="access.manage",
                target=f"user:{self.actor}",
                result=AuditResult.OK,
                detail={"grant": {"role": "admin", "scope": "org"}, "bootstrap": True},
            )

    def teams(self) -> list[str]:
        """The actor's teams: those of the ``Team`` documents, then the extra ones."""
        teams = list(self._teams_of(self.actor))
        teams.extend(t for t in dict.fromkeys(self._extra_teams) if t not in teams)
        return teams

    def target(self, env: str | None = None, env_type: str | None = None) -> Target:
        """The RBAC target of an environment (its type and owner looked up when it exists)."""
        if env is not None:
            rec = self._records.environment(env)
            if rec is not None:
                return Target(env, env_type or rec.type, rec.owner)
        return Target(env, env_type)

    def target_of(self, env: Environment) -> Target:
        """The RBAC target of an environment record already read (no read of it again)."""
        return Target(env.name, env.type, env.owner)

    def roles(self, target: Target) -> set[tuple[Role, str]]:
        """The ``(role, scope)`` pairs the actor holds on ``target``."""
        teams = self.teams()
        subjects = [f"user:{self.actor}", *(f"team:{t}" for t in teams)]
        return roles_of(subjects, self._governance.grants(), target, teams=teams)

    def allowed(self, action: Action, target: Target) -> bool:
        """Whether the actor may perform ``action`` on ``target``."""
        return permits(action, self.roles(target))

    def authorize(
        self,
        action: Action,
        *,
        env: str | None = None,
        env_type: str | None = None,
        audit: bool = False,
    ) -> Target:
        """Refuse (``PermissionDeniedError``) unless the actor may perform ``action``.

        A refused mutating action (``audit``) is written to the audit log too.
        """
        target = self.target(env, env_type)
        if self.allowed(action, target):
            return target
        where = (
            f"environment '{env}'"
            if env
            else f"environment type '{env_type}'"
            if env_type
            else "the organisation"
        )
        if audit:
            self.audit(
                action.value, _describe(target), AuditResult.DENIED, {"reason": "no role allows it"}
            )
        raise PermissionDeniedError(
            f"{self.actor} may not {action.value} in {where}",
            action=action.value,
            hint="Ask an admin for a role that allows it ('stackyard access grant'); 'stackyard access list' shows the grants.",
        )

    @contextmanager
    def act(
        self,
        action: Action,
        *,
        env: str | None = None,
        env_type: str | None = None,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Authorize a mutating action, run it, and write its audit event (ok or failed).

        The yielded dict may be filled with more (non-secret) detail for the event.
        """
        resolved = self.authorize(action, env=env, env_type=env_type, audit=True)
        extra: dict[str, Any] = dict(detail or {})
        name = target or _describe(resolved)
        try:
            yield extra
        except BaseException as exc:
            extra["error"] = getattr(exc, "message", type(exc).__name__)
            denied = isinstance(exc, PolicyDeniedError)
            result = AuditResult.DENIED if denied else AuditResult.FAILED
            self.audit(action.value, name, result, extra)
            raise
        self.audit(action.value, name, extra.pop("result", AuditResult.OK), extra)

    def audit(
        self, action: str, target: str, result: AuditResult, detail: Mapping[str, Any]
    ) -> None:
        """Append an audit event, its detail scrubbed of the known secrets (those of the target
        environment, or of every environment for other targets)."""
        env = target.removeprefix("env:") if target.startswith("env:") else None
        clean = inputs.scrub(dict(detail), self.known_secrets(env)) if detail else {}
        self._governance.append(
            actor=self.actor, action=action, target=target, result=result, detail=clean
        )

    def known_secrets(self, env: str | None = None) -> list[str]:
        """Secret values recorded for ``env`` (or every environment): scrubbed from decision
        inputs and audit details wherever they appear."""
        envs = [env] if env else [e.name for e in self._records.environments()]
        out: list[str] = []
        for name in envs:
            for rec in self._records.instances(name).values():
                out.extend(str(rec.outputs[k]) for k in rec.secret_keys if rec.outputs.get(k))
        return out

    def actor_doc(self, target: Target) -> dict[str, Any]:
        """The ``actor`` part of a policy input."""
        roles = {(role.value, scope) for role, scope in self.roles(target)}
        return inputs.actor_doc(self.actor, self.teams(), roles)


def _describe(target: Target) -> str:
    if target.env:
        return f"env:{target.env}"
    if target.env_type:
        return f"type:{target.env_type}"
    return "org"
