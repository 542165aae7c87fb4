"""What an operation needs a yes to, and why: decided here, asked by whoever calls.

The CLI prompts on a terminal (or takes ``--yes``); the API of a later issue hands the same
question to its client. A preview refuses at once what the operation would refuse anyway
(an unknown environment, one with live children), so nobody is asked to confirm the
impossible.
"""

from __future__ import annotations

from dataclasses import dataclass

from stackyard.engine.plan import Plan
from stackyard.environments import lifecycle
from stackyard.environments.workspace import Workspace
from stackyard.policy.rbac import Action


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A question that must be answered yes before ``action`` runs on ``what``."""

    action: str
    env: str
    what: str  # the thing acted on, in words: "workload 'hello'"
    question: str

    def to_json(self) -> dict[str, str]:
        """A JSON-ready form."""
        return {
            "action": self.action,
            "env": self.env,
            "what": self.what,
            "question": self.question,
        }


def destroy(ws: Workspace, name: str) -> Confirmation:
    """Before destroying environment ``name``: how many resources go. Refused (no question)
    when it cannot be destroyed (``lifecycle.destroyable``) or the actor may not see it."""
    env = ws.environment(name)
    ws.access.authorize(Action.VIEW, env=name)
    lifecycle.destroyable(ws, name)
    count = len(ws.store.snapshot(name).resources)
    return Confirmation(
        Action.ENV_DESTROY.value,
        name,
        f"environment '{env.name}'",
        f"Destroy environment '{env.name}' and its {count} resource(s)?",
    )


def remove(
    ws: Workspace, env: str, *, workload: str | None = None, resource: str | None = None
) -> Confirmation:
    """Before taking a workload (or an unused resource) out of ``env``."""
    ws.environment(env)
    what = f"workload '{workload}'" if workload else f"resource '{resource}'"
    return Confirmation(Action.DEPLOY.value, env, what, f"Remove {what} from '{env}'?")


def apply_plan(plan: Plan) -> Confirmation:
    """Before applying a deploy's plan (asked only when it changes something)."""
    return Confirmation(
        Action.DEPLOY.value, plan.env, f"the plan for '{plan.env}'", "Apply this plan?"
    )


def promote(plan: Plan, env: str) -> Confirmation:
    """Before applying a promotion's plan to ``env``."""
    return Confirmation(
        Action.PROMOTE.value, env, f"the plan for '{plan.env}'", f"Promote to '{env}'?"
    )


def force_unlock(env: str, lock_id: str) -> Confirmation:
    """Before breaking ``env``'s lock: its holder, if alive, fails on its next write."""
    return Confirmation(
        Action.STATE_UNLOCK.value,
        env,
        f"the lock {lock_id} on environment '{env}'",
        f"Break the lock {lock_id} on environment '{env}'? A running operation that "
        "holds it will fail on its next write.",
    )
